"""Lip sync (spec 05): a face video or photo + speech -> a video whose mouth says the speech.

Per output frame: the face's mouth-blur image, gradient map and mouth keypoints (``media.mouth``)
in the aligned lower-face crop, and the MFCC of the 0.2 s of speech centred on the frame, go
through the bundled network (``models.lipsync``); the generated mouth is pasted back into the
full-resolution frame with a soft mask around the lips (the keypoints fix where). The output has
the input's frame rate and resolution (longer sides scaled down to AVSTUDIO_MAX_SIDE) and lasts as
long as the speech: a shorter video is extended by ping-pong looping (forward, backward, forward,
...), a longer one is cut, a photo is held. Frames without a face pass through unchanged; with
several faces the largest one speaks. Video is streamed: memory holds the face landmarks and a
few batches of frames, not the video; decoding, the network's inputs (mouth blur, keypoint maps), the network
with the paste, and encoding run side by side in four threads (``media.io.prefetch``). The timings of the parts
are each thread's own and overlap: with the cores shared, "network" includes waiting for them, the parts may add
up to more than the total, and ``encoding_and_decoding`` (what the total adds beyond preprocessing and the
network) is then 0.

    python -m pipelines.lipsync FACE SPEECH --out OUT.mp4 [--model DIR_OR_HUB_ID] [--max-seconds S] [--json]
"""
from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from media.face import (
    LIPS,
    FaceTrack,
    FaceTracker,
    crop_landmarks,
    crop_transform,
    face_in_image,
    track_video,
)
from media.features import SAMPLE_RATE, is_silent, mfcc
from media.io import (
    IMAGE_SUFFIXES,
    MediaError,
    fit_within,
    fitted_size,
    iter_video_frames,
    prefetch,
    probe,
    read_audio,
    write_video,
)
from media.mouth import (
    gradient_map,
    mouth_blur,
    mouth_blur_crop,
    mouth_keypoints,
    source_box,
)
from pipelines.common import (
    AVStudioError,
    PipelineOutput,
    Progress,
    check_files,
    cli_model,
    fold_batchnorm,
    load_pretrained,
    loaded,
    prepare_out_path,
    read_audio_within,
    read_photo,
    resolve_bfloat16,
    resolve_max_seconds,
    run_cli,
    scaled_note,
    settings,
    timed,
)

if TYPE_CHECKING:
    from models.lipsync import LipSyncNet

# models.lipsync and torch are imported where they are used: they are most of a cold command's start-up

PHOTO_FPS = 25.0
OUTPUT_SR = 48000  # the speech is written at this rate (features use 16 kHz)
PASTE_GROW = 0.35  # the pasted area: the lip hull widened by this many d, feathered
PASTE_FEATHER = 4.0
BATCH = 8  # frames per network call: with channels-last weights 8 runs faster than 16 on this CPU
# The network's inputs (mouth blur, keypoint maps) of the next batch are made in their own thread while the
# network and the paste work on this one: 10-15 % less time at 256 px, 4-7 % at 720p, the same at 1080p, for up
# to two more batches of frames in memory (docs/performance.md). 0: in the painting thread.
PREPARE_AHEAD = 1
# The face mesh looks at every TRACK_EVERY-th frame of a video, the landmarks between interpolated
# (media.face.FaceTracker.track): the crops' geometry and the lip keypoints are smoothed over 9 frames
# anyway. Its cost in quality: benchmarks/results/lipsync_eval_track_every_2.json (docs/performance.md).
TRACK_EVERY = 2
# The generator runs in bfloat16 (torch.autocast) where the CPU computes it natively: half the network time on
# the benchmark CPU, output within 2 grey levels of float32 (docs/performance.md). None: where the CPU computes
# it natively (pipelines.common.resolve_bfloat16); False: always float32.
NETWORK_BFLOAT16: bool | None = None


class LipSyncError(AVStudioError):
    """Input the lip-sync pipeline cannot use; the message is meant for the user."""


