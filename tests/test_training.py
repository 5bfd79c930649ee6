"""Training smoke tests on a small real subset: the dataset builder, the three-stage script, the lip-sync
training's inputs and steps, and the scripts under Accelerate."""
import json

import numpy as np
import pytest
import torch

from models.lipsync import CROP, LipSyncNet, lip_hull
from models.syncnet import SyncNet, SyncNetConfig
from training import make_talking_dataset, train_syncnet
from training.train_lipsync import Sampler, agreement_loss, reference_input, sync_loss

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
    _, ds, skipped = small_dataset
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
    from models.provenance import sha256_file

    assert report["command"].startswith("python -m training.train_syncnet") and report["git_commit"]["head"]
    assert report["weights"]["trained"] == sha256_file(out / "final" / "model.safetensors")
    for stage in ["stage1", "stage2", "stage3"]:
        e = report["evaluation"][stage]
        assert 0 <= e["pair_accuracy"] <= 1 and 0 <= e["offset_accuracy"] <= 1 and "gap" in e
        assert len(e["offset_cases"]) == 5  # one held-out clip x 5 shifts
    segments = report["filter"]["segments"]
    assert segments and all("kept" in s and s["reason"] for s in segments)
    assert report["stage2_schedule"]["stage2"][0]["margin"] is not None
    model = SyncNet.from_pretrained(out / "final")
    assert model.training_metadata["holdout_sources"] == ["pcavs"]


# --------------------------------------------------------------------------------------------
# training.train_lipsync: the prepared clips, the inputs that hide the target mouth, steps that learn
# --------------------------------------------------------------------------------------------
LIPSYNC_CLIP = "talking_video/lrs2_deepavsr_00001.mp4"  # 4.9 s, 160 x 160, one speaker


@pytest.fixture(scope="module")
def lipsync_clip(media):
    from training.train_lipsync import finish_clip, prepare_clip

    return finish_clip("lrs2_00001", "lrs2", prepare_clip(media / LIPSYNC_CLIP))


def test_prepared_clip_is_consistent(lipsync_clip):
    clip = lipsync_clip
    n = len(clip["found"])
    assert clip["real"].shape == (n, CROP[1], CROP[0], 3) and clip["blur"].shape == clip["real"].shape
    assert clip["found"].mean() > 0.9
    f = np.flatnonzero(clip["found"])
    # the keypoints sit in the lower-middle of the aligned crop: the mouth
    kp = clip["keypoints"][f]
    assert 0.3 * CROP[0] < np.nanmean(kp[..., 0]) < 0.7 * CROP[0]
    assert 0.3 * CROP[1] < np.nanmean(kp[..., 1]) < 0.8 * CROP[1]
    # the blur image is blurred at the mouth, and only around it
    mouth = lip_hull(clip["keypoints"][f[0]], 0.0) > 0.5
    diff = np.abs(clip["blur"][f[0]].astype(int) - clip["real"][f[0]].astype(int)).sum(-1)
    assert diff[mouth].mean() > 3 * max(diff[:8].mean(), 0.5)  # top rows (the nose) barely change
    assert clip["mfcc"].shape[0] == 13 and len(clip["starts"]) > 50


def test_reference_input_shows_another_mouth(lipsync_clip):
    """The generator never sees the target mouth through the blur: its mouth area is the reference frame's."""
    from pipelines.lipsync import PASTE_GROW

    clip = lipsync_clip
    f = np.flatnonzero(clip["found"])
    opening = clip["opening"]
    target = int(f[np.nanargmax(opening[f])])
    ref = int(f[np.nanargmin(opening[f])])
    x = reference_input(clip, target, ref)
    assert x.shape == (5, CROP[1], CROP[0])
    # on the lips by default; with --swap-grow 0.5, over everything the pipeline pastes back (jaw line, corners)
    for swap, grow in ((0.25, 0.0), (0.5, 0.0), (0.5, PASTE_GROW)):
        x = reference_input(clip, target, ref, swap_grow=swap)
        mouth = lip_hull(clip["keypoints"][target], grow, feather=0) > 0.5
        seen = (x[:3].transpose(1, 2, 0) * 255)[mouth]
        to_ref = np.abs(seen - clip["blur"][ref][mouth]).mean()
        to_target = np.abs(seen - clip["blur"][target][mouth]).mean()
        assert to_ref < 0.1 * to_target, (swap, grow)
    # away from the mouth, the input is the target frame's own blur crop (its pose)
    top = slice(0, 6)
    assert np.abs(x[:3, top].transpose(1, 2, 0) * 255 - clip["blur"][target][top]).mean() < 1.0


def test_training_steps_lower_the_losses(lipsync_clip):
    clip = lipsync_clip
    torch.manual_seed(0)
    sampler = Sampler([clip], np.random.default_rng(0))
    model = LipSyncNet()
    # stage A on one fixed batch
    g, a, owner, lips = sampler.stage_a(n_clips=1, per_clip=16)
    assert lips.shape == (16, 40, 2) and 0.1 < float(lips.std()) < 10
    opt = torch.optim.Adam(model.features.parameters(), lr=1e-3)
    losses = []
    for _ in range(25):
        loss, _ = agreement_loss(model.features.visual_vector(g), model.features.audio_vector(a), owner)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    # stage B: reconstruction of one fixed batch, with the sync loss of the bundled discriminator in the graph
    syncnet = SyncNet.from_pretrained().eval()
    ref, audio, real, weight, mel, means, base = sampler.stage_b(2, 0.05)
    assert base.shape == (10, 40, 2) and np.isfinite(base).all()  # each frame's base lip shape, for predicted maps
    opt = torch.optim.Adam(model.generator.parameters(), lr=1e-3)
    recon = []
    for _ in range(25):
        fake = model.generator(ref, model.features.audio_vector(audio).detach())
        r = (weight * (fake - real).abs()).mean() / weight.mean()
        s, cos = sync_loss(syncnet, fake, mel, means)
        loss = r + 0.03 * s
        opt.zero_grad()
        loss.backward()
        opt.step()
        recon.append(r.item())
    assert recon[-1] < 0.75 * recon[0]
    assert torch.isfinite(cos).all() and cos.shape == (2,)
