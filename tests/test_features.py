"""The shared audio-feature convention and the video-frame <-> feature-frame mapping."""
import numpy as np
import pytest

from media.features import (HOP_LENGTH, MEL_FPS, N_MELS, SAMPLE_RATE, SYNC_MEL_FRAMES, frame_to_mel, log_mel,
                            loudness_envelope, mel_to_frame, mel_windows, mfcc)
from media.io import read_audio


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
