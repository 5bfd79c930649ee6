"""Audio features shared by every pipeline, and the video-frame <-> feature-frame mapping.

One convention, used everywhere in the project:

* audio is mono float32 at ``SAMPLE_RATE`` = 16 kHz;
* log-mel: 80 mel bins (55-7600 Hz), STFT window 800 samples (50 ms), hop 200 samples (12.5 ms),
  i.e. ``MEL_FPS`` = 80 feature frames per second, centred frames (frame ``m`` is centred on
  sample ``m * HOP``), values in dB (``10 * log10(power)``, floored at -100 dB);
* MFCC: 13 coefficients computed from that log-mel.

The features are librosa's (``stft`` with a periodic Hann window and zero padding, ``filters.mel`` with Slaney's
scale and norm, ``feature.mfcc``, ``feature.rms``) computed with NumPy alone: importing librosa's feature and
filter modules takes over a second (SciPy's signal package, Numba), which every command that reads speech paid
on its first call. ``tests/test_features.py`` checks them against librosa.

A video frame ``i`` at ``fps`` starts at ``i / fps`` seconds, i.e. at feature frame
``i * MEL_FPS / fps``. At 25 fps five video frames (0.2 s) span exactly 16 feature frames, the
audio window of the sync discriminator (``SYNC_MEL_FRAMES``).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 800
WIN_LENGTH = 800
HOP_LENGTH = 200
N_MELS = 80
FMIN = 55.0
FMAX = 7600.0
MEL_FPS = SAMPLE_RATE / HOP_LENGTH  # 80 feature frames per second
N_MFCC = 13
SYNC_MEL_FRAMES = 16  # 0.2 s of audio features
SYNC_VIDEO_FRAMES = 5  # the sync discriminator's picture window: 5 frames ...
SYNC_VIDEO_FPS = 25.0  # ... on a 25 fps grid whatever the source frame rate (0.2 s, as the audio's)
DB_FLOOR = -100.0


# Slaney's mel scale: 200/3 Hz a mel up to 1 kHz, then a factor of 6.4 every 27 mels
_MEL_SPACING, _MEL_LOG_HZ, _MEL_LOG_STEP = 200.0 / 3, 1000.0, np.log(6.4) / 27.0


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's ``hz_to_mel`` with ``htk=False``): linear to 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    log_part = _MEL_LOG_HZ / _MEL_SPACING + np.log(np.maximum(hz, 1e-10) / _MEL_LOG_HZ) / _MEL_LOG_STEP
    return np.where(hz >= _MEL_LOG_HZ, log_part, hz / _MEL_SPACING)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    log_mel0 = _MEL_LOG_HZ / _MEL_SPACING
    return np.where(mel >= log_mel0, _MEL_LOG_HZ * np.exp(_MEL_LOG_STEP * (mel - log_mel0)), _MEL_SPACING * mel)


def mel_frequencies(n: int, fmin: float, fmax: float) -> np.ndarray:
    """``n`` frequencies (Hz) evenly spaced on Slaney's mel scale from ``fmin`` to ``fmax``, float64:
    ``librosa.mel_frequencies(n_mels=n, fmin=fmin, fmax=fmax)``; with n_mels + 2 of them, :func:`mel_filters`'
    band edges (each filter's centre is the one between its two edges)."""
    return _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n))


