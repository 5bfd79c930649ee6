"""Persistence of the models (models/pretrained.py): fitted numbers are buffers in model.safetensors, config.json
holds constructor arguments only, old-layout folders still load, Hub repo ids (and subfolders) resolve through
the Hub cache, and every saved folder has a model card. Fast: no media, no network."""
import json

import numpy as np
import pytest
import torch

from models.audio_encoder import (
    AudioAutoencoder,
    AudioEncoderConfig,
    initial_parameters,
    map_to_weight,
    point_vectors,
)
from models.face_controls import ExpressionControls
from models.lipsync import LipSyncConfig, LipSyncNet
from models.syncnet import SyncNet, SyncNetConfig

FITTED_KEYS = {"mean_lip_shape", "lip_gain", "lip_smooth_s", "mfcc_low", "mfcc_high", "weight_low", "weight_high"}
BUFFERS = {"lip_mean_shape", "lip_gain", "lip_smooth_s", "mfcc_low", "mfcc_high", "weight_low", "weight_high"}


def small_lipsync() -> LipSyncNet:
    torch.manual_seed(0)
    model = LipSyncNet(LipSyncConfig(width=4, feat_dim=16, neutral_keypoints=True, audio_keypoints=True)).eval()
    model.mean_lip_shape = np.arange(80, dtype=np.float32).reshape(40, 2) / 3
    model.lip_gain.fill_(2.7859)
    model.lip_smooth_s.fill_(0.04)
    return model


def small_encoder() -> AudioAutoencoder:
    torch.manual_seed(0)
    model = AudioAutoencoder(AudioEncoderConfig(widths=(4, 4, 4, 4, 4, 4, 4, 8)), with_decoder=False).eval()
    model.mfcc_low.copy_(torch.linspace(-300, -20, 13, dtype=torch.float64))
    model.mfcc_high.copy_(torch.linspace(10, 120, 13, dtype=torch.float64))
    model.weight_low.fill_(0.043601545242535164)
    model.weight_high.fill_(0.9613129366946452)
    return model


