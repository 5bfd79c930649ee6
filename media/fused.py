"""Fused feature vectors for background-music fit (spec 02): one vector per window of audio,
built the same way for speech and for music.

Convention
----------
* audio is mono float32 at ``SR`` = 16 kHz, the project's rate (``media.features``): speech
  needs nothing above 8 kHz, music descriptors lose only the top octave, and every STFT is
  ~40 % cheaper than at 22.05 kHz;
* one STFT per window: ``N_FFT`` = 1024 (64 ms), ``HOP`` = 256 (16 ms, 62.5 frames/s);
* windows of ``WINDOW_S`` = 10 s, hop ``HOP_S`` = 10 s by default (any ``0 < hop_s <=
  window_s`` works); :func:`iter_fused` streams them through :func:`media.io.iter_audio_chunks`
  keeping at most ``window + hop`` samples, so a 3-hour file runs in bounded memory.

The vector (``D`` = ``len(FEATURE_NAMES)`` = 68, float32, same layout for both kinds)
--------------------------------------------------------------------------------------
* loudness: frame RMS in dBFS (mean, std, p95 - p10 range) and the power-mean level
  (``loudness_db``, 10 log10 of the mean power; pyloudnorm is not a dependency here);
* zero-crossing rate (mean, std); this and every spectral statistic below (MFCC, chroma
  included) is taken over the *active* frames, within 40 dB of the window's loud frames (p95),
  so pauses and silence do not read as flat, noisy spectra;
* spectral centroid / roll-off (85 %) in Hz (mean, std), bandwidth (mean), flatness (mean, std);
* spectral contrast, 7 values (6 octave bands from 100 Hz + the rest), means;
* MFCC 0-12 (from a 64-band log-mel, dB) means and stds;
* chroma (12 pitch classes, C..B) means;
* rhythm: ``tempo_bpm`` (best lag of the onset envelope's autocorrelation at 40-240 BPM
  under librosa's log-normal tempo prior; octave errors 60/120/240 are possible),
  ``beat_strength`` (onset strength at the tracked beats / mean onset strength: 1 = no beat),
  ``pulse_clarity`` (largest normalised autocorrelation of the onset envelope at 40-240 BPM),
  ``onset_rate_hz``; all four are 0.0 when the onset envelope never rises 1 dB (a steady
  sound has no beat);
* prosody (``speech=True`` only; all six are 0.0 for music, which has no speaking voice and
  whose polyphony makes a single-f0 tracker meaningless): ``f0_median_st`` (median f0 of
  voiced frames in semitones above 55 Hz), ``f0_range_st`` (p95 - p5 in semitones),
  ``f0_std_st``, ``voiced_ratio``, ``speaking_rate_hz`` (syllable nuclei, i.e. peaks of the
  300-3000 Hz band energy, per second of non-pause audio) and ``pause_ratio`` (share of the
  window in pauses: frames below ``max(p95 - 25 dB, -60 dBFS)`` in runs of >= 0.15 s).

Pitch uses ``librosa.yin`` (fmin 65 Hz, fmax 500 Hz), not ``pyin``: pyin's Viterbi decoding
costs about as much as everything else together several times over, while yin is one FFT
autocorrelation. Yin has no voicing decision, so a frame counts as voiced when it is not in
a pause, not in the quietest 20 dB, its f0 is continuous (< 1 semitone) with both
neighbours in a run of >= 3 frames (48 ms), and not pinned to fmin/fmax, which rejects
noise (whose yin f0 jumps around).

Values are in their natural units (Hz, dB, BPM, ratios): standardise them (per dimension, on
the training set) before feeding a model.

Edge cases
----------
* a window shorter than ``MIN_SECONDS`` (1 s) raises :class:`MediaError`; a file shorter
  than that raises it from :func:`iter_fused`/:func:`fused_file`;
* a trailing partial window is yielded when it holds at least ``MIN_SECONDS`` of audio not
  covered by an earlier window;
* a digitally silent window (peak below 1e-4, -80 dBFS) gives a defined *silence vector*:
  every level at ``DB_FLOOR`` (-100 dB), ``pause_ratio`` 1 for speech, everything else 0.
  Silence is common inside long recordings, so it never raises.

Speed (measured on the 2-core development machine while another job shared it, so +-30 %):
``python -m media.fused FILES...`` (decode + extract whole files, numba warmed up) gives
music 70x real time (wesnoth_loyalists.ogg 180 s + wesnoth_revelation.ogg 78 s: 257 s of
audio in 3.7 s) and speech 52x (8 speech files of 2-10 s, 62 s in 1.2 s; short files pay a
per-file open and a partial window). Extraction alone on 10 s windows of an in-memory signal:
~0.08 s per window for music (~120x), ~0.11 s with the prosody block (~90x); decoding Ogg
and resampling to 16 kHz runs at ~200x. A 1-hour spoken recording therefore takes ~40-70 s
on one core. What dominates a speech window: yin (~25 %), the beat tracker + onset
autocorrelation (~20 %), the STFT and the spectral statistics (~35 %), decoding (~10-15 %).
Windows are independent, so a process pool scales this with cores.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator

import librosa
import numpy as np
from scipy.signal import find_peaks

from media.features import mel_filters, mel_frequencies
from media.io import MediaError, iter_audio_chunks, probe

__all__ = [
    "FEATURE_INDEX",
    "FEATURE_NAMES",
    "HOP_S",
    "MIN_SECONDS",
    "SR",
    "WINDOW_S",
    "D",
    "fused_file",
    "fused_window",
    "iter_fused",
    "summary",
]

SR = 16000
WINDOW_S = 10.0
HOP_S = 10.0
MIN_SECONDS = 1.0
N_FFT = 1024
HOP = 256
N_MELS = 64
N_MFCC = 13
DB_FLOOR = -100.0
SILENCE_PEAK = 1e-4
F0_MIN, F0_MAX = 65.0, 500.0
YIN_FRAME = 512  # 32 ms: its half (256) exceeds the longest period, SR / F0_MIN = 246
F0_REF = 55.0  # semitone reference for f0_median_st
PAUSE_BELOW_P95_DB = 25.0
PAUSE_ABS_DB = -60.0
MIN_PAUSE_S = 0.15
MIN_VOICED_FRAMES = 3  # 48 ms of continuous f0 (5 cut angry speech's fast pitch moves)
MIN_ONSET_DB = 1.0  # onset envelope (mean dB rise over mel bands) below this: no rhythm
ONSET_DELTA_DB = 2.0  # an onset rises this much above the local mean of the envelope
ACTIVE_BELOW_P95_DB = 40.0  # spectral statistics use frames within 40 dB of the loud ones

_PITCH_CLASSES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
_LEVEL = ["rms_db_mean", "rms_db_std", "rms_db_range", "loudness_db"]
_ZCR = ["zcr_mean", "zcr_std"]
_SPECTRAL = ["centroid_mean_hz", "centroid_std_hz", "rolloff_mean_hz", "rolloff_std_hz",
             "bandwidth_mean_hz", "flatness_mean", "flatness_std"]
_CONTRAST = [f"contrast{i}_mean" for i in range(7)]
_MFCC = [f"mfcc{i}_mean" for i in range(N_MFCC)] + [f"mfcc{i}_std" for i in range(N_MFCC)]
_CHROMA = [f"chroma_{p}" for p in _PITCH_CLASSES]
_RHYTHM = ["tempo_bpm", "beat_strength", "pulse_clarity", "onset_rate_hz"]
_PROSODY = ["f0_median_st", "f0_range_st", "f0_std_st", "voiced_ratio", "speaking_rate_hz",
            "pause_ratio"]
FEATURE_NAMES: list[str] = (_LEVEL + _ZCR + _SPECTRAL + _CONTRAST + _MFCC + _CHROMA + _RHYTHM
                            + _PROSODY)
D = len(FEATURE_NAMES)
FEATURE_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}  # name -> column


# ----------------------------------------------------------------------------- helpers


def _db(power: np.ndarray) -> np.ndarray:
    return np.maximum(10.0 * np.log10(np.maximum(power, 1e-10)), DB_FLOOR)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) index pairs of the runs of True in a 1-D boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2], edges[1::2], strict=True))


def _pause_mask(frame_db: np.ndarray) -> np.ndarray:
    """Frames in pauses: below max(p95 - 25 dB, -60 dBFS), in runs of >= MIN_PAUSE_S."""
    threshold = max(float(np.percentile(frame_db, 95)) - PAUSE_BELOW_P95_DB, PAUSE_ABS_DB)
    quiet = frame_db < threshold
    min_frames = math.ceil(MIN_PAUSE_S * SR / HOP)
    mask = np.zeros_like(quiet)
    for start, stop in _runs(quiet):
        if stop - start >= min_frames:
            mask[start:stop] = True
    return mask


def _check(y: np.ndarray, sr: int) -> np.ndarray:
    if sr != SR:
        raise MediaError(f"fused features expect {SR} Hz audio, got {sr} Hz; "
                         f"read the file with sr={SR}")
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise MediaError(f"fused features expect mono (1-D) audio, got shape {y.shape}")
    if len(y) < MIN_SECONDS * SR:
        raise MediaError(f"audio too short for fused features: {len(y) / SR:.2f} s "
                         f"(at least {MIN_SECONDS:g} s needed)")
    if not np.all(np.isfinite(y)):
        raise MediaError("audio contains NaN or infinite samples")
    return y


def _silence_vector(speech: bool) -> np.ndarray:
    vec = np.zeros(D, np.float32)
    for name in ("rms_db_mean", "loudness_db"):
        vec[FEATURE_INDEX[name]] = DB_FLOOR
    if speech:
        vec[FEATURE_INDEX["pause_ratio"]] = 1.0
    return vec


# ----------------------------------------------------------------------------- blocks


def _rhythm(onset_env: np.ndarray) -> list[float]:
    fps = SR / HOP
    if float(onset_env.max()) < MIN_ONSET_DB:  # steady sound: no onsets, no beat
        return [0.0, 0.0, 0.0, 0.0]
    # one global autocorrelation of the onset envelope gives both tempo and pulse clarity
    # (librosa.feature.tempo's frame-wise tempogram costs ~4x more for the same answer on a
    # 10 s window); the tempo pick uses librosa's log-normal prior (120 BPM, 1 octave).
    env = onset_env - onset_env.mean()
    ac = librosa.autocorrelate(env)
    lo, hi = math.floor(fps * 60 / 240), min(math.ceil(fps * 60 / 40), len(ac) - 2)
    if ac[0] <= 0 or hi <= lo:
        return [0.0, 0.0, 0.0, 0.0]
    lags = np.arange(lo, hi + 1)
    norm = ac[lags] / ac[0]
    prior = np.exp(-0.5 * np.log2(60 * fps / lags / 120.0) ** 2)
    best = int(lags[np.argmax(np.maximum(norm, 0) * prior)])
    a, b, c = ac[best - 1], ac[best], ac[best + 1]  # parabolic refinement of the lag
    shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) < 0 else 0.0
    tempo = float(60 * fps / (best + float(np.clip(shift, -0.5, 0.5))))
    pulse = float(norm.max())
    mean_env = float(onset_env.mean())
    _, beats = librosa.beat.beat_track(onset_envelope=onset_env, sr=SR, hop_length=HOP,
                                       bpm=tempo)
    beat_strength = (float(onset_env[beats].mean()) / mean_env
                     if len(beats) and mean_env > 0 else 0.0)
    onsets = librosa.onset.onset_detect(onset_envelope=onset_env, sr=SR, hop_length=HOP,
                                        normalize=False, delta=ONSET_DELTA_DB)
    return [tempo, beat_strength, max(pulse, 0.0), len(onsets) / (len(onset_env) / fps)]


def _prosody(y: np.ndarray, frame_db: np.ndarray, band_db: np.ndarray) -> list[float]:
    n = len(frame_db)
    pause = _pause_mask(frame_db)
    f0 = librosa.yin(y, fmin=F0_MIN, fmax=F0_MAX, sr=SR, frame_length=YIN_FRAME,
                    hop_length=HOP)[:n]
    st = 12.0 * np.log2(f0 / F0_REF)
    jump = np.abs(np.diff(st))
    smooth = np.ones(n, bool)
    smooth[1:] &= jump < 1.0
    smooth[:-1] &= jump < 1.0
    loud = frame_db > float(np.percentile(frame_db, 95)) - 20.0
    inside = (f0 > F0_MIN * 1.03) & (f0 < F0_MAX * 0.97)
    voiced = smooth & loud & inside & ~pause
    for start, stop in _runs(voiced):
        if stop - start < MIN_VOICED_FRAMES:
            voiced[start:stop] = False
    if voiced.sum() >= 3:
        v = st[voiced]
        f0_stats = [float(np.median(v)), float(np.percentile(v, 95) - np.percentile(v, 5)),
                    float(v.std())]
    else:
        f0_stats = [0.0, 0.0, 0.0]
    # syllable nuclei: prominent peaks of the smoothed 300-3000 Hz energy outside pauses
    env = np.convolve(band_db, np.ones(5) / 5, mode="same")
    peaks, _ = find_peaks(env, prominence=3.0, distance=max(1, round(0.1 * SR / HOP)))
    peaks = peaks[~pause[peaks]]
    speaking_s = (~pause).sum() * HOP / SR
    rate = len(peaks) / speaking_s if speaking_s > 0 else 0.0
    return f0_stats + [float(voiced.mean()), rate, float(pause.mean())]


# ----------------------------------------------------------------------------- API


def fused_window(y: np.ndarray, sr: int, *, speech: bool) -> np.ndarray:
    """The fused feature vector (float32, shape ``(D,)``) of one window of mono audio.

    ``sr`` must be ``SR``; the window should be ``WINDOW_S`` long (any length >= ``MIN_SECONDS``
    works, but rhythm features need several seconds). ``speech`` selects whether the prosody
    block is computed (True) or left at 0.0 (music). See the module docstring for the layout,
    the silence vector and the errors.
    """
    y = _check(y, sr)
    if float(np.abs(y).max()) < SILENCE_PEAK:
        return _silence_vector(speech)

    spec = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP, center=True))
    power = spec ** 2
    n = power.shape[1]
    freqs = librosa.fft_frequencies(sr=SR, n_fft=N_FFT)

    frame_power = librosa.feature.rms(S=spec, frame_length=N_FFT)[0] ** 2
    frame_db = _db(frame_power)
    level = [float(frame_db.mean()), float(frame_db.std()),
             float(np.percentile(frame_db, 95) - np.percentile(frame_db, 10)),
             float(_db(np.mean(y.astype(np.float64) ** 2)))]

    # spectral statistics over the active frames only: silent frames would count as "flat"
    active = frame_db > max(float(np.percentile(frame_db, 95)) - ACTIVE_BELOW_P95_DB,
                            DB_FLOOR + 20.0)
    if not active.any():
        active[:] = True
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=N_FFT, hop_length=HOP)[0][:n]
    zcr = zcr[active[:len(zcr)]]
    act = spec[:, active]
    centroid = librosa.feature.spectral_centroid(S=act, freq=freqs)[0]
    rolloff = librosa.feature.spectral_rolloff(S=act, freq=freqs, roll_percent=0.85)[0]
    bandwidth = librosa.feature.spectral_bandwidth(S=act, freq=freqs)[0]
    flatness = librosa.feature.spectral_flatness(S=act)[0]
    contrast = librosa.feature.spectral_contrast(S=act, sr=SR, n_fft=N_FFT, fmin=100.0,
                                                 n_bands=6)
    mel = mel_filters(SR, N_FFT, N_MELS, 30.0, SR / 2) @ power
    mel_db = _db(mel)
    mfcc = librosa.feature.mfcc(S=mel_db[:, active], n_mfcc=N_MFCC)
    chroma = librosa.feature.chroma_stft(S=power[:, active], sr=SR, n_fft=N_FFT,
                                         tuning=0.0)  # tuning estimation doubles its cost
    onset_env = librosa.onset.onset_strength(S=mel_db, sr=SR, hop_length=HOP)

    parts = [level, [zcr.mean(), zcr.std()],
             [centroid.mean(), centroid.std(), rolloff.mean(), rolloff.std(), bandwidth.mean(),
              flatness.mean(), flatness.std()],
             contrast.mean(axis=1), mfcc.mean(axis=1), mfcc.std(axis=1), chroma.mean(axis=1),
             _rhythm(onset_env)]
    if speech:
        band = _mel_band_power(mel)
        parts.append(_prosody(y, frame_db, _db(band)))
    else:
        parts.append(np.zeros(len(_PROSODY)))
    vec = np.concatenate([np.asarray(p, np.float64).ravel() for p in parts])
    return np.nan_to_num(vec, nan=0.0, posinf=0.0, neginf=DB_FLOOR).astype(np.float32)


def _mel_band_power(mel: np.ndarray) -> np.ndarray:
    """The power of the mel bands centred within 300-3000 Hz (speech), per frame."""
    centres = mel_frequencies(N_MELS + 2, 30.0, SR / 2)[1:-1]
    return mel[(centres >= 300.0) & (centres <= 3000.0)].sum(axis=0)


def iter_fused(path: str | os.PathLike, *, speech: bool, window_s: float = WINDOW_S,
               hop_s: float = HOP_S, max_seconds: float | None = None,
               tap=None) -> Iterator[tuple[float, np.ndarray]]:
    """Stream ``(start_s, vector)`` for the windows of ``path`` (decoded at ``SR``, mono).

    Windows start at ``0, hop_s, 2 hop_s, ...``; each is the same vector that
    :func:`fused_window` gives for that slice of :func:`media.io.read_audio`. Memory holds at
    most ``window_s + hop_s`` seconds of audio. ``max_seconds`` stops reading there (windows
    end by it). ``tap(chunk)``, when given, sees every decoded chunk (``hop_s`` seconds at ``SR``,
    float32, in order) before its windows are computed: a second analysis in the same pass. Raises :class:`MediaError` for unreadable files and for files (or
    ``max_seconds``) shorter than ``MIN_SECONDS``.
    """
    if not 0 < hop_s <= window_s:
        raise MediaError(f"need 0 < hop_s <= window_s, got hop_s={hop_s}, window_s={window_s}")
    if window_s < MIN_SECONDS:
        raise MediaError(f"window_s must be at least {MIN_SECONDS:g} s, got {window_s}")
    if max_seconds is not None and max_seconds < MIN_SECONDS:
        raise MediaError(f"max_seconds must be at least {MIN_SECONDS:g} s, got {max_seconds}")
    win, hop = round(window_s * SR), round(hop_s * SR)
    limit = None if max_seconds is None else round(max_seconds * SR)
    chunks = iter_audio_chunks(path, sr=SR, chunk_s=hop_s)
    return _windows(chunks, win, hop, limit, speech, os.fspath(path), tap)


def _windows(chunks: Iterator[np.ndarray], win: int, hop: int, limit: int | None,
             speech: bool, name: str, tap=None) -> Iterator[tuple[float, np.ndarray]]:
    buf = np.zeros(0, np.float32)
    start = 0  # sample index of buf[0]
    read = 0
    covered = 0  # samples covered by the windows yielded so far
    for chunk in chunks:
        if limit is not None:
            chunk = chunk[:max(0, limit - read)]
        read += len(chunk)
        if tap is not None:
            tap(chunk)
        buf = np.concatenate([buf, chunk])
        while len(buf) >= win:
            yield start / SR, fused_window(buf[:win], SR, speech=speech)
            covered = start + win
            buf, start = buf[hop:], start + hop
        if limit is not None and read >= limit:
            break
    if hasattr(chunks, "close"):
        chunks.close()
    new = start + len(buf) - covered
    if len(buf) and new >= MIN_SECONDS * SR:
        yield start / SR, fused_window(buf, SR, speech=speech)
    elif covered == 0:
        raise MediaError(f"'{os.path.basename(name)}' is too short for fused features: "
                         f"{read / SR:.2f} s of audio (at least {MIN_SECONDS:g} s needed)")


def fused_file(path: str | os.PathLike, *, speech: bool, window_s: float = WINDOW_S,
               hop_s: float = HOP_S, max_seconds: float | None = None) -> np.ndarray:
    """All window vectors of ``path``: float32 array ``(n_windows, D)`` (see :func:`iter_fused`)."""
    rows = [vec for _, vec in iter_fused(path, speech=speech, window_s=window_s, hop_s=hop_s,
                                         max_seconds=max_seconds)]
    return np.stack(rows)


def summary(vectors: np.ndarray) -> np.ndarray:
    """One vector for a whole clip: the mean over its windows (float32, shape ``(D,)``)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors[None]
    if vectors.ndim != 2 or vectors.shape[1] != D or len(vectors) == 0:
        raise MediaError(f"summary expects an (n_windows >= 1, {D}) array, got {vectors.shape}")
    return vectors.mean(axis=0)


