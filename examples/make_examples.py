"""Make the tabs' example files from material the project may ship.

The picture is the public-domain NASA portrait bundled with scikit-image (``skimage.data.astronaut``) and
the speech is synthesised by espeak-ng. For the Lip sync tab:

* ``lipsync_astronaut.jpg`` and ``lipsync_speech.wav`` (a sentence of speech).

For the Sync check tab, the Lip sync pipeline's own output: the portrait speaking a longer text with the
bundled model, so the examples show a real-looking talking face:

* ``sync_astronaut_in_sync.mp4``: audio and mouth aligned;
* ``sync_astronaut_audio_early.mp4``: the same picture with the audio 8 frames (320 ms) early.

For the Music to face tab, music synthesised here (no recording is copied): six calm seconds of a soft
sine chord, then six intense ones of kick drum, noise snare, a sawtooth bass and a bright lead, loud:

* ``music_face_calm_to_intense.wav`` (the portrait above is its photo).

For the Soundtrack tab, a hum synthesised here: the public-domain "Ode to Joy" melody as a voice-like tone
(harmonics, vibrato, breath noise), sung 30 cents sharp, drifting, and a little uneven in time, as people hum
(its video is ``sync_astronaut_in_sync.mp4``):

* ``soundtrack_hum_ode_to_joy.wav``.

    pip install scikit-image && apt-get install espeak-ng
    python -m examples.make_examples
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from media.features import SAMPLE_RATE
from media.io import mux_audio, read_audio, write_audio

HERE = Path(__file__).parent
FPS = 25
LIPSYNC_TEXT = "Good morning. This portrait never said these words, but now her lips follow them."
TEXT = ("Hello, and welcome to AV Studio. This short clip shows how the sync check works. "
        "Upload a video of someone speaking, and it tells you whether the sound matches the lips.")


def speech(text: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True)
        return read_audio(wav, sr=SAMPLE_RATE)


def calm_to_intense(sr: int = SAMPLE_RATE, seconds: float = 6.0, seed: int = 0) -> np.ndarray:
    """Calm (a quiet, slowly swelling A-major sine chord) followed by intense (120 bpm drums, bass, lead)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    calm = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) / 3
    calm *= 0.05 * (0.6 + 0.4 * np.sin(2 * np.pi * 0.25 * t - np.pi / 2))
    beat = 0.5  # seconds per beat (120 bpm)
    phase = t % beat
    kick = np.sin(2 * np.pi * (50 + 100 * np.exp(-phase * 30)) * phase) * np.exp(-phase * 12)
    snare_phase = (t + beat) % (2 * beat)
    snare = rng.standard_normal(len(t)) * np.exp(-snare_phase * 25) * (snare_phase < 0.2)
    notes = np.array([110.0, 110.0, 130.8, 146.8])[(t // (2 * beat)).astype(int) % 4]
    bass = 2 * ((t * notes) % 1.0) - 1
    lead_f = np.array([880.0, 987.8, 1046.5, 1174.7, 1318.5, 1174.7, 1046.5, 987.8])[(t // (beat / 2)).astype(int) % 8]
    lead = np.sign(np.sin(2 * np.pi * lead_f * t)) * np.exp(-(t % (beat / 2)) * 6)
    intense = 0.5 * kick + 0.25 * snare + 0.2 * bass + 0.12 * lead
    intense *= 0.9 / np.abs(intense).max()
    return np.concatenate([calm, intense]).astype(np.float32)


ODE_TO_JOY = [(64, 1), (64, 1), (65, 1), (67, 1), (67, 1), (65, 1), (64, 1), (62, 1), (60, 1), (60, 1), (62, 1),
              (64, 1), (64, 1.5), (62, 0.5), (62, 2)]


def hummed(tune=ODE_TO_JOY, sr: int = SAMPLE_RATE, beat_s: float = 0.5, detune_cents: float = 30.0,
           drift_cents: float = 30.0, seed: int = 0) -> np.ndarray:
    """A hum of ``tune`` ((MIDI pitch, beats) pairs), twice: a voice-like tone with vibrato, sung sharp and
    drifting, each note a little early or late, with breath noise."""
    rng = np.random.default_rng(seed)
    notes = tune * 2
    total = sum(b for _, b in notes) * beat_s
    out, phase, clock = [], 0.0, 0.0
    for pitch, beats in notes:
        length = max(0.15, beats * beat_s + rng.normal(0, 0.03))
        t = np.arange(int(length * sr)) / sr
        cents = detune_cents + drift_cents * (clock + t) / total + 25 * np.sin(2 * np.pi * 5.5 * t)
        f = 440.0 * 2 ** ((pitch - 69 + cents / 100) / 12)
        ph = phase + 2 * np.pi * np.cumsum(f) / sr
        phase = ph[-1]
        env = np.clip(np.minimum(t / 0.03, (length - 0.05 - t) / 0.04), 0, 1)
        out.append(0.25 * env * (np.sin(ph) + 0.5 * np.sin(2 * ph) + 0.25 * np.sin(3 * ph)))
        clock += length
    y = np.concatenate(out)
    return (y + rng.normal(0, 0.002, len(y))).astype(np.float32)


def main() -> int:
    try:
        from skimage.data import astronaut
    except ImportError:
        print("error: pip install scikit-image (for its public-domain portrait)", file=sys.stderr)
        return 2
    from pipelines.lipsync import lipsync

    photo = HERE / "lipsync_astronaut.jpg"
    cv2.imwrite(str(photo), cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    write_audio(HERE / "lipsync_speech.wav", speech(LIPSYNC_TEXT), SAMPLE_RATE)
    print("wrote lipsync_astronaut.jpg and lipsync_speech.wav")
    audio = speech(TEXT)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        write_audio(wav, audio, SAMPLE_RATE)
        talking = lipsync(photo, wav, out_path=Path(tmp) / "talking.mp4")
        in_sync = HERE / "sync_astronaut_in_sync.mp4"
        mux_audio(talking.output_path, in_sync, audio, sr=SAMPLE_RATE)  # the speech as 16 kHz mono, like the early one
    mux_audio(in_sync, HERE / "sync_astronaut_audio_early.mp4", audio, sr=SAMPLE_RATE, delay_s=-8 / FPS)
    print(f"wrote {in_sync.name} and sync_astronaut_audio_early.mp4 ({talking.duration_s:.1f} s)")
    write_audio(HERE / "music_face_calm_to_intense.wav", calm_to_intense(), SAMPLE_RATE)
    print("wrote music_face_calm_to_intense.wav")
    write_audio(HERE / "soundtrack_hum_ode_to_joy.wav", hummed(), SAMPLE_RATE)
    print("wrote soundtrack_hum_ode_to_joy.wav")
    return 0


if __name__ == "__main__":
    sys.exit(main())
