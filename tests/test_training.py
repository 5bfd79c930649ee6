"""Training smoke tests on a small real subset: the dataset builder and the three-stage script."""
import json

import numpy as np
import pytest
import torch

from models.syncnet import SyncNet, SyncNetConfig
from training import make_talking_dataset, train_syncnet

CLIPS = ["lrs2_deepavsr_00001.mp4", "lrs2_deepavsr_00008.mp4", "pcavs_Input_00010.mp4"]


@pytest.fixture(scope="module")
def small_dataset(media, tmp_path_factory):
    root = tmp_path_factory.mktemp("talking")
    folder = root / "videos"
    folder.mkdir()
    for name in CLIPS:
        (folder / name).symlink_to(media / "talking_video" / name)
    # a silent-track-less video with a side-car wav, and a video with neither
    (folder / "styletalk_feifeili_clip3.mp4").symlink_to(media / "talking_video" / "paired_audio" / "styletalk_feifeili_clip3.mp4")
    (folder / "styletalk_feifeili_clip3.wav").symlink_to(media / "talking_video" / "paired_audio" / "styletalk_feifeili_clip3.wav")
    (folder / "silent_face.mp4").symlink_to(media / "talking_video" / "no_audio" / "dreamtalk_MEAD_M030_front_happy_level3_001.mp4")
    ds, skipped = make_talking_dataset.build(folder, root / "ds", exclude=[])
    return root, ds, skipped


def test_dataset_builder(small_dataset):
    root, ds, skipped = small_dataset
    assert len(ds) == 4
    assert [s["file"] for s in skipped] == ["silent_face.mp4"]
    row = {r["speaker"]: r for r in ds}["styletalk_feifeili"]
    assert row["audio_source"] == "sidecar" and row["fps"] == pytest.approx(30.0, abs=0.01)
    assert set(ds["source"]) == {"lrs2", "pcavs", "styletalk"}
    assert ds.features["video"].decode is False and ds.features["audio"].decode is False


def test_stage1_loss_falls_on_real_clips(small_dataset, tmp_path):
    root, _, _ = small_dataset
    torch.manual_seed(0)
    clips = train_syncnet.load_clips(root / "ds", root / "cache")
    sampler = train_syncnet.PairSampler(clips, np.random.default_rng(0))
    model = SyncNet(SyncNetConfig(width=8, embed_dim=64))
    log = []
    train_syncnet.train_bce(model, sampler, 80, 2e-3, 32, (3, 15), 0.2, torch.device("cpu"), "stage1", log)
    losses = np.array([e["loss"] for e in log])
    assert losses[-15:].mean() < losses[:15].mean() - 0.05, (losses[:15].mean(), losses[-15:].mean())


def test_three_stage_script_end_to_end(small_dataset, tmp_path):
    root, _, _ = small_dataset
    out = tmp_path / "run"
    code = train_syncnet.main([str(root / "ds"), "--out", str(out), "--cache", str(root / "cache"),
                               "--holdout-source", "pcavs", "--width", "8", "--batch", "16",
                               "--stage1-steps", "6", "--round-steps", "3", "--max-rounds", "2",
                               "--stage3-steps", "3", "--min-confidence", "-1", "--max-offset", "15",
                               "--segment-seconds", "2", "--min-windows", "5", "--ablate-filter"])
    assert code == 0
    for stage in ["stage1", "stage2", "stage3", "nofilter_stage2", "nofilter_stage3", "final"]:
        assert (out / stage / "model.safetensors").exists() and (out / stage / "config.json").exists()
    report = json.loads((out / "report.json").read_text())
    assert (out / "report.png").stat().st_size > 10_000
    for stage in ["stage1", "stage2", "stage3"]:
        e = report["evaluation"][stage]
        assert 0 <= e["pair_accuracy"] <= 1 and 0 <= e["offset_accuracy"] <= 1 and "gap" in e
        assert len(e["offset_cases"]) == 5  # one held-out clip x 5 shifts
    segments = report["filter"]["segments"]
    assert segments and all("kept" in s and s["reason"] for s in segments)
    assert report["stage2_schedule"]["stage2"][0]["margin"] is not None
    model = SyncNet.from_pretrained(out / "final")
    assert model.training_metadata["holdout_sources"] == ["pcavs"]
