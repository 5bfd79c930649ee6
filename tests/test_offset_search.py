"""The offset search and the window geometry on synthetic inputs: sign conventions at any frame rate."""
import numpy as np
import pytest

from media.features import SAMPLE_RATE, SYNC_MEL_FRAMES, frame_to_mel
from models.syncnet import (
    median_filter,
    offset_search,
    valid_windows,
    video_window_indices,
)
from pipelines.sync_check import baseline_offset


@pytest.mark.parametrize("true_k", [-7, 0, 4, 15])
def test_offset_search_sign(true_k):
    """Video i matches audio i - k: k > 0 means the audio is early."""
    rng = np.random.default_rng(0)
    n, s, d = 120, 15, 16
    content = rng.normal(size=(n + 2 * s + 40, d))
    v = content[20:20 + n]  # v_i = content[20 + i]
    # a_j (stored at j + s) must equal v_{j + k}: audio frame j carries the content of video frame j + k
    a = np.stack([content[20 + j + true_k] for j in range(-s, n + s)])
    res = offset_search(v, a, np.ones(n, bool), s)
    assert res["offset_frames"] == true_k
    assert res["min_dist"] == pytest.approx(0.0, abs=1e-9) and res["confidence"] > 0
    assert np.isfinite(res["frame_confidence"]).all()


def test_pairs_outside_the_recording_are_left_out():
    rng = np.random.default_rng(1)
    n, s = 40, 15
    v = rng.normal(size=(n, 8))
    a = np.concatenate([np.zeros((s, 8)), v, np.zeros((s, 8))])  # in sync, zero padding outside
    inside = np.r_[np.zeros(s, bool), np.ones(n, bool), np.zeros(s, bool)]
    res = offset_search(v, a, np.ones(n, bool), s, a_inside=inside)
    assert res["offset_frames"] == 0 and np.isfinite(res["curve"]).all()


@pytest.mark.parametrize("fps", [25.0, 30.0, 30000 / 1001, 60.0])
def test_video_windows_span_0_2_s_at_any_frame_rate(fps):
    idx = video_window_indices(300, fps)
    assert idx.shape == (300, 5)
    span = (idx[:, 4] - idx[:, 0]) / fps
    assert np.all(np.abs(span[:200] - 0.16) <= 0.5 / fps + 1e-9)  # 4 intervals of 40 ms, to the nearest frame
    found = np.ones(300, bool)
    found[100] = False
    ok = valid_windows(found, fps)
    assert not ok[100] and ok[101] and not ok[-1]  # a window that would need a frame past the end is invalid
    uses_missing = np.flatnonzero((idx == 100).any(axis=1))
    assert len(uses_missing) >= 1 and not ok[uses_missing].any()  # windows sampling the missing frame are invalid
    # the audio window of frame i starts at its time, 16 feature frames = 0.2 s long
    assert frame_to_mel(150, fps) == round(150 / fps * 80) and SYNC_MEL_FRAMES / 80 == 0.2


def test_baseline_finds_a_loudness_shift():
    """Mouth opening drives the loudness of a noise carrier; shifting the audio moves the estimate."""
    rng = np.random.default_rng(2)
    fps, n = 25.0, 250
    opening = np.convolve(rng.random(n + 40), np.ones(3) / 3, mode="same")[20:20 + n]
    spf = int(SAMPLE_RATE / fps)
    for k in (-6, 0, 5):
        # audio frame j carries the opening of video frame j + k (audio k frames early)
        env = np.array([opening[min(max(j + k, 0), n - 1)] for j in range(n)])
        audio = (np.repeat(env, spf) * rng.normal(size=n * spf)).astype(np.float32)
        assert abs(baseline_offset(opening, audio, fps) - k) <= 1


@pytest.mark.parametrize("n", [9, 10, 41, 275])
def test_median_filter_is_scipys_medfilt(n):
    from scipy.signal import medfilt

    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    assert np.array_equal(median_filter(x, 9), medfilt(x, kernel_size=9))
