"""Tests of media.fused: fused feature vectors for background-music fit (spec 02)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from media.fused import (
    FEATURE_NAMES,
    SR,
    D,
    fused_file,
    fused_window,
    iter_fused,
    summary,
)
from media.io import MediaError, read_audio

RNG = np.random.default_rng(12)
T10 = np.arange(10 * SR) / SR


def feat(vec: np.ndarray, name: str) -> float:
    return float(vec[FEATURE_NAMES.index(name)])


def click_track(bpm: float = 120.0, seconds: float = 10.0) -> np.ndarray:
    y = np.zeros(int(seconds * SR), np.float32)
    n = 200
    click = (np.hanning(n) * 0.8 * np.sin(2 * np.pi * 1000 * np.arange(n) / SR)).astype(np.float32)
    for beat in np.arange(0, seconds, 60.0 / bpm):
        i = int(beat * SR)
        y[i:i + n] += click[:len(y) - i]
    return y


def noise(seconds: float = 10.0, level: float = 0.3) -> np.ndarray:
    return RNG.uniform(-level, level, int(seconds * SR)).astype(np.float32)


def tone(freq: float = 220.0) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * freq * T10)).astype(np.float32)


def bursts(on_s: float = 0.6, period_s: float = 1.0) -> np.ndarray:
    """Speech-like voiced bursts (150 Hz, 4 Hz syllable modulation) separated by gaps."""
    y = np.zeros(10 * SR)
    n = int(on_s * SR)
    t = np.arange(n) / SR
    syllables = 0.3 * np.sin(2 * np.pi * 150 * t) * (1 + 0.5 * np.sin(2 * np.pi * 4 * t))
    for start in np.arange(0, 10, period_s):
        i = int(start * SR)
        y[i:i + n] = syllables[:len(y) - i]
    return (y + RNG.normal(0, 1e-4, len(y))).astype(np.float32)


# ----------------------------------------------------------------------------- layout


def test_names_match_length_and_are_unique():
    assert len(FEATURE_NAMES) == D == 68
    assert len(set(FEATURE_NAMES)) == D
    for name in ("mfcc3_mean", "chroma_C", "contrast0_mean", "centroid_mean_hz", "tempo_bpm",
                 "beat_strength", "rms_db_std", "zcr_mean", "f0_range_st", "pause_ratio",
                 "speaking_rate_hz"):
        assert name in FEATURE_NAMES


def test_same_length_for_speech_and_music_and_music_has_no_prosody():
    y = bursts()
    speech, music = fused_window(y, SR, speech=True), fused_window(y, SR, speech=False)
    assert speech.shape == music.shape == (D,)
    assert speech.dtype == music.dtype == np.float32
    assert np.all(np.isfinite(speech)) and np.all(np.isfinite(music))
    prosody = [FEATURE_NAMES.index(n) for n in ("f0_median_st", "f0_range_st", "f0_std_st",
                                                "voiced_ratio", "speaking_rate_hz",
                                                "pause_ratio")]
    assert np.all(music[prosody] == 0)
    assert np.any(speech[prosody] != 0)
    others = np.setdiff1d(np.arange(D), prosody)
    np.testing.assert_array_equal(speech[others], music[others])


# ----------------------------------------------------------------------------- synthetic


def test_click_track_tempo_and_beat_strength():
    clicks = fused_window(click_track(120.0), SR, speech=False)
    tempo = feat(clicks, "tempo_bpm")
    # octave errors (60 / 240) are acceptable for a tempo estimator; this one finds 120
    assert any(abs(tempo - bpm) / bpm < 0.05 for bpm in (60.0, 120.0, 240.0)), tempo
    assert abs(tempo - 120.0) < 6.0
    hiss = fused_window(noise(), SR, speech=False)
    assert feat(clicks, "beat_strength") > 3.0 > feat(hiss, "beat_strength")
    assert feat(clicks, "pulse_clarity") > 0.5 > feat(hiss, "pulse_clarity")


def test_steady_tone_has_no_rhythm():
    vec = fused_window(tone(), SR, speech=False)
    for name in ("tempo_bpm", "beat_strength", "pulse_clarity", "onset_rate_hz"):
        assert feat(vec, name) == 0.0


def test_tone_vs_noise_zcr_flatness_contrast():
    t, n = fused_window(tone(440.0), SR, speech=False), fused_window(noise(), SR, speech=False)
    assert feat(n, "zcr_mean") > 5 * feat(t, "zcr_mean")
    assert feat(n, "flatness_mean") > 0.3
    assert feat(t, "flatness_mean") < 0.01
    contrast = [f"contrast{i}_mean" for i in range(7)]
    assert (np.mean([feat(t, c) for c in contrast])
            > np.mean([feat(n, c) for c in contrast]) + 3.0)
    assert feat(n, "centroid_mean_hz") > 3 * feat(t, "centroid_mean_hz")


def test_gliding_pitch_spans_about_an_octave():
    freq = 100.0 * 2 ** (T10 / 10)  # 100 -> 200 Hz in 10 s
    y = (0.3 * np.sin(2 * np.pi * np.cumsum(freq) / SR)).astype(np.float32)
    vec = fused_window(y, SR, speech=True)
    # p95 - p5 of a uniform glide over 12 semitones is 10.8 semitones
    assert 9.5 < feat(vec, "f0_range_st") < 13.0
    assert abs(feat(vec, "f0_median_st") - 12 * np.log2(141.4 / 55.0)) < 1.0
    assert feat(vec, "voiced_ratio") > 0.9
    steady = fused_window(tone(220.0), SR, speech=True)
    assert feat(steady, "f0_range_st") < 0.5
    assert abs(feat(steady, "f0_median_st") - 24.0) < 0.3  # 220 Hz = 2 octaves above 55 Hz


def test_noise_is_not_voiced():
    vec = fused_window(noise(), SR, speech=True)
    assert feat(vec, "voiced_ratio") < 0.08


def test_pause_ratio_follows_gap_share():
    for on_s in (0.6, 0.3):
        vec = fused_window(bursts(on_s=on_s), SR, speech=True)
        # edges of each burst are smeared by the 64 ms analysis frame
        assert abs(feat(vec, "pause_ratio") - (1 - on_s)) < 0.08, on_s
    assert feat(fused_window(tone(), SR, speech=True), "pause_ratio") == 0.0


def test_loudness_variation():
    steady, gappy = fused_window(tone(), SR, speech=True), fused_window(bursts(), SR, speech=True)
    assert feat(gappy, "rms_db_std") > 10 * feat(steady, "rms_db_std")
    quieter = fused_window(tone() * 0.1, SR, speech=True)
    assert abs(feat(steady, "loudness_db") - feat(quieter, "loudness_db") - 20.0) < 0.1


# ----------------------------------------------------------------------------- edge cases


def test_silence_gives_defined_vector():
    vec = fused_window(np.zeros(3 * SR, np.float32), SR, speech=True)
    assert feat(vec, "rms_db_mean") == feat(vec, "loudness_db") == -100.0
    assert feat(vec, "pause_ratio") == 1.0
    assert feat(fused_window(np.zeros(3 * SR, np.float32), SR, speech=False), "pause_ratio") == 0


@pytest.mark.parametrize("y, sr, match", [
    (np.zeros(SR // 2, np.float32) + 0.1, SR, "too short"),
    (tone(), 22050, "16000 Hz"),
    (np.stack([tone(), tone()]), SR, "mono"),
    (np.full(2 * SR, np.nan, np.float32), SR, "NaN"),
])
def test_bad_input_raises_media_error(y, sr, match):
    with pytest.raises(MediaError, match=match):
        fused_window(y, sr, speech=True)


def test_short_file_and_bad_windows_raise(tmp_path: Path):
    path = tmp_path / "short.wav"
    sf.write(path, noise(0.5), SR)
    with pytest.raises(MediaError, match="too short"):
        fused_file(path, speech=True)
    with pytest.raises(MediaError, match="hop_s"):
        iter_fused(path, speech=True, window_s=5, hop_s=6)
    with pytest.raises(MediaError, match="does not exist"):
        iter_fused(tmp_path / "missing.wav", speech=False)


def test_summary():
    vecs = np.stack([np.zeros(D), np.ones(D)])
    np.testing.assert_allclose(summary(vecs), np.full(D, 0.5))
    with pytest.raises(MediaError):
        summary(np.zeros((2, D - 1)))
    with pytest.raises(MediaError):
        summary(np.zeros((0, D)))


# ----------------------------------------------------------------------------- streaming


def test_streaming_matches_whole_file_window_by_window(tmp_path: Path):
    # 33 s: overlapping windows (10 s, hop 5 s) at 0..20 s, then an 8 s tail window at 25 s
    y = np.concatenate([bursts(), click_track(100.0), tone(330.0), noise(3.0, 0.05)])
    path = tmp_path / "long.wav"
    sf.write(path, y, SR, subtype="FLOAT")
    whole = read_audio(path, sr=SR)
    streamed = list(iter_fused(path, speech=True, window_s=10.0, hop_s=5.0))
    starts = [s for s, _ in streamed]
    assert starts == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
    for start, vec in streamed:
        i = int(start * SR)
        expected = fused_window(whole[i:i + 10 * SR], SR, speech=True)
        np.testing.assert_array_equal(vec, expected)
    # non-overlapping default windows, and max_seconds
    rows = fused_file(path, speech=False)
    assert rows.shape == (4, D)  # 0, 10, 20 s and a 3 s tail at 30 s
    np.testing.assert_array_equal(rows[1], fused_window(whole[10 * SR:20 * SR], SR, speech=False))
    assert fused_file(path, speech=False, max_seconds=20.0).shape == (2, D)


# ----------------------------------------------------------------------------- real media


def test_real_speech_and_music_give_finite_vectors(media: Path):
    speech = fused_file(media / "speech" / "ljspeech_LJ001-0001.wav", speech=True)
    music = fused_file(media / "music" / "wesnoth_loyalists.ogg", speech=False,
                       max_seconds=30.0)
    assert speech.shape == (1, D) and music.shape == (3, D)
    assert np.all(np.isfinite(speech)) and np.all(np.isfinite(music))
    s, m = summary(speech), summary(music)
    assert 2.0 < feat(s, "speaking_rate_hz") < 8.0
    assert feat(s, "voiced_ratio") > 0.1 and 10.0 < feat(s, "f0_median_st") < 35.0
    assert 40.0 < feat(m, "tempo_bpm") < 240.0


def test_emodb_anger_has_higher_and_wider_pitch_than_sadness(media: Path):
    """EmoDB: the 6th character of the name is the emotion (W anger, T sadness).

    Over the first 8 files of each, anger's pitch range (p95 - p5) is ~8 semitones against
    ~4 for sadness (6 of 8 angry files above every sad one but one), and its median pitch ~12 semitones higher. Loudness variation
    (``rms_db_std``) is higher for anger only on average (16 vs 13 dB, carried by two
    files), so it is not asserted.
    """
    files = sorted((media / "speech_emotion" / "emodb").glob("*.opus"))
    stats = {}
    for emotion in "WT":
        chosen = [f for f in files if f.name[5] == emotion][:8]
        assert len(chosen) == 8
        stats[emotion] = np.stack([summary(fused_file(f, speech=True)) for f in chosen])
    idx = FEATURE_NAMES.index
    assert stats["W"][:, idx("f0_range_st")].mean() > stats["T"][:, idx("f0_range_st")].mean() + 1.5
    assert stats["W"][:, idx("f0_median_st")].mean() > stats["T"][:, idx("f0_median_st")].mean() + 5
