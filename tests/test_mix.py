"""Tests for the BGM-fit mix (media.mix.segment_mix, its look-ahead limiter, true_peak_db, mix_segments_file)
and the shared voice detector / loudness helpers it adds to media.mix. Synthetic signals and files, and one
real speech recording (marked media): fast."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pyloudnorm
import pytest
import scipy.signal
import soundfile as sf

import media.mix as mix_module
from media.io import MediaError, probe, read_audio, write_audio, write_video
from media.mix import (
    HANGOVER_S,
    frame_rms_db,
    mix_segments_file,
    segment_mix,
    true_peak_db,
    voice_activity,
)

SR = 16000


# ------------------------------------------------------------------------------------------------
# synthetic signals
# ------------------------------------------------------------------------------------------------
def sine(freq: float, seconds: float, amp: float = 0.3, sr: int = SR) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def bursts(spans, seconds: float = 10.0, freq: float = 1000.0, amp: float = 0.2, sr: int = SR) -> np.ndarray:
    """A "voice": tone bursts over ``spans`` ((start_s, end_s)), 5 ms ramps, silence elsewhere."""
    x = np.zeros(round(seconds * sr), np.float32)
    for start, end in spans:
        a, b = round(start * sr), round(end * sr)
        burst = sine(freq, (b - a) / sr, amp, sr)
        ramp = np.minimum(1.0, np.minimum(np.arange(b - a), np.arange(b - a)[::-1]) / (0.005 * sr))
        x[a:b] = burst * ramp
    return x


def plosive(x: np.ndarray, at_s: float, amp: float, sr: int = SR) -> None:
    """Add, in place, a 1.5 ms burst at 3 kHz (Hann window) at ``at_s``: a peak that carries little energy."""
    p = round(0.0015 * sr)
    a = round(at_s * sr)
    x[a:a + p] += (amp * np.hanning(p) * np.sin(2 * np.pi * 3000 * np.arange(p) / sr)).astype(np.float32)


def peaky_speech(seconds: float = 10.0, sr: int = SR, plosives: float = 0.3, seed: int = 0) -> np.ndarray:
    """A "voice" with speech's peaks: 0.2 s syllables every 0.3 s of a 130 Hz vowel (15 harmonics, random
    phases: some 12 dB of crest), their levels varied over 6 dB, and a plosive (:func:`plosive`) at the start
    of every third one: a true peak some 20 dB over the loudness, as in real speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sr)) / sr
    vowel = sum(np.sin(2 * np.pi * k * 130.0 * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 16))
    vowel *= 0.05 / np.sqrt(np.mean(vowel ** 2))
    x = np.zeros(len(t), np.float32)
    for i, start in enumerate(np.arange(0.2, seconds - 0.3, 0.3)):
        a, b = round(start * sr), round((start + 0.2) * sr)
        ramp = np.minimum(1.0, np.minimum(np.arange(b - a), np.arange(b - a)[::-1]) / (0.01 * sr))
        x[a:b] = vowel[a:b] * ramp * 10 ** (rng.uniform(-4, 2) / 20)
        if i % 3 == 0:
            plosive(x, start + 0.01, plosives, sr)
    return x


def limited(x: np.ndarray, gain_db: float, ceiling_db: float, sr: int = SR) -> tuple[np.ndarray, np.ndarray]:
    """media.mix's limiter over the whole of ``x``: (output, the limiter's gain per sample)."""
    blocks = list(mix_module._limited_blocks(x, sr, gain_db, ceiling_db))
    assert [a for a, _, _ in blocks] == list(range(0, len(x), mix_module._CHUNK))
    return np.concatenate([y for _, y, _ in blocks]), np.concatenate([g for _, _, g in blocks])


def lufs(x: np.ndarray, sr: int = SR) -> float:
    return pyloudnorm.Meter(sr).integrated_loudness(np.asarray(x, np.float64))


def rms_db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2) + 1e-20)


def part(x: np.ndarray, start: float, end: float, sr: int = SR) -> np.ndarray:
    return x[round(start * sr): round(end * sr)]


