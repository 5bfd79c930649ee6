"""Make the Sync check tab's example videos from material the project may ship.

The picture is the public-domain NASA portrait bundled with scikit-image (``skimage.data.astronaut``),
the speech is synthesised by espeak-ng, and the mouth is animated by our own code: the jaw and
lower lip are pulled down by the speech loudness envelope (a smooth displacement field under the
mouth, found with the MediaPipe landmarks) and the opening is filled with a dark mouth cavity. The
mouth therefore moves exactly with the sound. Two files are written:

* ``sync_astronaut_in_sync.mp4``: audio and mouth aligned;
* ``sync_astronaut_audio_early.mp4``: the same picture with the audio 8 frames (320 ms) early.

For the Lip sync tab, the portrait itself and a second sentence of espeak-ng speech:

* ``lipsync_astronaut.jpg`` and ``lipsync_speech.wav``.

For the Music to face tab, music synthesised here (no recording is copied): six calm seconds of a soft
sine chord, then six intense ones of kick drum, noise snare, a sawtooth bass and a bright lead, loud:

* ``music_face_calm_to_intense.wav`` (the portrait above is its photo).

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

from media.face import face_in_image
from media.features import SAMPLE_RATE, frame_to_mel, loudness_envelope
from media.io import mux_audio, read_audio, write_audio, write_video

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


def mouth_openings(audio: np.ndarray, n_frames: int, lead_frames: float = 1.0) -> np.ndarray:
    """Per-frame opening in [0, 1] from the loudness envelope (40 dB range, lightly smoothed).

    Real lips move ahead of the sound they make (anticipatory coarticulation, some 40-100 ms);
    the mouth shows the loudness ``lead_frames`` frames later, the way a filmed speaker would.
    """
    env = loudness_envelope(audio)
    idx = np.clip(frame_to_mel(np.arange(n_frames) + 0.5 + lead_frames, FPS), 0, len(env) - 1)
    loud = env[idx]
    opening = np.clip((loud - (loud.max() - 40)) / 40, 0, 1) ** 1.5
    return np.convolve(np.pad(opening, 1, mode="edge"), [0.25, 0.5, 0.25], mode="valid")


def animate(photo: np.ndarray, lm: np.ndarray, openings: np.ndarray):
    """Frames of ``photo`` with the jaw dropped by ``openings`` (fractions of the maximum)."""
    h, w = photo.shape[:2]
    mouth_y = lm[[13, 14], 1].mean()
    mouth_x = lm[[61, 291], 0].mean()
    half_w = 1.6 * abs(lm[291, 0] - lm[61, 0]) / 2
    chin_y = lm[152, 1]
    max_open = 0.3 * abs(lm[291, 0] - lm[61, 0])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    lips_across = np.clip(1 - ((xx - mouth_x) / (0.45 * abs(lm[291, 0] - lm[61, 0]))) ** 2, 0, 1)
    # weight 1 on the lower lip and chin, fading out at the jaw line, just above the mouth and below the chin
    across = np.clip(1 - ((xx - mouth_x) / half_w) ** 2, 0, 1)
    down = np.clip((yy - (mouth_y - 2)) / 4, 0, 1) * np.clip((chin_y + 0.6 * (chin_y - mouth_y) - yy) / (0.9 * (chin_y - mouth_y)), 0, 1)
    weight = (across * down).astype(np.float32)
    for o in openings:
        dy = o * max_open
        frame = cv2.remap(photo, xx, (yy - dy * weight).astype(np.float32), cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
        # the opened gap between the lips (stretched from the lip line) darkens like a mouth cavity
        open_region = (yy >= mouth_y) * (yy < mouth_y + dy) * lips_across
        shade = 1 - 0.7 * min(1.0, dy / 4) * open_region
        yield (frame * shade[..., None]).astype(np.uint8)


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


def main() -> int:
    try:
        from skimage.data import astronaut
    except ImportError:
        print("error: pip install scikit-image (for its public-domain portrait)", file=sys.stderr)
        return 2
    photo = astronaut()
    lm = face_in_image(photo)
    if lm is None:
        print("error: no face found in the portrait", file=sys.stderr)
        return 2
    audio = speech(TEXT)
    n_frames = int(len(audio) / SAMPLE_RATE * FPS)
    openings = mouth_openings(audio, n_frames)
    in_sync = HERE / "sync_astronaut_in_sync.mp4"
    write_video(in_sync, animate(photo, lm, openings), FPS, audio=audio, sr=SAMPLE_RATE, crf=26)
    mux_audio(in_sync, HERE / "sync_astronaut_audio_early.mp4", audio, sr=SAMPLE_RATE, delay_s=-8 / FPS)
    print(f"wrote {in_sync.name} and sync_astronaut_audio_early.mp4 ({n_frames / FPS:.1f} s)")
    cv2.imwrite(str(HERE / "lipsync_astronaut.jpg"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    write_audio(HERE / "lipsync_speech.wav", speech(LIPSYNC_TEXT), SAMPLE_RATE)
    print("wrote lipsync_astronaut.jpg and lipsync_speech.wav")
    write_audio(HERE / "music_face_calm_to_intense.wav", calm_to_intense(), SAMPLE_RATE)
    print("wrote music_face_calm_to_intense.wav")
    return 0


if __name__ == "__main__":
    sys.exit(main())
