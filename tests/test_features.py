"""The shared audio-feature convention and the video-frame <-> feature-frame mapping."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from media.features import (
    FMAX,
    FMIN,
    HOP_LENGTH,
    MEL_FPS,
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
    SYNC_MEL_FRAMES,
    WIN_LENGTH,
    frame_to_mel,
    log_mel,
    loudness_envelope,
    mel_filters,
    mel_frequencies,
    mel_to_frame,
    mel_windows,
    mfcc,
)
from media.io import read_audio

ROOT = Path(__file__).resolve().parents[1]


def test_25fps_five_frames_are_sixteen_mel_frames():
    assert frame_to_mel(5, 25) - frame_to_mel(0, 25) == SYNC_MEL_FRAMES
    assert frame_to_mel(np.arange(0, 50, 5), 25).tolist() == list(range(0, 160, 16))


@pytest.mark.parametrize("fps", [24, 25, 30000 / 1001, 30, 50, 60])
def test_mapping_round_trips_at_any_frame_rate(fps):
    frames = np.arange(0, 2000)
    mel = frame_to_mel(frames, fps)
    # the feature frame of a video frame is its start time in feature frames, to within half a frame
    assert np.all(np.abs(mel / MEL_FPS - frames / fps) <= 0.5 / MEL_FPS + 1e-9)
    # feature frames map back into the video frame shown at that time
    m = np.arange(0, 5000)
    f = mel_to_frame(m, fps)
    assert np.all((f / fps <= m / MEL_FPS + 1e-9) & (m / MEL_FPS < (f + 1) / fps + 1e-9))


def test_log_mel_shape_and_alignment():
    sr = SAMPLE_RATE
    audio = np.zeros(sr * 2, np.float32)
    onset = int(1.25 * sr)
    audio[onset:onset + 1600] = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(1600) / sr)
    mel = log_mel(audio, sr)
    assert mel.shape == (N_MELS, 1 + len(audio) // HOP_LENGTH)
    energy = mel.max(axis=0)
    first_loud = int(np.argmax(energy > energy.max() - 20))
    # centred frames: the burst shows up within half a window (400 samples = 2 frames) of its onset
    assert abs(first_loud - onset / HOP_LENGTH) <= 2
    assert mfcc(audio, sr).shape == (13, mel.shape[1])
    assert loudness_envelope(audio, sr).shape == (mel.shape[1],)
    with pytest.raises(ValueError, match="16000"):
        log_mel(audio, 44100)


def test_speech_is_louder_than_its_pauses(media):
    audio = read_audio(media / "speech" / sorted(p.name for p in (media / "speech").glob("*.wav"))[0], sr=SAMPLE_RATE)
    env = loudness_envelope(audio)
    assert np.percentile(env, 90) - np.percentile(env, 10) > 20  # real speech has >20 dB dynamics


def test_mel_windows_pad_outside_with_fill():
    mel = np.arange(N_MELS * 40, dtype=np.float32).reshape(N_MELS, 40)
    w = mel_windows(mel, np.array([0, 30, -5, 100]), 16, fill=-4.0)
    assert w.shape == (4, N_MELS, 16)
    assert np.array_equal(w[0], mel[:, :16])
    assert np.array_equal(w[1][:, :10], mel[:, 30:40]) and np.all(w[1][:, 10:] == -4.0)
    assert np.all(w[2][:, :5] == -4.0) and np.array_equal(w[2][:, 5:], mel[:, :11])
    assert np.all(w[3] == -4.0)


def _librosa_features(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log-mel, MFCC, loudness in dB) as librosa computes them with this project's settings."""
    import librosa

    spec = librosa.stft(audio, n_fft=N_FFT, hop_length=HOP_LENGTH, center=True)
    basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX)
    mel = np.maximum(10 * np.log10(np.maximum(basis @ (np.abs(spec) ** 2).astype(np.float32), 1e-10)), -100.0)
    rms = librosa.feature.rms(y=audio, frame_length=WIN_LENGTH, hop_length=HOP_LENGTH, center=True)[0]
    return mel.astype(np.float32), librosa.feature.mfcc(S=mel.astype(np.float32), n_mfcc=13), \
        20 * np.log10(np.maximum(rms, 1e-5))


@pytest.mark.parametrize("n", [1, 399, 800, 801, 16000 + 123, 200 * 2500 + 7])  # 2501 frames: three FFT blocks
def test_features_are_librosas_at_any_length(n):
    audio = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    mel, cepstra, loudness = _librosa_features(audio)
    assert np.array_equal(log_mel(audio), mel)
    assert np.allclose(mfcc(audio), cepstra, rtol=1e-5, atol=1e-3)
    assert np.array_equal(loudness_envelope(audio), loudness.astype(np.float32))


@pytest.mark.media
def test_features_are_librosas_on_real_speech(media):
    audio = read_audio(media / "speech" / min(p.name for p in (media / "speech").glob("*.wav")), sr=SAMPLE_RATE)
    mel, cepstra, loudness = _librosa_features(audio)
    assert np.array_equal(log_mel(audio), mel)
    assert np.allclose(mfcc(audio), cepstra, rtol=1e-5, atol=1e-3)  # float32 rounding only
    assert np.array_equal(loudness_envelope(audio), loudness.astype(np.float32))


@pytest.mark.parametrize("sr, n_fft, n_mels, fmin, fmax", [(16000, 800, 80, 55.0, 7600.0), (16000, 2048, 40, 0.0, 8000.0),
                                                          (22050, 2048, 128, 0.0, None)])
def test_mel_filters_and_frequencies_are_librosas(sr, n_fft, n_mels, fmin, fmax):
    import librosa

    assert np.array_equal(mel_filters(sr, n_fft, n_mels, fmin, fmax),
                          librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax))
    top = sr / 2 if fmax is None else fmax
    assert np.array_equal(mel_frequencies(n_mels + 2, fmin, top), librosa.mel_frequencies(n_mels=n_mels + 2, fmin=fmin, fmax=top))


def test_speech_features_and_the_offset_search_import_neither_librosa_nor_scipy_signal():
    """Their imports took over 1.5 s of every command's first run (docs/performance.md, "First runs")."""
    code = """
import sys
import numpy as np
from media.features import is_silent, log_mel, mfcc
from models.syncnet import offset_search
audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
mfcc(audio), log_mel(audio), is_silent(audio)
v = np.random.default_rng(1).standard_normal((40, 8))
offset_search(v, np.concatenate([np.zeros((15, 8)), v, np.zeros((15, 8))]), np.ones(40, bool))
print(sorted(m for m in sys.modules if m.split(".")[0] in ("librosa", "numba") or m.startswith("scipy.signal")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