@lru_cache(maxsize=8)
def mel_filters(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """(n_mels, 1 + n_fft // 2) float32 triangular filters on Slaney's mel scale with Slaney's area norm:
    ``librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)``. Read-only (cached)."""
    bins = np.fft.rfftfreq(n_fft, 1.0 / sr)
    edges = mel_frequencies(n_mels + 2, fmin, sr / 2 if fmax is None else fmax)
    widths = np.diff(edges)
    ramps = edges[:, None] - bins[None, :]
    weights = np.zeros((n_mels, len(bins)), np.float32)
    for i in range(n_mels):
        weights[i] = np.maximum(0.0, np.minimum(-ramps[i] / widths[i], ramps[i + 2] / widths[i + 1]))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    weights.flags.writeable = False
    return weights


def _frames(audio: np.ndarray, length: int, hop: int, center: bool) -> np.ndarray:
    """(T, length) frames of ``audio`` every ``hop`` samples (a view). Centred: padded with length // 2 zeros on
    each side, frame ``m`` centred on sample ``m * hop``, ``T = 1 + len // hop``; else ``T = 1 + (len -
    length) // hop`` (none when shorter than one frame)."""
    if center:
        audio = np.pad(audio, length // 2)
    elif len(audio) < length:
        return np.zeros((0, length), audio.dtype)
    return np.lib.stride_tricks.sliding_window_view(audio, length)[::hop]


def stft_power(audio: np.ndarray, n_fft: int, hop_length: int, win_length: int | None = None,
               center: bool = True) -> np.ndarray:
    """(1 + n_fft // 2, T) float32 power spectrogram ``|STFT|^2``, as ``np.abs(librosa.stft(...)) ** 2``: a
    periodic Hann window of ``win_length`` (default ``n_fft``) centred in each ``n_fft`` frame, zero padding
    when ``center``; the FFT in float64, kept as complex64 as librosa does."""
    win_length = n_fft if win_length is None else win_length
    window = np.zeros(n_fft)
    left = (n_fft - win_length) // 2
    window[left:left + win_length] = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win_length) / win_length)
    frames = _frames(np.asarray(audio, np.float32), n_fft, hop_length, center)
    power = np.empty((n_fft // 2 + 1, len(frames)), np.float32)
    for start in range(0, len(frames), _STFT_BLOCK):  # in blocks: the float64 FFT of 120 s at once is 120 MB
        spec = np.fft.rfft(frames[start:start + _STFT_BLOCK] * window, axis=1).astype(np.complex64)
        power[:, start:start + len(spec)] = (np.abs(spec) ** 2).T
    return power


_STFT_BLOCK = 1024  # frames per FFT call in stft_power


@lru_cache(maxsize=4)
def _dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    k, n = np.arange(n_out)[:, None], np.arange(n_in)[None, :]
    basis = np.sqrt(2.0 / n_in) * np.cos(np.pi * k * (2 * n + 1) / (2 * n_in))
    basis[0] /= np.sqrt(2.0)
    basis.flags.writeable = False
    return basis


def cepstrum(db: np.ndarray, n: int) -> np.ndarray:
    """(n, T) float32: the first ``n`` coefficients of the orthonormal DCT-II of ``db`` (bins x T) over its bins,
    the MFCC of a log-mel (``librosa.feature.mfcc(S=db, n_mfcc=n)``, to float32 rounding)."""
    return (_dct_matrix(n, db.shape[0]) @ db).astype(np.float32)


def log_mel(audio: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Log-mel spectrogram (N_MELS x T) in dB of mono ``audio`` sampled at ``sr`` (must be 16 kHz).

    ``T = 1 + len(audio) // HOP_LENGTH`` (centred frames).
    """
    if sr != SAMPLE_RATE:
        raise ValueError(f"log_mel expects {SAMPLE_RATE} Hz audio, got {sr} Hz; resample when reading")
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError("log_mel expects mono audio (1-D array)")
    mel = mel_filters(sr, N_FFT, N_MELS, FMIN, FMAX) @ stft_power(audio, N_FFT, HOP_LENGTH, WIN_LENGTH)
    return np.maximum(10.0 * np.log10(np.maximum(mel, 1e-10)), DB_FLOOR).astype(np.float32)


def mfcc(audio: np.ndarray, sr: int = SAMPLE_RATE, n_mfcc: int = N_MFCC) -> np.ndarray:
    """MFCC (n_mfcc x T) from the shared log-mel, frame-aligned with :func:`log_mel`."""
    return cepstrum(log_mel(audio, sr), n_mfcc)


def loudness_envelope(audio: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """RMS loudness in dB per feature frame, frame-aligned with :func:`log_mel` (``librosa.feature.rms`` of
    centred WIN_LENGTH frames)."""
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1:
        raise ValueError("loudness_envelope expects mono audio (1-D array)")
    rms = np.sqrt(np.mean(_frames(audio, WIN_LENGTH, HOP_LENGTH, center=True) ** 2, axis=1))
    return (20.0 * np.log10(np.maximum(rms, 1e-5))).astype(np.float32)


SILENCE_DBFS = -50.0  # a track whose loud frames (95th percentile) stay below this is silent


def is_silent(audio: np.ndarray, sr: int = SAMPLE_RATE) -> bool:
    """True when even the loud frames of ``audio`` stay below SILENCE_DBFS."""
    return len(audio) == 0 or float(np.percentile(loudness_envelope(audio, sr), 95)) < SILENCE_DBFS


def loudness_per_frame(audio: np.ndarray, n_frames: int, fps: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """(n_frames,) linear RMS loudness averaged over each video frame's interval (frames past the audio: its last value)."""
    env = 10.0 ** (loudness_envelope(audio, sr).astype(np.float64) / 20.0)
    bounds = np.clip(frame_to_mel(np.arange(n_frames + 1), fps), 0, len(env) - 1)
    return np.array([env[a:b + 1].mean() for a, b in zip(bounds[:-1], bounds[1:])])


def frame_to_mel(frame_index, fps: float):
    """Feature frame at which video frame ``frame_index`` starts (rounded; works on arrays)."""
    idx = np.rint(np.asarray(frame_index, dtype=np.float64) * MEL_FPS / float(fps)).astype(np.int64)
    return int(idx) if idx.ndim == 0 else idx


def mel_to_frame(mel_index, fps: float):
    """Video frame shown at the time of feature frame ``mel_index`` (floor; works on arrays)."""
    idx = np.floor(np.asarray(mel_index, dtype=np.float64) * float(fps) / MEL_FPS + 1e-9).astype(np.int64)
    return int(idx) if idx.ndim == 0 else idx


def mel_windows(mel: np.ndarray, starts: np.ndarray, length: int = SYNC_MEL_FRAMES,
                fill: float = DB_FLOOR) -> np.ndarray:
    """Stack ``mel[:, s:s+length]`` for each start ``s`` -> (len(starts), N_MELS, length).

    Windows reaching outside the spectrogram are filled with ``fill`` (silence: ``DB_FLOOR`` for
    :func:`log_mel` output; pass the floor of any normalisation applied since).
    """
    starts = np.asarray(starts, dtype=np.int64)
    n_mels, t = mel.shape
    padded = np.full((n_mels, t + 2 * length), fill, dtype=np.float32)
    padded[:, length:length + t] = mel
    shifted = np.clip(starts + length, 0, t + length)  # fully outside -> all-floor window
    idx = shifted[:, None] + np.arange(length)[None, :]
    return np.transpose(padded[:, idx], (1, 0, 2))
