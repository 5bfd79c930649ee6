"""Lip sync (spec 05): a face video or photo + speech -> a video whose mouth says the speech.

Per output frame: the face's mouth-blur image, gradient map and mouth keypoints (``media.mouth``)
in the aligned lower-face crop, and the MFCC of the 0.2 s of speech centred on the frame, go
through the bundled network (``models.lipsync``); the generated mouth is pasted back into the
full-resolution frame with a soft mask around the lips (the keypoints fix where). The output has
the input's resolution and frame rate and lasts as long as the speech: a shorter video is
extended by ping-pong looping (forward, backward, forward, ...), a longer one is cut, a photo is
held. Frames without a face pass through unchanged; with several faces the largest one speaks.
Video is streamed: memory holds the face landmarks and a small batch of frames, not the video.

    python -m pipelines.lipsync --face FACE --audio SPEECH --out OUT.mp4 [--model DIR_OR_HUB_ID]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from media.face import (
    LIPS,
    FaceTrack,
    FaceTracker,
    NoFaceError,
    crop_landmarks,
    crop_transform,
    face_in_image,
    track_video,
)
from media.features import SAMPLE_RATE, is_silent, mfcc
from media.io import (
    IMAGE_SUFFIXES,
    MediaError,
    iter_video_frames,
    probe,
    read_audio,
    read_image,
    write_video,
)
from media.mouth import gradient_map, mouth_blur, mouth_blur_crop, mouth_keypoints
from models.lipsync import (
    CROP,
    DEFAULT_WEIGHTS,
    LipSyncNet,
    generator_input,
    keypoint_map,
    keypoints_for_input,
    lip_hull,
    mfcc_windows,
    normalize_mfcc,
)
from pipelines.common import (
    DEFAULT_MAX_SECONDS,
    check_files,
    cli_error,
    cli_progress,
    load_pretrained,
    read_audio_within,
)

PHOTO_FPS = 25.0
OUTPUT_SR = 48000  # the speech is written at this rate (features use 16 kHz)
PASTE_GROW = 0.35  # the pasted area: the lip hull widened by this many d, feathered
PASTE_FEATHER = 4.0
BATCH = 16




class LipSyncError(ValueError):
    """Input the lip-sync pipeline cannot use; the message is meant for the user."""


@dataclass
class LipSyncResult:
    path: str
    fps: float
    n_frames: int
    width: int
    height: int
    duration: float
    source: str  # "photo" or "video"
    extension: str  # how the picture was fitted to the speech: "held", "cut", "ping-pong", "as is"
    face_frames: int  # output frames with a generated mouth
    silent_audio: bool
    timings: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {"output": self.path, "fps": round(self.fps, 3), "n_frames": self.n_frames, "width": self.width,
                "height": self.height, "duration": round(self.duration, 3), "source": self.source,
                "extension": self.extension, "face_frames": self.face_frames, "silent_audio": self.silent_audio,
                "timings": {k: round(v, 3) for k, v in self.timings.items()}}

    def message(self) -> str:
        fitted = {"held": "the photo is held for the whole speech",
                  "cut": "the video was longer than the speech and is cut to it",
                  "ping-pong": "the video was shorter than the speech and is extended by playing it forward and back",
                  "as is": "the video and the speech have the same length"}[self.extension]
        extra = " The speech is silent, so the mouth stays closed." if self.silent_audio else ""
        return (f"{self.n_frames} frames at {self.fps:g} fps ({self.duration:.1f} s, {self.width}x{self.height}); "
                f"{fitted}; mouth generated on {self.face_frames} frames.{extra}")


def load_model(dir_or_repo: str = str(DEFAULT_WEIGHTS)) -> LipSyncNet:
    """The model, loaded once per process (bundled weights unless a folder or Hub repo id is given)."""
    return load_pretrained(LipSyncNet, str(dir_or_repo), LipSyncError, "lip-sync model")


def is_photo(path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def load_photo(path) -> np.ndarray:
    try:
        return read_image(path)
    except MediaError as err:
        raise LipSyncError(str(err)) from err


def pingpong_index(k: np.ndarray, n: int) -> np.ndarray:
    """Source frame of output frame k when n frames are played forward, backward, forward, ..."""
    k = np.asarray(k)
    if n <= 1:
        return np.zeros_like(k)
    period = 2 * n - 2
    p = k % period
    return np.where(p < n, p, period - p)


def _source_frames(path, order: np.ndarray, fps: float, chunk: int = 48) -> Iterator[np.ndarray]:
    """Frames of ``path`` in the order ``order`` (runs of +1 or -1 steps), streamed: forward runs decode
    straight through, backward runs decode chunks of ``chunk`` frames and play them reversed."""
    i = 0
    while i < len(order):
        step = 1 if i + 1 >= len(order) or order[i + 1] >= order[i] else -1
        j = i
        while j + 1 < len(order) and order[j + 1] - order[j] == step:
            j += 1
        lo, hi = (order[i], order[j]) if step == 1 else (order[j], order[i])
        if step == 1:
            yield from _decode_range(path, lo, hi, fps)
        else:
            for top in range(hi, lo - 1, -chunk):
                frames = list(_decode_range(path, max(lo, top - chunk + 1), top, fps))
                yield from reversed(frames)
        i = j + 1


def _decode_range(path, first: int, last: int, fps: float) -> Iterator[np.ndarray]:
    """Frames first..last (inclusive) of a video; a frame the decoder does not return repeats the previous one."""
    start = max(0.0, (first - 0.5) / fps)
    expected, previous = first, None
    for idx, _, frame in iter_video_frames(path, start=start):
        if idx < first:
            continue
        while expected < idx and expected <= last and previous is not None:
            yield previous
            expected += 1
        if idx > last:
            break
        yield frame
        previous, expected = frame, idx + 1
    while expected <= last and previous is not None:
        yield previous
        expected += 1


def _paste(frame: np.ndarray, crop: np.ndarray, to_crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Blend a generated crop into ``frame`` through ``mask`` (crop pixels), warping only the crop's box."""
    h, w = frame.shape[:2]
    back = cv2.invertAffineTransform(to_crop)
    corners = np.array([[0, 0], [CROP[0], 0], [0, CROP[1]], [CROP[0], CROP[1]]], np.float32)
    pts = corners @ back[:, :2].T + back[:, 2]
    x0, y0 = np.floor(pts.min(0)).astype(int) - 1
    x1, y1 = np.ceil(pts.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return frame
    shift = back.copy()
    shift[:, 2] -= (x0, y0)
    size = (x1 - x0, y1 - y0)
    gen = cv2.warpAffine(crop, shift, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    alpha = cv2.warpAffine(mask, shift, size, flags=cv2.INTER_LINEAR)[..., None]
    out = frame.copy()
    roi = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(alpha * gen + (1 - alpha) * roi + 0.5, 0, 255).astype(np.uint8)
    return out


def lipsync(face, audio, out_path, model: LipSyncNet | None = None, max_seconds: float = DEFAULT_MAX_SECONDS,
            progress: Callable[[float, str], None] | None = None) -> LipSyncResult:
    """Make ``out_path`` (mp4): the face in ``face`` (video or photo) speaking ``audio`` (any file PyAV reads)."""
    t_start = time.perf_counter()
    timings = {"preprocessing": 0.0, "network": 0.0}
    say = progress or (lambda f, m: None)
    model = model or load_model()
    face, audio = Path(face), Path(audio)
    check_files((face, audio), LipSyncError)
    say(0.0, "reading the speech")
    speech = read_audio_within(audio, SAMPLE_RATE, max_seconds, LipSyncError, "speech")
    try:
        speech_out = read_audio(audio, sr=OUTPUT_SR)
    except MediaError as err:
        raise LipSyncError(f"the speech could not be read: {err}") from err
    duration = len(speech) / SAMPLE_RATE

    if is_photo(face):
        source = "photo"
        image = load_photo(face)
        fps, n_src = PHOTO_FPS, 1
        n_total = 1
        landmarks = face_in_image(image)
        if landmarks is None:
            raise LipSyncError(f"no face was found in the photo '{face.name}'")
        track = FaceTrack(landmarks[None].astype(np.float32), np.array([True]), (image.shape[1], image.shape[0]))
    else:
        source = "video"
        try:
            info = probe(face)
        except MediaError as err:
            raise LipSyncError(f"the face video could not be read: {err}") from err
        if not info.has_video:
            raise LipSyncError(f"'{face.name}' has no video (no picture): give a face video or a photo")
        fps = info.fps or PHOTO_FPS
        say(0.02, "tracking the face")
        t = time.perf_counter()
        need = round(duration * fps)
        # a video longer than the speech is tracked only as far as it is used
        end = (need + 0.5) / fps if 0 < need < info.n_frames else None
        n_est = max(1, need if end is not None else info.n_frames)
        try:
            track, fps = track_video(face, end=end,
                                     progress=lambda i: say(0.02 + 0.3 * min(1.0, (i + 1) / n_est), "tracking the face"))
        except MediaError as err:
            raise LipSyncError(f"the face video could not be read: {err}") from err
        timings["preprocessing"] += time.perf_counter() - t
        n_src = len(track)
        n_total = info.n_frames if end is not None else n_src
        if n_src == 0:
            raise LipSyncError(f"'{face.name}' has no frames")
        if not track.found.any():
            raise LipSyncError(f"no face was found in any frame of '{face.name}'")
    n_out = round(duration * fps)
    if n_out < 1:
        raise LipSyncError(f"the speech is {duration * 1000:.0f} ms long, shorter than one frame ({1000 / fps:.0f} ms)")
    order = np.zeros(n_out, np.int64) if source == "photo" else (
        np.arange(n_out) if n_out <= n_src else pingpong_index(np.arange(n_out), n_src))
    extension = "held" if source == "photo" else ("as is" if n_out == n_total else "cut" if n_out < n_total else "ping-pong")

    silent = is_silent(speech, SAMPLE_RATE)
    windows = mfcc_windows(normalize_mfcc(mfcc(speech, SAMPLE_RATE)), np.arange(n_out), fps)
    smooth = 1 if source == "photo" else 9
    geo = track.geometry(smooth=smooth)
    keypoints = crop_landmarks(track, LIPS, "lower", CROP, smooth=smooth)  # (N, 40, 2) crop pixels, NaN without a face
    mean_shape = None
    deviation = None  # (n_out, 40, 2): the lip predictor's mouth shape per output frame, from the speech
    if model.config.audio_keypoints:
        t = time.perf_counter()
        deviation = model.predict_lip_deviation(torch.from_numpy(windows), fps)  # (n_out, 40, 2)
        timings["network"] += time.perf_counter() - t
    if model.config.neutral_keypoints or model.config.audio_keypoints:  # the predictor's deviation is from a mean shape
        if source == "photo" and model.config.mean_lip_shape is not None:
            # one frame has no mean of its own: the training clips' average shape, at the photo's lips
            mean_shape = np.asarray(model.config.mean_lip_shape, dtype=np.float32)
        else:  # the clip's mean lip shape
            mean_shape = np.mean(keypoints[track.found], axis=0)
    frames = (image for _ in range(n_out)) if source == "photo" else _source_frames(face, order, fps)
    face_frames = 0
    prepared: dict[int, tuple] = {}  # source frame -> (crop transform, network input, paste mask, base lip keypoints)

    def generate() -> Iterator[np.ndarray]:
        nonlocal face_frames
        batch: list[tuple[np.ndarray, int]] = []

        def flush():
            nonlocal face_frames
            t = time.perf_counter()
            items = []  # (frame, to_crop, input, mask, k) for frames with a face
            for frame, k in batch:
                i = int(order[k])
                if not track.found[i]:
                    items.append((frame, None, None, None, k))
                    continue
                if i not in prepared:
                    m = crop_transform(geo[i], "lower", CROP)
                    blur_crop = mouth_blur_crop(frame, track.landmarks[i], m, CROP)
                    kp = keypoints[i]
                    if source != "photo":  # a photo's one frame is prepared once; video frames are not kept
                        prepared.clear()
                    base = keypoints_for_input(kp, mean_shape)
                    prepared[i] = (m, generator_input(blur_crop, base), lip_hull(kp, PASTE_GROW, PASTE_FEATHER), base)
                m, x, mask, base = prepared[i]
                if deviation is not None:  # the mouth this moment of the speech calls for, where the face's mouth is
                    x = x.copy()
                    x[4] = keypoint_map(base + deviation[k], CROP)
                items.append((frame, m, x, mask, k))
            todo = [it for it in items if it[1] is not None]
            timings["preprocessing"] += time.perf_counter() - t
            crops = []
            if todo:
                t = time.perf_counter()
                with torch.no_grad():
                    out = model.generate(torch.from_numpy(np.stack([it[2] for it in todo])),
                                         torch.from_numpy(windows[[it[4] for it in todo]]))
                crops = list((out.permute(0, 2, 3, 1).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8))
                timings["network"] += time.perf_counter() - t
            t = time.perf_counter()
            results = []
            for frame, m, _, mask, _ in items:
                if m is None:
                    results.append(frame)
                else:
                    results.append(_paste(frame, crops.pop(0), m, mask))
                    face_frames += 1
            timings["preprocessing"] += time.perf_counter() - t
            batch.clear()
            return results

        for k, frame in enumerate(frames):
            batch.append((frame, k))
            if len(batch) == BATCH:
                yield from flush()
                say(0.35 + 0.6 * (k + 1) / n_out, "generating the mouth")
        if batch:
            yield from flush()

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    first_shape = image.shape if source == "photo" else (info.height, info.width, 3)
    try:
        write_video(out_path, generate(), fps, audio=speech_out, sr=OUTPUT_SR)
    except MediaError as err:
        raise LipSyncError(f"the output could not be written: {err}") from err
    timings["total"] = time.perf_counter() - t_start
    timings["encoding_and_decoding"] = max(0.0, timings["total"] - timings["preprocessing"] - timings["network"])
    say(1.0, "done")
    return LipSyncResult(str(out_path), fps, n_out, first_shape[1], first_shape[0], n_out / fps, source, extension,
                         face_frames, silent, timings)


def preview(face, frame_index: int = 0) -> dict:
    """The mouth feature information of one frame: {"blur", "gradient", "keypoints"} RGB images of the face.

    For a video, the first frame with a face at or after ``frame_index``.
    """
    face = Path(face)
    if is_photo(face):
        frame = load_photo(face)
        landmarks = face_in_image(frame, all_faces=True)
    else:
        frame, landmarks = None, []
        try:
            with FaceTracker(static=True) as tracker:  # one tracker for every frame tried
                for i, _, f in iter_video_frames(face):
                    if i < frame_index:
                        continue
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Lip-sync a face video or photo to speech (spec 05)")
    ap.add_argument("--face", required=True, help="face video or photo")
    ap.add_argument("--audio", required=True, help="speech (any audio or video file with sound)")
    ap.add_argument("--out", required=True, help="output .mp4")
    ap.add_argument("--model", default=str(DEFAULT_WEIGHTS), help="model folder or Hugging Face Hub repo id")
    ap.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS)
    ap.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = ap.parse_args(argv)
    bar, progress = cli_progress("lip sync")

    try:
        result = lipsync(args.face, args.audio, args.out, load_model(args.model), args.max_seconds, progress)
    except (LipSyncError, MediaError, NoFaceError) as err:
        return cli_error(bar, err, args.json)
    bar.close()
    print(json.dumps(result.summary()) if args.json else f"{result.path}: {result.message()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
