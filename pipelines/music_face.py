"""Music-driven face animation (spec 03): a photo whose expression follows the music.

    python -m pipelines.music_face PHOTO MUSIC --out OUT.mp4 [--expression smile] [--strength 1] [--fps 25]
                                   [--model DIR_OR_HUB_ID] [--max-seconds S] [--json]

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

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from media.face import EXPRESSIONS, face_in_image, lip_gap
from media.features import SAMPLE_RATE, is_silent
from media.io import MediaError, prefetch, read_audio, write_video
from media.warp import MeshWarp, inner_mouth_mask, mouth_interior
from pipelines.common import (
    AVStudioError,
    PipelineOutput,
    Progress,
    check_files,
    cli_model,
    load_pretrained,
    loaded,
    prepare_out_path,
    read_audio_within,
    read_photo,
    resolve_max_seconds,
    run_cli,
    settings,
    timed,
)

OUTPUT_SR = 48000
DEFAULT_FPS = 25.0
MAX_STRENGTH = 3.0
MIN_OWN_GAP_PX = 3.0  # a photo whose inner lips are this far apart shows its own mouth interior


class MusicFaceError(AVStudioError):
    """Bad input for the music-face pipeline, with a message meant for the user."""


@dataclass(kw_only=True)
class MusicFaceResult(PipelineOutput):
    """The animated photo: ``output_path`` (mp4 with the music), one expression weight per frame."""

    fps: float
    n_frames: int
    weights: list[float]
    expression: dict[str, float]
    width: int
    height: int
    faces_found: int

    def message(self) -> str:
        mix = ", ".join(f"{k} x{v:g}" for k, v in self.expression.items())
        text = (f"{self.n_frames} frames at {self.fps:g} fps ({self.duration_s:.1f} s), {self.width} x {self.height}; "
                f"expression {mix}; weight mean {np.mean(self.weights):.2f}, max {np.max(self.weights):.2f}.")
        return " ".join([text, *self.notes])


if TYPE_CHECKING:
    from models.audio_encoder import AudioAutoencoder
    from models.face_controls import ExpressionControls

# the models (torch) are imported where they are used: they are most of a cold command's start-up


@dataclass(frozen=True)
class MusicFaceModel:
    """The two parts Music to face needs: the audio encoder and the expression control vectors."""

    encoder: AudioAutoencoder
    controls: ExpressionControls


def load_model(dir_or_repo: str | Path | None = None) -> MusicFaceModel:
    """Both parts, loaded once per process, from the ``audio_encoder/`` and ``face_controls/`` subfolders of
    ``dir_or_repo`` (a folder or Hugging Face Hub repo id; default the bundled models/weights, or
    AVSTUDIO_MUSIC_FACE)."""
    from models.audio_encoder import AudioAutoencoder
    from models.face_controls import ExpressionControls

    where = str(dir_or_repo or settings().music_face)
    return MusicFaceModel(load_pretrained(AudioAutoencoder, where, "audio encoder", "audio_encoder"),
                          load_pretrained(ExpressionControls, where, "expression control vectors", "face_controls"))


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
            frame = mouth_interior(frame, controls.fuse(landmarks, displacement, float(w)), keep, photo_gap,
                                   copy=False)  # the warp's frame is a new one
        else:
            frame = warp.warp(field_, float(w))
        yield frame


def music_face(face, audio, *, out_path, expression: str | dict[str, float] = "smile", strength: float = 1.0,
               fps: float = DEFAULT_FPS, model: MusicFaceModel | None = None, max_seconds: float | None = None,
               progress: Progress | None = None) -> MusicFaceResult:
    """Make ``out_path`` (mp4): the face of photo ``face`` changing expression with the music in ``audio``."""
    t_start = time.perf_counter()
    say = progress or (lambda f, m: None)
    timings: dict[str, float] = {}
    face, audio = Path(face), Path(audio)
    # 1. check the request: files, frame rate, expression, output
    check_files((face, audio), MusicFaceError)
    if not 1 <= fps <= 60:
        raise MusicFaceError(f"fps must be between 1 and 60, got {fps:g}")
    mix = parse_expression(expression, strength)
    out_path = prepare_out_path(out_path, MusicFaceError)
    model = loaded(model, load_model, say)
    notes: list[str] = []
    # 2. the photo, scaled to at most AVSTUDIO_MAX_SIDE, and its largest face
    say(0.0, "reading the photo")
    with timed(timings, "reading"):
        image = read_photo(face, MusicFaceError, settings().max_side, notes)
        landmarks, n_faces = find_face(image)
    if n_faces > 1:
        notes.append(f"{n_faces} faces were found; the largest one moves.")
    # 3. the music: not too long, not silent, at least one frame
    say(0.05, "reading the music")
    with timed(timings, "reading"):
        music = read_audio_within(audio, SAMPLE_RATE, resolve_max_seconds(max_seconds), MusicFaceError)
    duration = len(music) / SAMPLE_RATE
    n_frames = int(np.floor(duration * fps + 1e-6))
    if n_frames < 1:
        raise MusicFaceError(f"the audio is {duration * 1000:.0f} ms long, shorter than one frame at {fps:g} fps")
    if is_silent(music, SAMPLE_RATE):
        raise MusicFaceError("the audio is silent: there is no music for the face to follow")
    # 4. one expression weight per frame from the audio encoder (spec steps 1-2)
    say(0.1, "audio features")
    from models.audio_encoder import frame_weights

    with timed(timings, "audio_features"):
        weights = frame_weights(model.encoder, music, fps, SAMPLE_RATE, n_frames)
    # 5. the warped frames, encoded with the music (spec steps 3-4)
    frames = animate(image, landmarks, weights, mix, model.controls)
    with timed(timings, "frames_and_encoding"):
        try:
            sound = read_audio(audio, sr=OUTPUT_SR)
            # the frames are drawn in a second thread while the encoder works on the ones before
            write_video(out_path, prefetch(_counted(frames, n_frames, say)), fps, audio=sound, sr=OUTPUT_SR)
        except MediaError as err:
            raise MusicFaceError(f"the video could not be written: {err}") from err
    timings["total"] = time.perf_counter() - t_start
    say(1.0, "done")
    return MusicFaceResult(output_path=str(out_path), duration_s=n_frames / fps, timings=timings, notes=notes,
                           fps=float(fps), n_frames=n_frames, weights=[round(float(w), 4) for w in weights],
                           expression=mix, width=image.shape[1], height=image.shape[0], faces_found=n_faces)


def _counted(frames: Iterator[np.ndarray], n_frames: int, say: Progress) -> Iterator[np.ndarray]:
    for k, frame in enumerate(frames):
        if k % 10 == 0:
            say(0.15 + 0.8 * k / n_frames, "drawing the frames")
        yield frame


def plot_weights(result: MusicFaceResult):
    """A matplotlib figure of the weight curve over time (a bare ``Figure``: no pyplot state per request)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 2.6))
    ax = fig.subplots()
    t = np.arange(result.n_frames) / result.fps
    ax.plot(t, result.weights, lw=1.2)
    ax.fill_between(t, 0, result.weights, alpha=0.2)
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, max(t[-1], 1e-3))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("weight")
    ax.set_title("expression weight: 0 calm, soft - 1 tense, intense", fontsize=9)
    fig.tight_layout()
    return fig


def _add_arguments(ap) -> None:
    ap.add_argument("face", help="a face photo (jpg, png, webp, ...)")
    ap.add_argument("audio", help="music, or any file with sound that PyAV reads")
    ap.add_argument("--expression", default="smile",
                    help=f"one of {', '.join(EXPRESSIONS)}, or several joined by '+' (e.g. smile+raised_brows)")
    ap.add_argument("--strength", type=float, default=1.0, help=f"0 to {MAX_STRENGTH:g}: scales the expression")
    ap.add_argument("--fps", type=float, default=DEFAULT_FPS)


def _run(args, progress: Progress) -> MusicFaceResult:
    return music_face(args.face, args.audio, out_path=args.out, expression=args.expression, strength=args.strength,
                      fps=args.fps, model=cli_model(args, progress, load_model),
                      max_seconds=args.max_seconds, progress=progress)


def main(argv=None) -> int:
    return run_cli(argv, name="music_face", description="A face photo whose expression follows music.",
                   add_arguments=_add_arguments, run=_run, out_help="the output video (.mp4)")


if __name__ == "__main__":
    sys.exit(main())