def _benchmark(paths: list[str]) -> None:  # pragma: no cover - see "Speed" above
    """Print seconds of audio per second of compute (decoding included) for each file.

    A file counts as speech when its path contains "speech". Warm up librosa's numba code
    first so that one-off compilation is not measured.
    """
    import time

    fused_window(np.random.default_rng(0).normal(0, 0.1, 3 * SR).astype(np.float32), SR,
                 speech=True)
    totals: dict[bool, list[float]] = {True: [0.0, 0.0], False: [0.0, 0.0]}
    for p in paths:
        kind = "speech" in p
        t = time.perf_counter()
        n = len(fused_file(p, speech=kind))
        dt = time.perf_counter() - t
        dur = probe(p).duration
        totals[kind][0] += dur
        totals[kind][1] += dt
        print(f"{os.path.basename(p)} speech={kind} {dur:.1f} s, {n} windows, {dt:.2f} s "
              f"-> {dur / dt:.0f}x real time")
    for kind, (dur, dt) in totals.items():
        if dt:
            print(f"{'speech' if kind else 'music'}: {dur:.0f} s of audio in {dt:.1f} s "
                  f"= {dur / dt:.0f}x real time")


if __name__ == "__main__":  # pragma: no cover
    import sys

    _benchmark(sys.argv[1:])