def amplitude(x: np.ndarray, freq: float, start: float, end: float, sr: int = SR) -> float:
    """Amplitude of the ``freq`` Hz component of ``x`` between ``start`` and ``end`` s (a lock-in)."""
    t = np.arange(round(start * sr), round(end * sr)) / sr
    return float(2 * np.abs(np.mean(part(x, start, end, sr) * np.exp(-2j * np.pi * freq * t))))


def music_in(mix: np.ndarray, speech: np.ndarray, info: dict) -> np.ndarray:
    """The music in ``mix``: the mix minus the speech with the mix's logged gain."""
    return mix.astype(np.float64) - speech * 10 ** (info["gain_db"] / 20)


# the "voice" of the ducking tests: 2.5 s of words, a 3 s pause, 2 s of words, a 0.8 s pause, 1.2 s of words
VOICE = [(0.5, 3.0), (6.0, 8.0), (8.8, 10.0)]


# ------------------------------------------------------------------------------------------------
# helpers: loudness, true peak, voice detector
# ------------------------------------------------------------------------------------------------
def test_blockwise_loudness_is_pyloudnorms(monkeypatch):
    rng = np.random.default_rng(1)
    for sr, seconds in ((16000, 7.33), (44100, 3.0)):
        n = round(seconds * sr)
        x = rng.standard_normal(n) * np.repeat(rng.uniform(0.0, 0.3, n // 1000 + 1), 1000)[:n]
        x[sr: 2 * sr] *= 1e-4  # a quiet second the gates drop
        expected = pyloudnorm.Meter(sr).integrated_loudness(x)
        assert mix_module._integrated_lufs(x, sr) == pytest.approx(expected, abs=1e-6)
        monkeypatch.setattr(mix_module, "_CHUNK", 4999)  # many blocks, bounds inside and across them
        assert mix_module._integrated_lufs(x.astype(np.float32), sr) == pytest.approx(expected, abs=1e-4)
        monkeypatch.undo()
        cuts = [0, 17, 17, 5000, 5001, sr, n]  # blocks of any length, one of them empty
        blocks = (x[cuts[i]:cuts[i + 1]] for i in range(len(cuts) - 1))
        assert mix_module._stream_lufs(blocks, n, sr) == pytest.approx(expected, abs=1e-6)
    assert mix_module._integrated_lufs(np.zeros(SR), SR) == -np.inf


def test_true_peak_sees_between_the_samples():
    # a sine at sr/4 sampled 45 degrees off its crests: samples at 0.5 * 0.707, true peak 0.5 (-6.02 dBTP)
    n = np.arange(SR)
    x = 0.5 * np.sin(np.pi / 2 * n + np.pi / 4) * np.minimum(1.0, np.minimum(n, n[::-1]) / 2000)  # ramped ends
    assert 20 * np.log10(np.max(np.abs(x))) == pytest.approx(-9.03, abs=0.01)
    assert true_peak_db(x, SR) == pytest.approx(-6.02, abs=0.1)
    assert true_peak_db(x, SR, oversample=1) == pytest.approx(-9.03, abs=0.01)
    assert true_peak_db(np.zeros(1000), SR) == -np.inf
    assert true_peak_db(np.zeros(0), SR) == -np.inf
    with pytest.raises(MediaError, match="NaN"):
        true_peak_db(np.array([0.0, np.nan, 0.1]), SR)


def test_true_peak_in_blocks_equals_the_whole_signal(monkeypatch):
    x = np.random.default_rng(2).standard_normal(50_000).astype(np.float32) * 0.1
    x[31_234] = 0.9  # a click near no block edge in particular
    whole = 20 * np.log10(max(np.max(np.abs(scipy.signal.resample_poly(x.astype(np.float64), 4, 1))),
                              np.max(np.abs(x))))
    monkeypatch.setattr(mix_module, "_CHUNK", 1000)
    assert true_peak_db(x, SR) == pytest.approx(whole, abs=1e-9)


def test_frame_rms_in_blocks_equals_one_cumsum(monkeypatch):
    x = np.random.default_rng(3).standard_normal(12_345).astype(np.float32)
    win, hop = round(0.03 * SR), round(0.01 * SR)
    energy = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    starts = np.arange(0, len(x), hop)
    stops = np.minimum(starts + win, len(x))
    direct = 10 * np.log10((energy[stops] - energy[starts]) / (stops - starts) + 1e-12)
    monkeypatch.setattr(mix_module, "_CHUNK", 1000)
    assert np.allclose(frame_rms_db(x, SR), direct, atol=1e-9)
    assert len(frame_rms_db(np.zeros(0), SR)) == 0


def test_voice_activity_hold_defaults_to_the_annotation_hangover():
    speech = bursts(VOICE)
    loud = lufs(speech)
    default = voice_activity(speech, SR, loud)
    assert np.array_equal(default, voice_activity(speech, SR, loud, hold_s=HANGOVER_S))
    longer = voice_activity(speech, SR, loud, hold_s=1.0)
    assert HANGOVER_S == 0.3 and longer.sum() > default.sum()
    # the 0.8 s pause (8.0-8.8 s): bridged with a 1 s hold, not with 0.3 s
    assert longer[820:870].all() and not default[840:870].any()


# ------------------------------------------------------------------------------------------------
# segment_mix
# ------------------------------------------------------------------------------------------------
def test_segment_mix_reaches_the_loudness_under_the_true_peak_limit():
    speech = bursts(VOICE)
    mix, info = segment_mix(speech, SR, [(0.0, 10.0, sine(150, 10.0))])
    assert mix.dtype == np.float32 and mix.shape == speech.shape
    assert lufs(mix) == pytest.approx(-16.0, abs=0.05)
    assert info["loudness_lufs"] == pytest.approx(lufs(mix), abs=0.01)
    assert info["true_peak_dbtp"] == pytest.approx(true_peak_db(mix, SR), abs=0.001) and info["true_peak_dbtp"] <= -1.0
    # peaks under the limit after the gain: no limiter at all
    assert info["limiter_gain_db"] == 0.0 and info["limiter_passes"] == 0
    assert info["limiter_gain_reduction_db_max"] == 0.0 and info["limited_fraction"] == 0.0
    assert info["limiter_ceiling_dbfs"] == -1.5
    assert {"loudness_lufs", "target_lufs", "true_peak_dbtp", "duck_db", "attack_s", "release_s", "hold_s",
            "crossfade_s", "bgm_offset_lu", "voice_fraction", "n_segments", "n_tracks_changes",
            "limiter_gain_reduction_db_max", "limited_fraction"} <= info.keys()
    assert (info["target_lufs"], info["duck_db"], info["attack_s"], info["release_s"], info["hold_s"],
            info["crossfade_s"], info["bgm_offset_lu"]) == (-16.0, -15.0, 0.08, 0.5, 1.0, 2.0, -4.0)
    # the music is gained to 4 LU under the speech (before ducking)
    track = info["tracks"][0]
    assert lufs(sine(150, 10.0) * 10 ** (track["gain_db"] / 20)) == pytest.approx(info["speech_lufs"] - 4.0, abs=0.01)
    assert info["speech_lufs"] == pytest.approx(lufs(speech), abs=0.01)


def test_segment_mix_limits_peaky_speech_and_keeps_its_loudness():
    speech = peaky_speech()
    assert true_peak_db(speech, SR) - lufs(speech) > 19  # a plain gain down to -1 dBTP: -20 LUFS or less
    mix, info = segment_mix(speech, SR, [(0.0, 10.0, sine(150, 10.0, amp=0.05))])
    assert mix.dtype == np.float32 and mix.shape == speech.shape
    assert lufs(mix) == pytest.approx(-16.0, abs=0.5) and info["loudness_lufs"] == pytest.approx(lufs(mix), abs=0.01)
    assert true_peak_db(mix, SR) <= -1.0 and info["true_peak_dbtp"] == pytest.approx(true_peak_db(mix, SR), abs=0.001)
    assert 3.0 < info["limiter_gain_reduction_db_max"] < 12.0  # the plosives, taken down
    assert 0.0 < info["limited_fraction"] < 0.5 and 1 <= info["limiter_passes"] <= 3
    assert info["limiter_gain_db"] == 0.0  # the true-peak limiter met the limit itself: no gain down after it


def test_segment_mix_limits_hard_material_to_the_true_peak_at_less_cost():
    speech = bursts(VOICE, amp=0.05)
    clicks = np.zeros(10 * SR, np.float32)
    clicks[:: SR // 10] = 1.0  # single-sample clicks, 10 a second: a huge peak for their loudness
    square = np.sign(sine(100, 10.0)).astype(np.float32)  # not band-limited: true peaks over its samples
    for music, target in ((clicks, -16.0), (square, -16.0), (square, -6.0)):
        mix, info = segment_mix(speech, SR, [(0.0, 10.0, music)], bgm_offset_lu=6.0, target_lufs=target)
        assert true_peak_db(mix, SR) <= -1.0 + 1e-6 and info["true_peak_dbtp"] <= -1.0
        assert info["loudness_lufs"] == pytest.approx(lufs(mix), abs=0.01)
        assert np.max(np.abs(mix)) <= 10 ** (-1 / 20)
        if music is square and target == -16.0:  # a square wave at -16 LUFS peaks near -9 dBTP: no limit
            assert info["limiter_passes"] == 0 and lufs(mix) == pytest.approx(-16.0, abs=0.05)
        else:  # limited: the loudness within 1 LU of the target (a plain gain down: 8 and 4 LU under it)
            assert info["limiter_passes"] >= 1 and info["limiter_gain_reduction_db_max"] > 3.0
            assert lufs(mix) == pytest.approx(target, abs=1.0)


def test_limiter_leaves_a_signal_under_its_ceiling_untouched():
    x = peaky_speech(seconds=3.0) * np.float32(0.5)  # peaks near -12 dBFS
    y, gain = limited(x, 0.0, -1.5)
    assert np.array_equal(y, x) and np.all(gain == 1.0)
    y, gain = limited(x, 6.0, -1.5)  # gained, still under
    assert np.array_equal(y, (x * np.float64(10 ** (6 / 20))).astype(np.float32)) and np.all(gain == 1.0)


def test_limiter_holds_the_ceiling_in_place_and_in_time():
    n, t = 3 * SR, 20_011
    x = sine(440, 3.0, amp=0.2)
    x[t] = 0.9  # a click, 13 dB over the tone
    x[:3] = 0.8  # a peak at the very first sample: ramped down for in the silence before it
    look = round(0.005 * SR)
    y, gain = limited(x, 0.0, -6.0)
    assert len(y) == n and y.dtype == np.float32
    assert np.max(np.abs(y)) <= 10 ** (-6 / 20) * (1 + 1e-6)
    assert int(np.argmax(np.abs(y[SR // 2:]))) + SR // 2 == t  # the click stays where it was
    lags = range(-5, 6)
    corr = [np.dot(y[1000 + k: n - 1000 + k], x[1000: n - 1000]) for k in lags]
    assert lags[int(np.argmax(corr))] == 0  # no delay
    # untouched until the look-ahead reaches the click; the gain ramps down (no step), then releases
    assert np.array_equal(y[SR: t - look], x[SR: t - look])  # the release from the first peak is over
    assert gain[t] == pytest.approx(10 ** (-6 / 20) / 0.9, rel=1e-3)
    assert np.max(np.abs(np.diff(gain[SR // 2:]))) <= (1 - gain[t]) / look * 1.001
    assert gain[t + round(0.3 * SR)] > 10 ** (-0.1 / 20)  # 50 ms release: back within 0.1 dB after 0.3 s
    assert np.array_equal(y[t + SR:], x[t + SR:])  # and the tail over after 1 s
    # the same in blocks of any size (smaller than the look-ahead too)
    for chunk in (1000, 37):
        mix_module._CHUNK, saved = chunk, mix_module._CHUNK
        try:
            y_blocks, gain_blocks = limited(x, 0.0, -6.0)
        finally:
            mix_module._CHUNK = saved
        assert np.allclose(gain_blocks, gain, atol=1e-9) and np.max(np.abs(y_blocks - y)) < 1e-6


def test_limiter_sees_the_true_peak_between_the_samples():
    # a sine at sr/4 sampled 45 degrees off its crests: samples at 0.707 of the true peak (3 dB under)
    k = np.arange(SR)
    ramped = np.minimum(1.0, np.minimum(k, k[::-1]) / 2000)
    x = (0.9 * np.sin(np.pi / 2 * k + np.pi / 4) * ramped).astype(np.float32)
    assert true_peak_db(x, SR) == pytest.approx(20 * np.log10(0.9), abs=0.1)
    y, _ = limited(x, 0.0, -3.0)
    assert true_peak_db(y, SR) == pytest.approx(-3.0, abs=0.1)  # not samples at -3 dBFS: a true peak at 0 dBTP
    assert 20 * np.log10(np.max(np.abs(y))) == pytest.approx(-6.0, abs=0.1)


def test_segment_mix_limits_ordinary_material_only_at_its_peaks():
    speech = bursts(VOICE)
    plosive(speech, 1.0, 0.9)
    plosive(speech, 7.0, 0.9)  # two peaks, some 16 dB over the loudness: 2 dB over the ceiling at -16 LUFS
    mix, info = segment_mix(speech, SR, [(0.0, 10.0, sine(150, 10.0))])
    assert info["limiter_passes"] >= 1 and info["limiter_gain_reduction_db_max"] > 0.5
    assert 0.0 < info["limited_fraction"] < 0.05
    assert lufs(mix) == pytest.approx(-16.0, abs=0.1) and true_peak_db(mix, SR) <= -1.0
    # the mix away from the peaks is the plain gained mix: the limiter touched nothing there
    plain = speech.astype(np.float64) * 10 ** (info["gain_db"] / 20)
    bed = mix - plain
    quiet = np.r_[round(2.0 * SR): round(6.9 * SR)]
    assert rms_db(bed[quiet]) < rms_db(mix[quiet]) - 5  # just the (ducked) music


def test_segment_mix_meets_both_targets_on_real_speech(media):
    path = media / "speech" / "ljspeech_LJ001-0001.wav"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    sr = 44100
    speech = read_audio(path, sr=sr)
    music = sine(220, len(speech) / sr, amp=0.05, sr=sr)
    mix, info = segment_mix(speech, sr, [(0.0, len(speech) / sr, music)])
    assert len(mix) == len(speech)
    assert lufs(mix, sr) == pytest.approx(-16.0, abs=0.5) and true_peak_db(mix, sr) <= -1.0
    assert info["limiter_gain_reduction_db_max"] > 2.0  # this speech peaks some 19 dB over its loudness
    lags = range(-3, 4)
    corr = [np.dot(mix[sr + k: -sr + k], speech[sr: -sr]) for k in lags]
    assert lags[int(np.argmax(corr))] == 0


def test_segment_mix_ducks_during_speech_and_comes_back_up_in_long_pauses_only():
    speech, music = bursts(VOICE), sine(150, 10.0)
    mix, info = segment_mix(speech, SR, [(0.0, 10.0, music)])
    bed = music_in(mix, speech, info)
    full = 10 * np.log10(np.mean(music.astype(np.float64) ** 2)) + info["tracks"][0]["gain_db"] + info["gain_db"]
    assert rms_db(part(bed, 0.52, 0.7)) == pytest.approx(full - 15, abs=0.5)  # already down: 0.08 s lead
    assert rms_db(part(bed, 1.0, 3.0)) == pytest.approx(full - 15, abs=0.3)  # words
    assert rms_db(part(bed, 3.1, 3.9)) == pytest.approx(full - 15, abs=0.3)  # held 1 s into the pause
    assert rms_db(part(bed, 4.7, 5.85)) == pytest.approx(full, abs=0.2)  # back up in the 3 s pause
    assert rms_db(part(bed, 8.0, 8.8)) == pytest.approx(full - 15, abs=0.3)  # still down in the 0.8 s one
    assert 0.72 < info["voice_fraction"] < 0.82  # 0.42-4.0 s and 5.92-10 s
    _, deeper = segment_mix(speech, SR, [(0.0, 10.0, music)], duck_db=-18.0, hold_s=0.3)
    assert deeper["voice_fraction"] < info["voice_fraction"]


def test_segment_mix_crossfades_between_tracks():
    speech = bursts([(0.0, 0.5)], freq=3000)
    low, high = sine(220, 10.0, amp=0.5), sine(880, 10.0, amp=0.05)  # different levels: matched by the mix
    mix, info = segment_mix(speech, SR, [(0.0, 5.0, low), (5.0, 10.0, high)])
    bed = music_in(mix, speech, info)
    assert info["n_tracks_changes"] == 1 and info["n_crossfades"] == 1
    full_low, full_high = amplitude(bed, 220, 2.5, 3.5), amplitude(bed, 880, 6.5, 7.5)
    assert amplitude(bed, 880, 2.5, 3.5) < 1e-3 * full_high and amplitude(bed, 220, 6.5, 7.5) < 1e-3 * full_low
    # 2 s crossfade centred on 5 s: nothing of the next track before 4 s, nothing of the last after 6 s
    assert amplitude(bed, 880, 3.7, 3.95) < 1e-3 * full_high
    assert amplitude(bed, 220, 6.05, 6.3) < 1e-3 * full_low
    for start in (4.2, 4.5, 5.25, 5.6):  # both in the window
        assert amplitude(bed, 220, start, start + 0.25) > 0.1 * full_low
        assert amplitude(bed, 880, start, start + 0.25) > 0.1 * full_high
    # equal power at the boundary: each at -3 dB
    assert amplitude(bed, 220, 4.95, 5.05) == pytest.approx(full_low * 0.707, rel=0.05)
    assert amplitude(bed, 880, 4.95, 5.05) == pytest.approx(full_high * 0.707, rel=0.05)
    # loudness matched per track: no jump in level at the change
    assert lufs(part(bed, 2.0, 4.0)) == pytest.approx(lufs(part(bed, 6.0, 9.0)), abs=0.3)


def test_segment_mix_shortens_the_crossfade_for_a_short_segment():
    speech = bursts([(0.0, 0.5)], freq=3000)
    low, high = sine(220, 10.0), sine(880, 3.0)
    mix, info = segment_mix(speech, SR, [(0.0, 5.0, low), (5.0, 5.6, high), (5.6, 10.0, low)])
    assert [t["crossfade_in_s"] for t in info["tracks"]] == [0.0, 0.6, 0.6]
    assert [t["crossfade_out_s"] for t in info["tracks"]] == [0.6, 0.6, 0.0]
    assert info["n_tracks_changes"] == 2 and info["n_crossfades"] == 2 and len(info["tracks"]) == 3
    bed = music_in(mix, speech, info)
    assert amplitude(bed, 880, 4.0, 4.65) < 1e-3 * amplitude(bed, 880, 5.2, 5.4)


def test_the_same_track_in_touching_segments_plays_on():
    speech = bursts([(1.0, 2.0), (6.0, 7.0)])
    music = sine(220, 20.0) * np.linspace(0.5, 1.0, 20 * SR, dtype=np.float32)  # no two moments alike
    whole, _ = segment_mix(speech, SR, [(0.0, 10.0, music)])
    kept, info = segment_mix(speech, SR, [(0.0, 4.0, music), (4.0, 10.0, music)])
    assert info["n_segments"] == 2 and info["n_tracks_changes"] == 0 and info["n_crossfades"] == 0
    assert len(info["tracks"]) == 1 and info["tracks"][0]["segments"] == [1, 2]
    assert np.max(np.abs(kept - whole)) < 1e-6
    # an equal copy is another track: it restarts, crossfaded
    restarted, info = segment_mix(speech, SR, [(0.0, 4.0, music), (4.0, 10.0, music.copy())])
    assert info["n_tracks_changes"] == 1 and info["n_crossfades"] == 1
    assert np.max(np.abs(restarted - whole)) > 0.01


def test_segment_mix_loops_short_music_and_leaves_gaps_silent():
    speech = bursts([(0.5, 1.0)])
    mix, info = segment_mix(speech, SR, [(0.0, 4.0, sine(220, 1.3)), (6.0, 10.0, sine(330, 20.0))])
    bed = music_in(mix, speech, info)
    assert info["tracks"][0]["looped"] and not info["tracks"][1]["looped"]
    assert info["n_crossfades"] == 0  # a gap between the segments: nothing to crossfade
    assert rms_db(part(bed, 3.0, 3.9)) > -40  # still playing after 1.3 s
    assert np.max(np.abs(part(bed, 4.0, 6.0))) < 1e-6  # no music in the gap
    assert len(mix) == len(speech)


@pytest.mark.parametrize("segments, message", [
    ([], "no music segments"),
    ([(0.0, 6.0, "A"), (5.0, 10.0, "B")], r"segment 2 of 2 \(5.000-10.000 s\) overlaps segment 1 of 2"),
    ([(5.0, 10.0, "A"), (0.0, 5.0, "B")], "not in time order"),
    ([(0.0, 11.0, "A")], r"segment 1 of 1 \(0.000-11.000 s\) ends after the speech, which is 10.000 s long"),
    ([(-1.0, 5.0, "A")], "starts before the speech"),
    ([(3.0, 3.0, "A")], "ends before it starts"),
    ([(0.0, 5.0, "A"), (5.0, 10.0, "silent")], r"the music of segment 2 of 2 \(5.000-10.000 s\) is silent"),
    ([(0.0, 5.0, "stereo")], "music of segment 1 of 1 .* must be a 1-D mono signal"),
    ([(0.0, 5.0)], r"segment 1 of 1 must be \(start_s, end_s, music\)"),
    ([(0.0, float("nan"), "A")], "not a finite number"),
])
def test_segment_mix_refuses_bad_segments(segments, message):
    musics = {"A": sine(220, 5.0), "B": sine(330, 5.0), "silent": np.zeros(5 * SR, np.float32),
              "stereo": np.zeros((2, SR), np.float32)}
    segments = [(*s[:2], musics[s[2]]) if len(s) == 3 else s for s in segments]
    with pytest.raises(MediaError, match=message):
        segment_mix(bursts(VOICE), SR, segments)


def test_segment_mix_refuses_silent_speech_and_bad_settings():
    music = sine(220, 10.0)
    with pytest.raises(MediaError, match="the speech is silent"):
        segment_mix(np.zeros(10 * SR, np.float32), SR, [(0.0, 10.0, music)])
    with pytest.raises(MediaError, match="duck_db"):
        segment_mix(bursts(VOICE), SR, [(0.0, 10.0, music)], duck_db=6.0)
    with pytest.raises(MediaError, match="crossfade_s"):
        segment_mix(bursts(VOICE), SR, [(0.0, 10.0, music)], crossfade_s=-1.0)


def test_segment_mix_accepts_an_end_a_hair_past_the_speech():
    mix, info = segment_mix(bursts(VOICE), SR, [(0.0, 10.03, sine(220, 10.0))])
    assert len(mix) == 10 * SR and info["tracks"][0]["end_s"] == 10.0


# ------------------------------------------------------------------------------------------------
# mix_segments_file
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def files(tmp_path):
    write_audio(tmp_path / "speech.wav", bursts(VOICE), SR)
    write_audio(tmp_path / "a.wav", sine(220, 5.0, amp=0.5), SR)
    write_audio(tmp_path / "b.wav", sine(660, 12.0, amp=0.1), SR)
    return tmp_path


def test_mix_segments_file_writes_a_wav_and_decodes_each_track_once(files, monkeypatch):
    calls = []

    def counting_read_audio(path, *args, **kwargs):
        calls.append(Path(path).name)
        return read_audio(path, *args, **kwargs)

    monkeypatch.setattr(mix_module, "read_audio", counting_read_audio)
    segments = [(0.0, 3.0, files / "a.wav"), (3.0, 6.0, str(files / "a.wav")), (6.0, 10.0, files / "b.wav")]
    out = mix_segments_file(files / "speech.wav", segments, files / "out" / "mix.wav", sr=SR)
    assert sorted(calls) == ["a.wav", "b.wav", "speech.wav"]
    assert out["mix_path"] == str(files / "out" / "mix.wav")
    assert out["n_tracks_changes"] == 1 and len(out["tracks"]) == 2  # a.wav plays on across 3 s
    written, sr = sf.read(out["mix_path"], dtype="float32")
    speech, a, b = (read_audio(files / name, sr=SR) for name in ("speech.wav", "a.wav", "b.wav"))
    expected, _ = segment_mix(speech, SR, [(0.0, 3.0, a), (3.0, 6.0, a), (6.0, 10.0, b)])
    assert sr == SR and len(written) == len(speech)
    assert np.max(np.abs(written - expected)) < 1e-4  # 16-bit rounding only
    assert lufs(written) == pytest.approx(-16.0, abs=0.1)


def test_mix_segments_file_refuses_bad_requests(files):
    segments = [(0.0, 10.0, files / "a.wav")]
    with pytest.raises(MediaError, match="limit is 5 s"):
        mix_segments_file(files / "speech.wav", segments, files / "mix.wav", sr=SR, max_seconds=5)
    with pytest.raises(MediaError, match=r"\.wav"):
        mix_segments_file(files / "speech.wav", segments, files / "mix.mp3", sr=SR)
    with pytest.raises(MediaError, match="over its own input"):
        mix_segments_file(files / "speech.wav", segments, files / "a.wav", sr=SR)
    with pytest.raises(MediaError, match="speech.wav' has no picture; write the mix as .wav"):
        mix_segments_file(files / "speech.wav", segments, files / "mix.mp4", sr=SR)
    with pytest.raises(MediaError, match="does not exist"):
        mix_segments_file(files / "speech.wav", [(0.0, 10.0, files / "missing.wav")], files / "mix.wav", sr=SR)
    with pytest.raises(MediaError, match="overlaps"):
        mix_segments_file(files / "speech.wav", [*segments, (9.0, 10.0, files / "b.wav")], files / "mix.wav",
                          sr=SR)


def _video_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.video[0]) if p.size]


def test_mix_segments_file_copies_the_picture_and_muxes_the_mix(files):
    rng = np.random.default_rng(4)
    frames = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(30)]
    write_video(files / "talk.mp4", frames, fps=10, audio=bursts([(0.3, 1.2), (2.0, 3.0)], seconds=3.0), sr=SR)
    segments = [(0.0, 1.5, files / "a.wav"), (1.5, 3.0, files / "b.wav")]
    wav = mix_segments_file(files / "talk.mp4", segments, files / "mix.wav", sr=SR, crossfade_s=0.5)
    mix, _ = sf.read(wav["mix_path"], dtype="float32")
    source = probe(files / "talk.mp4")
    for name in ("mix.mp4", "mix.mkv"):
        out = mix_segments_file(files / "talk.mp4", segments, files / name, sr=SR, crossfade_s=0.5)
        assert out["mix_path"] == str(files / name) and out["crossfade_s"] == 0.5
        info = probe(files / name)
        assert info.has_video and info.has_audio
        assert (info.n_frames, info.video_codec, info.width, info.height) == (
            source.n_frames, source.video_codec, source.width, source.height)
        assert _video_packets(files / name) == _video_packets(files / "talk.mp4")  # copied, not re-encoded
        audio = read_audio(files / name, sr=SR)
        assert abs(len(audio) - len(mix)) <= SR // 100
        n = min(len(audio), len(mix))
        if name.endswith(".mkv"):  # 16-bit PCM: the mix itself
            assert np.max(np.abs(audio[:n] - mix[:n])) < 1e-4
        else:  # AAC: the mix, lossily
            assert np.corrcoef(audio[:n], mix[:n])[0, 1] > 0.95
            assert lufs(audio) == pytest.approx(-16.0, abs=0.5)
