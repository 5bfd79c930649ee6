"""Audio features shared by every pipeline, and the video-frame <-> feature-frame mapping.

One convention, used everywhere in the project:

* audio is mono float32 at ``SAMPLE_RATE`` = 16 kHz;
* log-mel: 80 mel bins (55-7600 Hz), STFT window 800 samples (50 ms), hop 200 samples (12.5 ms),
  i.e. ``MEL_FPS`` = 80 feature frames per second, centred frames (frame ``m`` is centred on
  sample ``m * HOP``), values in dB (``10 * log10(power)``, floored at -100 dB);
* MFCC: 13 coefficients computed from that log-mel.

A video frame ``i`` at ``fps`` starts at ``i / fps`` seconds, i.e. at feature frame
``i * MEL_FPS / fps``. At 25 fps five video frames (0.2 s) span exactly 16 feature frames, the
audio window of the sync discriminator (``SYNC_MEL_FRAMES``).
"""
from __future__ import annotations

from functools import lru_cache

import librosa
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


@lru_cache(maxsize=4)
def _mel_basis(sr: int) -> np.ndarray:
    return librosa.filters.mel(sr=sr, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX).astype(np.float32)


def log_mel(audio: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Log-mel spectrogram (N_MELS x T) in dB of mono ``audio`` sampled at ``sr`` (must be 16 kHz).

    ``T = 1 + len(audio) // HOP_LENGTH`` (centred frames).
    """
    if sr != SAMPLE_RATE:
        raise ValueError(f"log_mel expects {SAMPLE_RATE} Hz audio, got {sr} Hz; resample when reading")
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError("log_mel expects mono audio (1-D array)")
    spec = librosa.stft(audio, n_fft=N_FFT, hop_length=HOP_LENGTH, win_length=WIN_LENGTH, center=True)
    power = (np.abs(spec) ** 2).astype(np.float32)
    mel = _mel_basis(sr) @ power
    return np.maximum(10.0 * np.log10(np.maximum(mel, 1e-10)), DB_FLOOR).astype(np.float32)


def mfcc(audio: np.ndarray, sr: int = SAMPLE_RATE, n_mfcc: int = N_MFCC) -> np.ndarray:
    """MFCC (n_mfcc x T) from the shared log-mel, frame-aligned with :func:`log_mel`."""
    return librosa.feature.mfcc(S=log_mel(audio, sr), n_mfcc=n_mfcc).astype(np.float32)


def loudness_envelope(audio: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """RMS loudness in dB per feature frame, frame-aligned with :func:`log_mel`."""
    rms = librosa.feature.rms(y=np.asarray(audio, np.float32), frame_length=WIN_LENGTH, hop_length=HOP_LENGTH, center=True)[0]
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