@dataclass(kw_only=True)
class LipSyncResult(PipelineOutput):
    """The lip-synced video at ``output_path``: as long as the speech, at the face's frame rate."""

    fps: float
    n_frames: int
    width: int
    height: int
    source: str  # "photo" or "video"
    extension: str  # how the picture was fitted to the speech: "held", "cut", "ping-pong", "as is"
    face_frames: int  # output frames with a generated mouth
    silent_audio: bool

    def message(self) -> str:
        fitted = {"held": "the photo is held for the whole speech",
                  "cut": "the video was longer than the speech and is cut to it",
                  "ping-pong": "the video was shorter than the speech and is extended by playing it forward and back",
                  "as is": "the video and the speech have the same length"}[self.extension]
        extra = " The speech is silent, so the mouth stays closed." if self.silent_audio else ""
        return " ".join([f"{self.n_frames} frames at {self.fps:g} fps ({self.duration_s:.1f} s, {self.width}x{self.height}); "
                         f"{fitted}; mouth generated on {self.face_frames} frames.{extra}", *self.notes])


def load_model(dir_or_repo: str | Path | None = None) -> LipSyncNet:
    """The network, loaded once per process: the bundled one, AVSTUDIO_LIPSYNC, or ``dir_or_repo`` (a folder
    or Hugging Face Hub repo id)."""
    import torch

    from models.lipsync import LipSyncNet

    # Readied once, as it loads: the weights laid out channels-last (as LipSyncNet.generate lays out its inputs;
    # 40 % less network time on this CPU) and the BatchNorms folded into their convolutions
    # (pipelines.common.fold_batchnorm: 8-15 % less in float32, 7-11 % in bfloat16). Both give the same output
    # to 1e-6 in float32 (docs/performance.md).
    return load_pretrained(LipSyncNet, str(dir_or_repo or settings().lipsync), "lip-sync model",
                           prepare=lambda model: fold_batchnorm(model).to(memory_format=torch.channels_last))


def use_bfloat16() -> bool:
    """Whether the network runs in bfloat16: NETWORK_BFLOAT16, resolved by pipelines.common.resolve_bfloat16."""
    return resolve_bfloat16(NETWORK_BFLOAT16)


