"""Music-driven face animation (spec 03): a photo whose expression follows the music.

    python -m pipelines.music_face --face IMG --audio AUDIO --out OUT.mp4 [--expression smile] [--strength 1]
                                   [--fps 25] [--json]

The claimed structure, step by step:

1. **Audio features**: MFCC points every 100 ms -> the bundled audio encoder (``models.audio_encoder``,
   an autoencoder trained without labels on music) -> one 512-d vector per time point.
2. **Weight per frame**: the vectors are interpolated to the output frame rate (distance-weighted),
   averaged over their elements and mapped into [0, 1] with bounds calibrated on the training corpus.
   First action parameters = weight x the control vector (the initial action parameters).
3. **Target image**: the photo's latent code is its face-mesh landmarks; the scaled control vector
   (``models.face_controls``, measured on real footage) is added point-wise to the detail channels
   (mouth, eyes, brows) only. The generator warps the photo by the edited mesh (piecewise affine,
   ``media.warp``) and paints the inside of an opening mouth; outside the face nothing changes.
4. **Video**: one image per frame, in time order, with the music muxed in, as long as the audio.

Output: an mp4 at the photo's resolution. With several faces in the photo, the largest one moves (the
result says so).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from media.face import face_in_image, lip_gap
from media.features import is_silent
from media.io import MediaError, read_audio, read_image, write_video
from media.warp import MeshWarp, inner_mouth_mask, mouth_interior
from models.audio_encoder import DEFAULT_WEIGHTS as ENCODER_WEIGHTS
from models.audio_encoder import SAMPLE_RATE, AudioAutoencoder, frame_weights
from models.face_controls import DEFAULT_WEIGHTS as CONTROLS_WEIGHTS
from models.face_controls import EXPRESSIONS, ExpressionControls
from pipelines.common import (
    DEFAULT_MAX_SECONDS,
    check_files,
    cli_error,
    cli_progress,
    env_float,
    load_pretrained,
    read_audio_within,
)

OUTPUT_SR = 48000
DEFAULT_FPS = 25.0
MAX_STRENGTH = 3.0
MAX_SIDE = int(env_float("AVSTUDIO_MAX_SIDE", 1920))  # longer photo sides are scaled down to this (video encoders and speed)
MIN_OWN_GAP_PX = 3.0  # a photo whose inner lips are this far apart shows its own mouth interior




class MusicFaceError(ValueError):
    """Bad input for the music-face pipeline, with a message meant for the user."""


@dataclass
class MusicFaceResult:
    out_path: str
    fps: float
    n_frames: int
    duration_s: float
    weights: list[float]
    expression: dict[str, float]
    width: int
    height: int
    faces_found: int
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict:
        return asdict(self)

    def message(self) -> str:
        mix = ", ".join(f"{k} x{v:g}" for k, v in self.expression.items())
        text = (f"{self.n_frames} frames at {self.fps:g} fps ({self.duration_s:.1f} s), {self.width} x {self.height}; "
                f"expression {mix}; weight mean {np.mean(self.weights):.2f}, max {np.max(self.weights):.2f}.")
        return " ".join([text, *self.notes])


def load_encoder(dir_or_repo: str = str(ENCODER_WEIGHTS)) -> AudioAutoencoder:
    return load_pretrained(AudioAutoencoder, str(dir_or_repo), MusicFaceError, "audio encoder")


def load_controls(dir_or_repo: str = str(CONTROLS_WEIGHTS)) -> ExpressionControls:
    return load_pretrained(ExpressionControls, str(dir_or_repo), MusicFaceError, "expression control vectors")


def parse_expression(expression: str | dict[str, float], strength: float = 1.0) -> dict[str, float]:
    """{name: amount}: ``"smile"``, ``"smile+raised_brows"`` or a dict, each amount times ``strength``."""
    if isinstance(expression, str):
        names = [n.strip() for n in expression.replace(",", "+").split("+") if n.strip()]
        mix = {n: 1.0 for n in names}
    else:
        mix = {str(k): float(v) for k, v in expression.items()}
    if not mix:
        raise MusicFaceError(f"choose an expression: {', '.join(EXPRESSIONS)}")
    unknown = [n for n in mix if n not in EXPRESSIONS]
    if unknown:
        raise MusicFaceError(f"unknown expression {unknown[0]!r}; choose from {', '.join(EXPRESSIONS)}")
    if not 0 <= strength <= MAX_STRENGTH:
        raise MusicFaceError(f"strength must be between 0 and {MAX_STRENGTH:g}, got {strength:g}")
    return {n: a * float(strength) for n, a in mix.items()}


def find_face(image: np.ndarray) -> tuple[np.ndarray, int]:
    """(landmarks (478, 3) of the largest face, number of faces)."""
    faces = face_in_image(image, all_faces=True)
    if not faces:
        raise MusicFaceError("no face was found in the photo: use a photo with a clearly visible face")
    return faces[0], len(faces)


def animate(image: np.ndarray, landmarks: np.ndarray, weights: np.ndarray, mix: dict[str, float],
            controls: ExpressionControls) -> Iterator[np.ndarray]:
    """The photo warped by weight x control vector, one frame per weight (generator; the spec's steps 3-4)."""
    warp = MeshWarp(image, landmarks)
    displacement = controls.displacement(landmarks, mix)
    field_ = warp.field(displacement)
    # the photo's own mouth interior, where it is open (a closed mouth's thin inner-lip ring counts as none)
    photo_gap = float(lip_gap(landmarks))
    own_mouth = inner_mouth_mask(landmarks, image.shape[:2]) if photo_gap >= MIN_OWN_GAP_PX else None
    opens = lip_gap(controls.fuse(landmarks, displacement, 1.0)) > photo_gap  # the inner lips part further
    for w in weights:
        if opens and w > 0:
            frame, keep = warp.warp(field_, float(w), extra=own_mouth) if own_mouth is not None else \
                (warp.warp(field_, float(w)), None)
            frame = mouth_interior(frame, controls.fuse(landmarks, displacement, float(w)), keep, photo_gap)
        else:
            frame = warp.warp(field_, float(w))
        yield frame


def music_face(face, audio, out_path, expression: str | dict[str, float] = "smile", strength: float = 1.0,
               fps: float = DEFAULT_FPS, max_seconds: float = DEFAULT_MAX_SECONDS,
               encoder: AudioAutoencoder | None = None, controls: ExpressionControls | None = None,
               progress: Callable[[float, str], None] | None = None) -> MusicFaceResult:
    """Make ``out_path`` (mp4): the face of photo ``face`` changing expression with the music in ``audio``."""
    t0 = time.perf_counter()
    say = progress or (lambda f, m: None)
    face, audio = Path(face), Path(audio)
    check_files((face, audio), MusicFaceError)
    if not 1 <= fps <= 60:
        raise MusicFaceError(f"fps must be between 1 and 60, got {fps:g}")
    mix = parse_expression(expression, strength)
    say(0.0, "reading the photo")
    try:
        image = read_image(face)
    except MediaError as err:
        raise MusicFaceError(str(err)) from err
    if min(image.shape[:2]) < 32:
        raise MusicFaceError(f"the photo is {image.shape[1]} x {image.shape[0]} pixels: too small for a face")
    notes = []
    if max(image.shape[:2]) > MAX_SIDE:
        import cv2

        h, w = image.shape[:2]
        scale = MAX_SIDE / max(h, w)
        image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        notes.append(f"The {w} x {h} photo was scaled to {image.shape[1]} x {image.shape[0]}.")
    landmarks, n_faces = find_face(image)
    if n_faces > 1:
        notes.append(f"{n_faces} faces were found; the largest one moves.")
    say(0.05, "reading the audio")
    music = read_audio_within(audio, SAMPLE_RATE, max_seconds, MusicFaceError)
    duration = len(music) / SAMPLE_RATE
    n_frames = int(np.floor(duration * fps + 1e-6))
    if n_frames < 1:
        raise MusicFaceError(f"the audio is {duration * 1000:.0f} ms long, shorter than one frame at {fps:g} fps")
    if is_silent(music, SAMPLE_RATE):
        raise MusicFaceError("the audio is silent: there is no music for the face to follow")
    timings = {"loading": time.perf_counter() - t0}
    t = time.perf_counter()
    encoder = encoder or load_encoder()
    controls = controls or load_controls()
    say(0.1, "audio features")
    weights = frame_weights(encoder, music, fps, SAMPLE_RATE, n_frames)
    timings["audio_features"] = time.perf_counter() - t

    t = time.perf_counter()
    frames = animate(image, landmarks, weights, mix, controls)

    def counted() -> Iterator[np.ndarray]:
        for k, frame in enumerate(frames):
            if k % 10 == 0:
                say(0.15 + 0.8 * k / n_frames, f"frame {k + 1} of {n_frames}")
            yield frame

    try:
        sound = read_audio(audio, sr=OUTPUT_SR)
        write_video(out_path, counted(), fps, audio=sound, sr=OUTPUT_SR)
    except MediaError as err:
        raise MusicFaceError(f"the video could not be written: {err}") from err
    timings["frames_and_encoding"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    say(1.0, "done")
    return MusicFaceResult(str(out_path), float(fps), n_frames, n_frames / fps, [round(float(w), 4) for w in weights],
                           mix, image.shape[1], image.shape[0], n_faces, notes,
                           {k: round(v, 3) for k, v in timings.items()})


def plot_weights(result: MusicFaceResult):
    """A matplotlib figure of the weight curve over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 2.6))
    t = np.arange(result.n_frames) / result.fps
    ax.plot(t, result.weights, lw=1.2)
    ax.fill_between(t, 0, result.weights, alpha=0.2)
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, max(t[-1], 1e-3))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("weight")
    ax.set_title("expression weight: 0 calm, soft - 1 tense, intense", fontsize=9)
    fig.tight_layout()
    plt.close(fig)
    return fig


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--face", required=True, help="a face photo (jpg, png, webp, ...)")
    ap.add_argument("--audio", required=True, help="music or any sound PyAV can read")
    ap.add_argument("--out", required=True, help="output mp4")
    ap.add_argument("--expression", default="smile",
                    help=f"one of {', '.join(EXPRESSIONS)}, or several joined by '+' (e.g. smile+raised_brows)")
    ap.add_argument("--strength", type=float, default=1.0, help=f"0 to {MAX_STRENGTH:g}: scales the expression")
    ap.add_argument("--fps", type=float, default=DEFAULT_FPS)
    ap.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS)
    ap.add_argument("--encoder", default=str(ENCODER_WEIGHTS), help="audio encoder folder or Hub repo id")
    ap.add_argument("--controls", default=str(CONTROLS_WEIGHTS), help="control-vector folder or Hub repo id")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON line last")
    args = ap.parse_args(argv)
    bar, progress = cli_progress("music face")
    try:
        encoder, controls = load_encoder(args.encoder), load_controls(args.controls)
        result = music_face(args.face, args.audio, args.out, args.expression, args.strength, args.fps,
                            args.max_seconds, encoder, controls, progress)
    except MusicFaceError as err:
        return cli_error(bar, err, args.json)
    bar.close()
    print(result.message(), file=sys.stderr)
    if args.json:
        print(json.dumps(result.summary()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