def inference_state(model: torch.nn.Module) -> dict:
    """The state dict without the parts only training uses (the lip-sync discriminator, not saved by default)."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith("discriminator.")}


def same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = inference_state(a), inference_state(b)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_fitted_numbers_are_buffers_and_config_holds_constructor_arguments(tmp_path):
    lip, enc = small_lipsync(), small_encoder()
    lip.save_pretrained(tmp_path / "lip", metadata={"note": "test"})
    enc.save_pretrained(tmp_path / "enc")
    for folder, model in (("lip", lip), ("enc", enc)):
        config = json.loads((tmp_path / folder / "config.json").read_text())
        assert not FITTED_KEYS & set(config), config.keys()
        again = type(model).from_pretrained(tmp_path / folder)
        assert same_state(again, model)
    again = LipSyncNet.from_pretrained(tmp_path / "lip")
    assert again.config.audio_keypoints and again.config.neutral_keypoints and again.training_metadata == {"note": "test"}
    assert again.lip_gain.dtype == torch.float64 and float(again.lip_gain) == 2.7859 and float(again.lip_smooth_s) == 0.04
    assert again.mean_lip_shape.dtype == np.float32 and np.array_equal(again.mean_lip_shape, lip.mean_lip_shape)
    assert LipSyncNet(LipSyncConfig(width=4, feat_dim=16)).mean_lip_shape is None  # NaN buffer: not fitted
    enc_again = AudioAutoencoder.from_pretrained(tmp_path / "enc")
    assert enc_again.weight_bounds() == (0.043601545242535164, 0.9613129366946452)
    m = np.random.default_rng(0).normal(-50, 60, (13, 40)).astype(np.float32)  # an MFCC, 4 s
    assert np.array_equal(enc_again.input_for(m), enc.input_for(m))
    w = map_to_weight(initial_parameters(point_vectors(enc_again, m)), *enc_again.weight_bounds())
    assert np.array_equal(w, map_to_weight(initial_parameters(point_vectors(enc, m)), *enc.weight_bounds()))


def test_old_layout_folders_load_with_their_fitted_numbers(tmp_path):
    """A folder whose config.json holds the fitted numbers (and whose safetensors lacks the buffers) loads the same."""
    from safetensors.torch import save_file

    lip, enc = small_lipsync(), small_encoder()
    old = {"lip": (lip, {"model_type": "lipsync", "crop_width": 128, "crop_height": 64, "group": 5, "n_mfcc": 13,
                         "mfcc_frames": 16, "feat_dim": 16, "width": 4, "neutral_keypoints": True,
                         "mean_lip_shape": lip.mean_lip_shape.tolist(), "audio_keypoints": True,
                         "lip_gain": 2.7859, "lip_smooth_s": 0.04}),
           "enc": (enc, {"model_type": "audio_encoder", "n_mfcc": 13, "points": 16, "channels": 3,
                         "widths": [4, 4, 4, 4, 4, 4, 4, 8], "mfcc_low": enc.mfcc_low.tolist(),
                         "mfcc_high": enc.mfcc_high.tolist(), "weight_low": 0.043601545242535164,
                         "weight_high": 0.9613129366946452})}
    for name, (model, config) in old.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(config))
        save_file({k: v for k, v in inference_state(model).items() if k not in BUFFERS}, str(folder / "model.safetensors"))
        assert same_state(type(model).from_pretrained(folder), model), name


def test_model_card_is_written_beside_config(tmp_path):
    model = SyncNet(SyncNetConfig(width=4, embed_dim=8))
    meta = {"train_sources": ["lrs2"], "holdout_sources": ["pcavs"], "train_clips": ["lrs2_a"],
            "evaluation": [{"measure": "offset found", "value": 0.5, "target": ">= 0.75",
                            "results": "benchmarks/results/offset_recovery.json", "key": "accuracy_within_1_frame.bundled"}]}
    model.save_pretrained(tmp_path / "m", metadata=meta)
    card = (tmp_path / "m" / "README.md").read_text()
    front = card.split("---")[1]
    assert "library_name: pytorch" in front and "license: other" in front and "pipeline_tag:" in front
    for section in ("## Intended use", "## Training data", "## Evaluation", "## Limitations", "## Licence"):
        assert section in card
    assert "`accuracy_within_1_frame.bundled`" in card and "LRS2 (BBC): research-only" in card and "MIT" in card
    ExpressionControls().save_pretrained(tmp_path / "fc")
    assert "No benchmark figures are recorded" in (tmp_path / "fc" / "README.md").read_text()


def test_bundled_folders_are_in_the_new_layout():
    from models.cards import bundled_models

    for cls, folder, _ in bundled_models():
        config = json.loads((folder / "config.json").read_text())
        assert not FITTED_KEYS & set(config), folder
        card = (folder / "README.md").read_text()
        assert card.startswith("---\n") and "## Evaluation" in card and "benchmarks/results/" in card, folder


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An offline Hugging Face Hub cache holding the repo ``owner/name`` (a model at the root and one in ``sub/``)."""
    import huggingface_hub.constants as hf

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--owner--name"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    return repo / "snapshots" / commit


def test_from_pretrained_reads_a_hub_repo_and_its_subfolder_offline(hub_cache):
    torch.manual_seed(0)
    root, sub = SyncNet(SyncNetConfig(width=4, embed_dim=8)), SyncNet(SyncNetConfig(width=4, embed_dim=16))
    root.save_pretrained(hub_cache)
    sub.save_pretrained(hub_cache / "sub")
    assert same_state(SyncNet.from_pretrained("owner/name"), root)
    assert same_state(SyncNet.from_pretrained("owner/name", subfolder="sub"), sub)
    enc = small_encoder()
    enc.save_pretrained(hub_cache / "enc")
    assert same_state(AudioAutoencoder.from_pretrained("owner/name", subfolder="enc"), enc)
    with pytest.raises(FileNotFoundError):
        SyncNet.from_pretrained("owner/name", subfolder="missing")