def is_photo(path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def pingpong_index(k: np.ndarray, n: int) -> np.ndarray:
    """Source frame of output frame k when n frames are played forward, backward, forward, ..."""
    k = np.asarray(k)
    if n <= 1:
        return np.zeros_like(k)
    period = 2 * n - 2
    p = k % period
    return np.where(p < n, p, period - p)


def _source_frames(path, order: np.ndarray, fps: float, size: tuple[int, int] | None = None,
                   chunk: int = 48) -> Iterator[np.ndarray]:
    """Frames of ``path`` (resized to ``size`` if given) in the order ``order`` (runs of +1 or -1 steps),
    streamed: forward runs decode straight through, backward runs decode chunks of ``chunk`` frames and
    play them reversed."""
    i = 0
    while i < len(order):
        step = 1 if i + 1 >= len(order) or order[i + 1] >= order[i] else -1
        j = i
        while j + 1 < len(order) and order[j + 1] - order[j] == step:
            j += 1
        lo, hi = (order[i], order[j]) if step == 1 else (order[j], order[i])
        if step == 1:
            yield from _decode_range(path, lo, hi, fps, size)
        else:
            for top in range(hi, lo - 1, -chunk):
                frames = list(_decode_range(path, max(lo, top - chunk + 1), top, fps, size))
                yield from reversed(frames)
        i = j + 1


def _decode_range(path, first: int, last: int, fps: float, size: tuple[int, int] | None = None
                  ) -> Iterator[np.ndarray]:
    """Frames first..last (inclusive) of a video; a frame the decoder does not return repeats the previous one."""
    start = max(0.0, (first - 0.5) / fps)
    expected, previous = first, None
    for idx, _, frame in iter_video_frames(path, start=start, size=size):
        if idx < first:
            continue
        while expected < idx and expected <= last and previous is not None:
            yield previous.copy()  # every frame its own array: the paste paints into it
            expected += 1
        if idx > last:
            break
        yield frame
        previous, expected = frame, idx + 1
    while expected <= last and previous is not None:
        yield previous.copy()
        expected += 1


def _paste(frame: np.ndarray, crop: np.ndarray, to_crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Blend a generated crop into ``frame`` (in place; returned) through ``mask`` (crop pixels), warping only
    the frame pixels under the mask's nonzero box (the rest of the crop would be blended with weight 0)."""
    ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if len(xs) == 0:
        return frame
    # the box, 2 pixels wider so the bilinear warp of the mask fades to 0 within it, as it does on the whole crop
    cx0, cy0 = max(int(xs[0]) - 2, 0), max(int(ys[0]) - 2, 0)
    cx1, cy1 = min(int(xs[-1]) + 3, mask.shape[1]), min(int(ys[-1]) + 3, mask.shape[0])
    to_box = np.array(to_crop, dtype=np.float64)
    to_box[:, 2] -= (cx0, cy0)
    crop, mask = crop[cy0:cy1, cx0:cx1], mask[cy0:cy1, cx0:cx1]
    x0, y0, x1, y1 = source_box(to_box, (cx1 - cx0, cy1 - cy0), frame.shape)
    if x1 <= x0 or y1 <= y0:
        return frame
    shift = cv2.invertAffineTransform(to_box)
    shift[:, 2] -= (x0, y0)
    size = (x1 - x0, y1 - y0)
    gen = cv2.warpAffine(crop, shift, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    alpha = cv2.warpAffine(mask, shift, size, flags=cv2.INTER_LINEAR)[..., None]
    roi = frame[y0:y1, x0:x1].astype(np.float32)
    frame[y0:y1, x0:x1] = np.clip(alpha * gen + (1 - alpha) * roi + 0.5, 0, 255).astype(np.uint8)
    return frame


@dataclass
class FaceSource:
    """The face input, read: a photo held still, or a video's face track (at its capped size)."""

    kind: str  # "photo" or "video"
    path: Path
    fps: float
    track: FaceTrack  # one entry per source frame tracked
    n_total: int  # frames in the file (a video longer than the speech is tracked only as far as used)
    width: int
    height: int
    image: np.ndarray | None = None  # the photo
    size: tuple[int, int] | None = None  # (w, h) the video's frames are decoded at, when scaled down

    def frames(self, order: np.ndarray) -> Iterator[np.ndarray]:
        """The source frames in ``order``, streamed."""
        if self.kind == "photo":  # a copy per frame: the paste paints into it
            return (self.image.copy() for _ in order)
        return _source_frames(self.path, order, self.fps, self.size)


def lipsync(face, audio, *, out_path, model: LipSyncNet | None = None, max_seconds: float | None = None,
            progress: Progress | None = None) -> LipSyncResult:
    """Make ``out_path`` (mp4): the face in ``face`` (video or photo) speaking ``audio`` (any file PyAV reads)."""
    t_start = time.perf_counter()
    timings = {"preprocessing": 0.0, "network": 0.0}
    say = progress or (lambda f, m: None)
    face, audio = Path(face), Path(audio)
    # 1. check the request and read the speech (16 kHz for the features, 48 kHz for the output)
    check_files((face, audio), LipSyncError)
    out_path = prepare_out_path(out_path, LipSyncError)
    model = loaded(model, load_model, say)
    notes: list[str] = []
    say(0.0, "reading the speech")
    speech = read_audio_within(audio, SAMPLE_RATE, resolve_max_seconds(max_seconds), LipSyncError, "speech")
    try:
        speech_out = read_audio(audio, sr=OUTPUT_SR)
    except MediaError as err:
        raise LipSyncError(f"the speech could not be read: {err}") from err
    duration = len(speech) / SAMPLE_RATE
    # 2. the face: a photo, or a video tracked as far as the speech needs it
    with timed(timings, "preprocessing"):
        source = read_face(face, duration, notes, say)
    n_out = round(duration * source.fps)
    if n_out < 1:
        raise LipSyncError(f"the speech is {duration * 1000:.0f} ms long, shorter than one frame "
                           f"({1000 / source.fps:.0f} ms)")
    order, extension = frame_order(source, n_out)
    # 3. the speech features per output frame, and the mouth shape each one calls for
    from models.lipsync import mfcc_windows, normalize_mfcc

    windows = mfcc_windows(normalize_mfcc(mfcc(speech, SAMPLE_RATE)), np.arange(n_out), source.fps)
    painter = MouthPainter(model, source, windows, order, timings)
    # 4. generate the mouth frame by frame, paste it, and encode with the speech
    try:
        # four threads: decoding, the network's inputs, the network with the paste (MouthPainter.paint) and
        # encoding run side by side
        frames = prefetch(painter.paint(prefetch(source.frames(order)), say))
        write_video(out_path, frames, source.fps, audio=speech_out, sr=OUTPUT_SR)
    except MediaError as err:
        raise LipSyncError(f"the output could not be written: {err}") from err
    total = time.perf_counter() - t_start
    timings["encoding_and_decoding"] = max(0.0, total - timings["preprocessing"] - timings["network"])
    timings["total"] = total
    say(1.0, "done")
    return LipSyncResult(output_path=str(out_path), duration_s=n_out / source.fps, timings=timings, notes=notes,
                         fps=source.fps, n_frames=n_out, width=source.width, height=source.height,
                         source=source.kind, extension=extension, face_frames=painter.face_frames,
                         silent_audio=bool(is_silent(speech, SAMPLE_RATE)))


def read_face(face: Path, duration: float, notes: list[str], say: Progress) -> FaceSource:
    """The face input of ``lipsync`` (step 2): a photo, or a video tracked as far as ``duration`` needs;
    pictures with a side longer than AVSTUDIO_MAX_SIDE are scaled down (with a note)."""
    max_side = settings().max_side
    if is_photo(face):
        scaled = read_photo(face, LipSyncError, max_side, notes)
        landmarks = face_in_image(scaled)
        if landmarks is None:
            raise LipSyncError(f"no face was found in the photo '{face.name}'")
        track = FaceTrack(landmarks[None].astype(np.float32), np.array([True]), (scaled.shape[1], scaled.shape[0]))
        return FaceSource("photo", face, PHOTO_FPS, track, 1, scaled.shape[1], scaled.shape[0], image=scaled)
    try:
        info = probe(face)
    except MediaError as err:
        raise LipSyncError(f"the face video could not be read: {err}") from err
    if not info.has_video:
        raise LipSyncError(f"'{face.name}' has no video (no picture): give a face video or a photo")
    fps = info.fps or PHOTO_FPS
    width, height = fitted_size(info.width, info.height, max_side)
    size = None
    if (width, height) != (info.width, info.height):
        size = (width, height)
        notes.append(scaled_note("video", (info.width, info.height), size))
    need = round(duration * fps)
    end = (need + 0.5) / fps if 0 < need < info.n_frames else None  # a longer video is tracked as far as used
    n_est = max(1, need if end is not None else info.n_frames)
    say(0.02, "tracking the face")
    try:
        track, fps = track_video(face, end=end, size=size, every=TRACK_EVERY,
                                 progress=lambda i: say(0.02 + 0.3 * min(1.0, (i + 1) / n_est), "tracking the face"))
    except MediaError as err:
        raise LipSyncError(f"the face video could not be read: {err}") from err
    if len(track) == 0:
        raise LipSyncError(f"'{face.name}' has no frames")
    if not track.found.any():
        raise LipSyncError(f"no face was found in any frame of '{face.name}'")
    return FaceSource("video", face, fps, track, info.n_frames if end is not None else len(track),
                      width, height, size=size)


def frame_order(source: FaceSource, n_out: int) -> tuple[np.ndarray, str]:
    """(source frame of each output frame, how the picture was fitted to the speech)."""
    n_src = len(source.track)
    if source.kind == "photo":
        return np.zeros(n_out, np.int64), "held"
    order = np.arange(n_out) if n_out <= n_src else pingpong_index(np.arange(n_out), n_src)
    return order, "as is" if n_out == source.n_total else "cut" if n_out < source.n_total else "ping-pong"


class MouthPainter:
    """Step 4 of ``lipsync``: for each output frame, the network's input (mouth-blur crop, gradient and the
    keypoint map of the mouth the speech calls for), the generated lower face, pasted back through a soft
    mask around the lips. Frames are processed in batches of BATCH; a photo's one frame is prepared once."""

    def __init__(self, model: LipSyncNet, source: FaceSource, windows: np.ndarray, order: np.ndarray,
                 timings: dict[str, float]):
        import torch

        from models.lipsync import CROP

        self.model, self.source, self.windows, self.order, self.timings = model, source, windows, order, timings
        self.face_frames = 0
        smooth = 1 if source.kind == "photo" else 9
        self.geo = source.track.geometry(smooth=smooth)
        # (N, 40, 2) lip keypoints in crop pixels, NaN without a face
        self.keypoints = crop_landmarks(source.track, LIPS, "lower", CROP, smooth=smooth)
        self.mean_shape = self._mean_shape()
        self.deviation = None  # (n_out, 40, 2): the lip predictor's mouth shape per output frame, from the speech
        if model.config.audio_keypoints:
            with timed(timings, "network"):
                self.deviation = model.predict_lip_deviation(torch.from_numpy(windows), source.fps)
        self.prepared: dict[int, tuple] = {}  # source frame -> (crop transform, input, paste mask, base keypoints)

    def _mean_shape(self) -> np.ndarray | None:
        """The lip shape the keypoint map starts from: None (the frame's own), the clip's mean, or for a photo
        (one frame has no mean of its own) the training clips' average shape, at the photo's lips."""
        config = self.model.config
        if not (config.neutral_keypoints or config.audio_keypoints):
            return None
        if self.source.kind == "photo" and self.model.mean_lip_shape is not None:
            return np.asarray(self.model.mean_lip_shape, dtype=np.float32)
        return np.mean(self.keypoints[self.source.track.found], axis=0)

    def paint(self, frames: Iterator[np.ndarray], say: Progress) -> Iterator[np.ndarray]:
        """The output frames, in order. The network's inputs are made PREPARE_AHEAD batches ahead, in a thread of
        their own."""
        n_out, done = len(self.order), 0
        batches = self._batches_with_inputs(frames)
        # closed on the way out, early stop or error included: the inputs' thread stops then, not when collected
        with contextlib.closing(prefetch(batches, PREPARE_AHEAD) if PREPARE_AHEAD else batches) as ready:
            for batch, inputs in ready:
                yield from self._generate_and_paste(batch, inputs)
                done += len(batch)
                say(0.35 + 0.6 * done / n_out, "generating the mouth")

    def _batches_with_inputs(self, frames: Iterator[np.ndarray]) -> Iterator[tuple[list, list]]:
        """(batch, inputs): BATCH (frame, output index) pairs and their network inputs (:meth:`_input`)."""
        batch: list[tuple[np.ndarray, int]] = []
        for k, frame in enumerate(frames):
            batch.append((frame, k))
            if len(batch) == BATCH:
                yield batch, self._inputs(batch)
                batch = []
        if batch:
            yield batch, self._inputs(batch)

    def _inputs(self, batch: list[tuple[np.ndarray, int]]) -> list:
        """:meth:`_input` of each (frame, output index) of ``batch``, timed as preprocessing."""
        with timed(self.timings, "preprocessing"):
            return [self._input(frame, k) for frame, k in batch]

    def _input(self, frame: np.ndarray, k: int):
        """(crop transform, network input, paste mask) of output frame k, or None without a face."""
        from models.lipsync import (
            CROP,
            generator_input,
            keypoint_map,
            keypoints_for_input,
            lip_hull,
        )

        i = int(self.order[k])
        if not self.source.track.found[i]:
            return None
        if i not in self.prepared:
            if self.source.kind != "photo":  # video frames are not kept
                self.prepared.clear()
            m = crop_transform(self.geo[i], "lower", CROP)
            kp = self.keypoints[i]
            base = keypoints_for_input(kp, self.mean_shape)
            # with the lip predictor, the keypoint channel is drawn per output frame below: none drawn here
            drawn = base if self.deviation is None else base[:0]
            self.prepared[i] = (m, generator_input(mouth_blur_crop(frame, self.source.track.landmarks[i], m, CROP), drawn),
                                lip_hull(kp, PASTE_GROW, PASTE_FEATHER), base)
        m, x, mask, base = self.prepared[i]
        if self.deviation is not None:  # the mouth this moment of the speech calls for, where the face's mouth is
            x = x.copy()
            x[4] = keypoint_map(base + self.deviation[k], CROP)
        return m, x, mask

    def _generate_and_paste(self, batch: list[tuple[np.ndarray, int]], inputs: list) -> list[np.ndarray]:
        import torch

        todo = [(item, k) for item, (_, k) in zip(inputs, batch) if item is not None]
        crops = []
        if todo:
            with timed(self.timings, "network"), torch.no_grad(), \
                    torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bfloat16()):
                out = self.model.generate(torch.from_numpy(np.stack([item[1] for item, _ in todo])),
                                          torch.from_numpy(self.windows[[k for _, k in todo]])).float()
            crops = list((out.permute(0, 2, 3, 1).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8))
        results = []
        with timed(self.timings, "preprocessing"):
            for (frame, _), item in zip(batch, inputs):
                if item is None:
                    results.append(frame)
                else:
                    m, _, mask = item
                    results.append(_paste(frame, crops.pop(0), m, mask))
                    self.face_frames += 1
        return results


def preview(face, frame_index: int = 0) -> dict:
    """The mouth feature information of one frame: {"blur", "gradient", "keypoints"} RGB images of the face.

    For a video, the first frame with a face at or after ``frame_index``.
    """
    face = Path(face)
    if is_photo(face):
        frame = read_photo(face, LipSyncError, settings().max_side)
        landmarks = face_in_image(frame, all_faces=True)
    else:
        frame, landmarks = None, []
        try:
            with FaceTracker() as tracker:  # video mode: a frame without a face is cheap to try
                for i, _, f in iter_video_frames(face):
                    if i < frame_index:
                        continue
                    f = fit_within(f, settings().max_side)
                    landmarks = tracker.detect(f)
                    if landmarks:
                        frame = f
                        break
                    if i > frame_index + 250:
                        break
        except MediaError as err:
            raise LipSyncError(f"the face video could not be read: {err}") from err
    if frame is None or not landmarks:
        raise LipSyncError(f"no face was found in '{face.name}'")
    blur = mouth_blur(frame, landmarks)
    grad = (gradient_map(blur) * 255).astype(np.uint8)
    dots = frame.copy()
    for lm in landmarks:
        for x, y in mouth_keypoints(lm):
            cv2.circle(dots, (round(x), round(y)), max(1, frame.shape[1] // 200), (0, 255, 255), -1)
    return {"blur": blur, "gradient": np.repeat(grad[..., None], 3, axis=2), "keypoints": dots}


def _add_arguments(ap) -> None:
    ap.add_argument("face", help="a face video or photo")
    ap.add_argument("audio", help="the speech: any audio or video file with sound")


def _run(args, progress: Progress) -> LipSyncResult:
    return lipsync(args.face, args.audio, out_path=args.out, model=cli_model(args, progress, load_model),
                   max_seconds=args.max_seconds, progress=progress)


def main(argv=None) -> int:
    return run_cli(argv, name="lipsync", description="Lip-sync a face video or photo to speech.",
                   add_arguments=_add_arguments, run=_run, out_help="the output video (.mp4)")


if __name__ == "__main__":
    sys.exit(main())
