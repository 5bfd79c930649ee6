"""The lip-sync network (spec 05): shapes, persistence, keypoint maps and the fitted lip predictor.
(Tests of the training script's inputs and steps: tests/test_training.py.)"""
import numpy as np
import pytest
import torch

from media.features import SAMPLE_RATE, mfcc
from models.lipsync import CROP, LipSyncConfig, LipSyncNet, keypoint_map, normalize_mfcc
from models.lipsync_fit import mfcc_window, track_lip_clip

CLIP = "talking_video/lrs2_deepavsr_00001.mp4"  # 4.9 s, 160 x 160, one speaker


@pytest.fixture(scope="module")
def clip(media):
    return track_lip_clip(media / CLIP, name="lrs2_00001", source="lrs2")


def test_shapes_and_ranges():
    torch.manual_seed(0)
    model = LipSyncNet().eval()
    c = model.config
    group = torch.rand(3, 4 * c.group, c.crop_height, c.crop_width)
    audio = torch.randn(3, c.n_mfcc, c.mfcc_frames)
    ref = torch.rand(3, 5, c.crop_height, c.crop_width)
    assert model.features.visual_vector(group).shape == (3, c.feat_dim)
    assert model.features.audio_vector(audio).shape == (3, c.feat_dim)
    out = model.generate(ref, audio)
    assert out.shape == (3, 3, c.crop_height, c.crop_width) and 0 <= out.min() and out.max() <= 1
    assert model.discriminator(out).shape == (3,)


def test_save_and_load_round_trip_under_10_mb(tmp_path):
    torch.manual_seed(0)
    model = LipSyncNet(LipSyncConfig()).eval()
    model.save_pretrained(tmp_path / "m", metadata={"note": "test"})
    size = (tmp_path / "m" / "model.safetensors").stat().st_size
    assert size < 10 * 2 ** 20
    again = LipSyncNet.from_pretrained(tmp_path / "m")
    ref, audio = torch.rand(2, 5, 64, 128), torch.randn(2, 13, 16)
    assert torch.allclose(model.generate(ref, audio), again.generate(ref, audio))
    assert again.training_metadata == {"note": "test"}


def test_mfcc_normalisation_keeps_silence_silent():
    speech_like = np.random.default_rng(0).normal(0, 0.1, SAMPLE_RATE).astype(np.float32)
    silence = np.zeros(SAMPLE_RATE, np.float32)
    assert normalize_mfcc(mfcc(silence))[0].mean() < -2.0  # c0: as low as a pause in speech
    assert normalize_mfcc(mfcc(speech_like))[0].mean() > -1.0
    # the recording level drops out: the same speech 20 dB quieter normalises the same
    assert np.allclose(normalize_mfcc(mfcc(speech_like))[0], normalize_mfcc(mfcc(0.1 * speech_like))[0], atol=0.05)
    assert np.allclose(normalize_mfcc(mfcc(silence))[1:], 0.0)


def test_mfcc_window_is_centred_and_padded_with_silence(clip):
    w = mfcc_window(clip, np.array([0, 10, len(clip["found"]) + 50]))
    assert w.shape == (3, 13, 16)
    assert (w[2, 0] < -2.0).all()  # past the end: silence
    assert np.isfinite(w).all()


def test_keypoint_map_peaks_at_the_points():
    m = keypoint_map(np.array([[10.0, 20.0], [100.0, 40.0]]), CROP)
    assert m.shape == (CROP[1], CROP[0]) and m[20, 10] == pytest.approx(1.0) and m[40, 100] == pytest.approx(1.0)
    assert m[5, 60] < 1e-3


def test_neutral_keypoints_keep_position_not_shape(clip):
    from models.lipsync import keypoints_for_input

    f = np.flatnonzero(clip["found"])
    opening = clip["opening"][f]
    wide = clip["keypoints"][f[np.nanargmax(opening)]]
    closed = clip["keypoints"][f[np.nanargmin(opening)]]
    mean = np.nanmean(clip["keypoints"][f], axis=0)
    a, b = keypoints_for_input(wide, mean), keypoints_for_input(closed, mean)
    assert np.allclose(a.mean(0), wide.mean(0), atol=1e-3)  # where the mouth is: the frame's
    assert np.allclose(a - a.mean(0), b - b.mean(0), atol=1e-3)  # how open: the same neutral shape for both
    assert keypoints_for_input(wide, None) is wide


def test_lip_predictor_follows_the_mouth_and_closes_on_silence(media, clip):
    """The ridge-fitted lip head reads the mouth opening from the frozen audio vector. Scaled by the gain,
    speech moves the mouth about as far as the real one did, around the same mean, and silence gives the
    closed mouth, which the scaled prediction never goes below."""
    from models.lipsync import D_PIXELS, LIP_UNIT, inner_gap, silence_windows
    from models.lipsync_fit import fit_lip_predictor, lip_deviation, opening_correlation

    other = track_lip_clip(media / "talking_video/lrs2_deepavsr_00016.mp4", name="lrs2_00016", source="lrs2")
    model = LipSyncNet.from_pretrained()
    report = fit_lip_predictor(model, [clip, other])
    assert model.config.audio_keypoints and 1.0 < float(model.lip_gain) < 10.0
    assert float(model.lip_smooth_s) == report["smooth_s"] and float(model.lip_gain) == report["lip_gain"]
    assert report["ridge_penalty"] in (10.0, 100.0, 1000.0, 10000.0) and 0 <= report["smooth_s"] <= 0.16
    # in-sample, the predicted gap follows the gap the face mesh measured
    assert min(opening_correlation(model, [clip, other])) > 0.3
    f = np.flatnonzero(clip["found"])
    gap = inner_gap(model.predict_lip_deviation(torch.from_numpy(mfcc_window(clip, f)), clip["fps"]) / (LIP_UNIT * D_PIXELS))
    real = inner_gap(lip_deviation(clip, f))
    silent = inner_gap(model.predict_lip_deviation(torch.from_numpy(silence_windows(3))) / (LIP_UNIT * D_PIXELS))
    assert np.allclose(silent, silent[0]) and silent[0] < np.percentile(real, 40)
    assert gap.min() >= silent[0] - 1e-4  # never closed past the silent mouth
    assert abs(gap.mean() - real.mean()) < 0.5 * real.std()  # no mouth held open on average
    assert 0.5 < gap.std() / real.std() < 1.5  # and it moves about as much


def test_keypoint_map_local_window_matches_the_dense_map():
    rng = np.random.default_rng(0)
    pts = rng.random((40, 2)) * [140, 80] - [6, 8]  # some outside the crop
    pts[3] = np.nan
    ys, xs = np.mgrid[0:CROP[1], 0:CROP[0]].astype(np.float64)
    dense = np.zeros((CROP[1], CROP[0]))
    for x, y in pts[np.isfinite(pts).all(1)]:
        dense = np.maximum(dense, np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 1.5 ** 2)))
    assert np.abs(keypoint_map(pts, CROP) - dense).max() < 1e-5


def test_smooth_frames():
    from models.lipsync import smooth_frames

    x = np.zeros((21, 40, 2), np.float32)
    x[10] = 1.0
    y = smooth_frames(x, 1.0)
    assert y.shape == x.shape and y[10, 0, 0] < 0.5 and abs(y.sum() - x.sum()) < 1e-3 and y[10, 0, 0] == y.max()
    assert smooth_frames(x, 0.0) is x
