"""Audio and video file I/O for AV Studio, built on PyAV only.

Reading works on audio files (wav, mp3, ogg, flac, opus, ...) and video containers (mp4 with
H.264/HEVC/MPEG-4, webm, mov, avi, mpg, mkv). Writing produces MP4 files with H.264 video
(libx264, yuv420p) and AAC audio, with the index at the front (``+faststart``) so they stream
in a browser.

Time-alignment convention
-------------------------
Every time in this module (``start``, ``end``, the ``time_s`` of a frame, the position of an
audio sample) is in seconds from the file's *reference time*:

* files with a video stream: the presentation time of the first decoded video frame;
* audio-only files: the presentation time of the first decoded audio sample.

Frame 0 of :func:`read_video` is therefore at ``t = 0`` and sample 0 of :func:`read_audio` is
the sound that plays together with that frame: audio that starts before the first video frame
is trimmed and audio that starts after it is preceded by zeros, to the sample. Times come from
decoded frames (``frame.pts * time_base``), after FFmpeg has applied the container's edit list
and the codec's skip-samples side data (AAC encoder priming, MP3 encoder delay), never from
packet counts.

Video frames come back as RGB uint8, upright: a display rotation stored in the container
(phone videos) is applied as players do.

The writers follow the same convention: :func:`write_video` and :func:`mux_audio` start the
audio together with the first video frame and cut or pad it to the video duration, defined as
frame count / fps. The AAC encoder's priming samples get negative timestamps, which the MP4
muxer hides with an edit list, so reading the file back returns the signal in place. The
decoder also returns the encoder's padding after the last sample; :func:`read_audio` drops it
using the MP4 track's edit-list duration, so lengths come back exact.

All public functions raise :class:`MediaError` with a short message naming the file when a
file cannot be read or written; PyAV's own exceptions never escape.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import av
import numpy as np
import soundfile as sf

from media.errors import AVStudioError

__all__ = [
    "LazyFrame",
    "MediaError",
    "fit_within",
    "fitted_size",
    "MediaInfo",
    "iter_audio_chunks",
    "iter_video_frames",
    "mux_audio",
    "prefetch",
    "probe",
    "read_audio",
    "read_video",
    "shift_audio",
    "write_audio",
    "write_video",
]

PathLike = str | os.PathLike

# Tolerance for comparing frame times with requested start/end times (seconds).
_TIME_EPS = 1e-6
# H.264 output is tagged as BT.601 (SMPTE 170M), limited range: the matrix swscale uses by
# default when PyAV converts rgb24 to yuv420p, so players convert back with the same matrix.
_SMPTE170M = 6
_LIMITED_RANGE = 1


class MediaError(AVStudioError):
    """A media file cannot be read or written; the message is meant for end users."""


@dataclass
class MediaInfo:
    """What :func:`probe` finds in a media file.

    ``duration`` is the container's duration (its longest stream) in seconds. Video fields
    are 0 / None when there is no video stream, audio fields when there is no audio stream.
    """

    path: str
    duration: float
    has_video: bool
    has_audio: bool
    fps: float = 0.0
    n_frames: int = 0
    width: int = 0
    height: int = 0
    video_codec: str | None = None
    audio_codec: str | None = None
    audio_sample_rate: int = 0
    audio_channels: int = 0


# ----------------------------------------------------------------------------- helpers


def _name(path: PathLike) -> str:
    return Path(path).name or str(path)


@contextlib.contextmanager
def _av_errors(path: PathLike, action: str = "read") -> Iterator[None]:
    """Turn PyAV/FFmpeg exceptions raised in the block into :class:`MediaError`."""
    try:
        yield
    except av.error.InvalidDataError as exc:
        raise MediaError(
            f"Could not {action} '{_name(path)}': not a media file PyAV can decode"
        ) from exc
    except av.FFmpegError as exc:
        raise MediaError(f"Could not {action} '{_name(path)}': {exc.strerror or exc}") from exc


def _open_input(path: PathLike) -> av.container.InputContainer:
    """Open a media file for reading, with clear errors for missing, empty or bad files."""
    p = Path(path)
    if not p.exists():
        raise MediaError(f"'{_name(path)}' does not exist")
    if not p.is_file():
        raise MediaError(f"'{_name(path)}' is not a file")
    if p.stat().st_size == 0:
        raise MediaError(f"'{_name(path)}' is empty (0 bytes)")
    with _av_errors(path):
        container = av.open(str(p), metadata_errors="replace")
    if _video_stream(container) is None and _audio_stream(container) is None:
        container.close()
        raise MediaError(f"Could not read '{_name(path)}': it has no audio or video stream")
    return container


def _video_stream(container: av.container.Container) -> av.video.stream.VideoStream | None:
    """The first real video stream (cover art in audio files does not count)."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def _audio_stream(container: av.container.Container) -> av.audio.stream.AudioStream | None:
    return container.streams.audio[0] if container.streams.audio else None


def _fps(stream: av.video.stream.VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else 0.0


def _frame_time(frame: av.frame.Frame) -> float | None:
    return float(frame.pts * frame.time_base) if frame.pts is not None else None


def _quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that show ``frame`` upright (its display rotation)."""
    return round(frame.rotation / 90) % 4


def _first_video_frame(path: PathLike) -> tuple[float, int] | None:
    """Time (s) and quarter turns of the first decodable video frame; None if there is none.

    Remembered per file (its path, size and modification time): probing, reading the audio and seeking all
    need it, a pipeline does all three on one file, and each look decodes a frame (26 ms at 720p)."""
    try:
        st = os.stat(path)
    except OSError:  # _open_input says why, as a MediaError
        return _decode_first_video_frame(path)
    return _first_video_frame_of(os.path.realpath(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _first_video_frame_of(path: str, size: int, mtime_ns: int) -> tuple[float, int] | None:
    return _decode_first_video_frame(path)


def _decode_first_video_frame(path: PathLike) -> tuple[float, int] | None:
    with _open_input(path) as container, _av_errors(path, "decode"):
        stream = _video_stream(container)
        if stream is None:
            return None
        for frame in container.decode(stream):
            time = _frame_time(frame)
            return (0.0 if time is None else time), _quarter_turns(frame)
    return None


def _check_range(start: float, end: float | None) -> None:
    if start < 0:
        raise MediaError(f"start must be >= 0, got {start}")
    if end is not None and end < start:
        raise MediaError(f"end ({end}) must not be before start ({start})")


# ----------------------------------------------------------------------------- probing


def probe(path: PathLike) -> MediaInfo:
    """Describe a media file: duration, streams, codecs, frame rate and frame count.

    ``fps`` is the stream's average (or guessed) frame rate, exact for rates such as
    30000/1001. ``n_frames`` comes from the container when it stores it; otherwise the video
    packets are counted by demuxing (no decoding). ``width`` and ``height`` are the size of
    the upright frames that :func:`read_video` returns (display rotation applied).
    """
    with _open_input(path) as container, _av_errors(path):
        video, audio = _video_stream(container), _audio_stream(container)
        duration = container.duration / av.time_base if container.duration else None
        info = MediaInfo(path=str(path), duration=0.0, has_video=video is not None,
                         has_audio=audio is not None)
        if video is not None:
            info.fps = _fps(video)
            info.n_frames = video.frames
            info.width, info.height = video.codec_context.width, video.codec_context.height
            info.video_codec = video.codec_context.name
            first = _first_video_frame(path)
            if first is not None and first[1] % 2:  # shown rotated by 90 degrees
                info.width, info.height = info.height, info.width
        if audio is not None:
            info.audio_codec = audio.codec_context.name
            info.audio_sample_rate = audio.codec_context.sample_rate
            info.audio_channels = audio.codec_context.channels
        if duration is None or (video is not None and info.n_frames <= 0):
            n_packets, end_time = _demux_extent(container, video)
            if video is not None and info.n_frames <= 0:
                info.n_frames = n_packets
            if duration is None:
                duration = end_time
        info.duration = float(duration)
    return info


def _demux_extent(container: av.container.InputContainer,
                  video: av.video.stream.VideoStream | None) -> tuple[int, float]:
    """Count the video packets and find the end time (s) of all streams by demuxing."""
    n_video, first, last = 0, None, 0.0
    for packet in container.demux():
        if packet.size == 0:
            continue
        if packet.stream is video:
            n_video += 1
        ts = packet.pts if packet.pts is not None else packet.dts
        if ts is None:
            continue
        start = float(ts * packet.time_base)
        first = start if first is None else min(first, start)
        last = max(last, start + float((packet.duration or 0) * packet.time_base))
    return n_video, (last - first if first is not None else 0.0)


# ----------------------------------------------------------------------------- video reading


def _open_video(path: PathLike) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    container = _open_input(path)
    stream = _video_stream(container)
    if stream is None:
        container.close()
        raise MediaError(f"'{_name(path)}' has no video stream")
    return container, stream


def _video_frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                  path: PathLike, start: float, end: float | None,
                  size: tuple[int, int] | None, lazy: bool = False) -> Iterator[tuple[int, float, np.ndarray]]:
    """Decode ``stream`` one frame at a time (see :func:`iter_video_frames`); closes
    ``container`` when done."""
    with container, _av_errors(path, "decode"):
        stream.thread_type = "AUTO"
        # One reformatter for the whole stream keeps its scaling context: frame.reformat() builds a new
        # one per frame, which costs more than decoding when downscaling (same pixels either way).
        reformatter = av.video.reformatter.VideoReformatter()
        fps = _fps(stream)
        first = _first_video_frame(path) if start > 0 else None
        if first is not None:  # seek close to start, measured from the first frame's time
            t0, frames = first[0], _decode_video_from(container, stream, first[0] + start)
        else:
            t0, frames = None, container.decode(stream)
        index, time = None, None
        for frame in frames:
            frame_time = _frame_time(frame)
            if frame_time is None:  # no timestamp: assume a constant frame rate
                frame_time = 0.0 if time is None else time + (1 / fps if fps else 0.0)
            time = frame_time
            if t0 is None:
                t0 = time
            rel = time - t0
            if rel < start - _TIME_EPS:
                continue
            if end is not None and rel >= end - _TIME_EPS:
                break
            # Count frames from the first one kept; after a seek, start from the nominal index.
            index = round(rel * fps) if index is None else index + 1
            if lazy:
                w, h = size if size is not None else \
                    ((frame.height, frame.width) if _quarter_turns(frame) % 2 else (frame.width, frame.height))
                yield index, rel, LazyFrame(lambda f=frame: _to_rgb(reformatter, f, size), (h, w, 3),
                                            None if size is not None else _luma_reader(frame))
            else:
                yield index, rel, _to_rgb(reformatter, frame, size)


def _to_rgb(reformatter: av.video.reformatter.VideoReformatter, frame: av.VideoFrame,
            size: tuple[int, int] | None) -> np.ndarray:
    """One decoded frame as an upright RGB array, resized to ``size`` (w, h) if given."""
    turns = _quarter_turns(frame)
    width, height = size if size is not None else (None, None)
    if turns % 2:  # resize to the transposed size, which the turn undoes
        width, height = height, width
    rgb = reformatter.reformat(frame, width=width, height=height, format="rgb24").to_ndarray()
    if turns:  # show it the way players do
        rgb = np.ascontiguousarray(np.rot90(rgb, turns))
    return rgb


# 8-bit formats whose first plane is the picture's luma at full resolution (YUV; libx264's and phones' output)
_LUMA_FORMATS = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray"}
_FULL_RANGE_FORMATS = {"yuvj420p", "yuvj422p", "yuvj444p", "gray"}
_JPEG_RANGE = 2  # AVCOL_RANGE_JPEG: the picture's luma already spans 0-255
_IDENTITY = np.arange(256, dtype=np.uint8)
_VIDEO_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)  # 16-235 -> 0-255


def _luma_reader(frame: av.VideoFrame):
    """A function returning ``frame``'s upright luma plane and its table (:meth:`LazyFrame.luma`), or None
    when the picture has no 8-bit luma plane."""
    if frame.format.name not in _LUMA_FORMATS:
        return None

    def luma() -> tuple[np.ndarray, np.ndarray]:
        plane = frame.planes[0]
        y = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width]
        turns = _quarter_turns(frame)
        full = frame.format.name in _FULL_RANGE_FORMATS or frame.color_range == _JPEG_RANGE
        return (np.ascontiguousarray(np.rot90(y, turns)) if turns else y), (_IDENTITY if full else _VIDEO_TO_FULL)

    return luma


def _decode_video_from(container: av.container.InputContainer,
                       stream: av.video.stream.VideoStream,
                       target: float) -> Iterator[av.VideoFrame]:
    """Decoded frames starting at or before the absolute time ``target`` (s).

    Seeks to the keyframe before ``target``; if the demuxer's seek lands after it (imprecise
    indexes in some AVI/MPEG files), decodes from the start of the file instead.
    """
    container.seek(int(target / stream.time_base), stream=stream, backward=True)
    frames = container.decode(stream)
    first = next(frames, None)
    first_time = _frame_time(first) if first is not None else None
    if first_time is not None and first_time <= target + _TIME_EPS:
        return itertools.chain([first], frames)
    container.seek(0)
    return container.decode(stream)


def iter_video_frames(path: PathLike, start: float = 0.0, end: float | None = None,
                      size: tuple[int, int] | None = None, lazy: bool = False
                      ) -> Iterator[tuple[int, float, np.ndarray]]:
    """Stream the video frames of ``path`` one at a time, in presentation order.

    Yields ``(frame_index, time_s, rgb)`` for frames with ``start <= time_s < end``, where
    ``time_s`` is relative to the first video frame, ``frame_index`` counts frames from the
    first one (after a seek to ``start > 0`` it begins at ``round(time_s * fps)``) and ``rgb``
    is an ``H x W x 3`` uint8 array, upright (the container's display rotation applied, as
    players do) and resized to ``size = (width, height)`` if given.
    The file is opened and checked at call time; decoding happens while iterating.

    ``lazy=True`` yields, instead of each array, a :class:`LazyFrame`: its ``shape``, and the array when
    ``np.asarray`` asks for it. A caller that looks at some frames only (the face tracker on every other
    frame) then pays no RGB conversion for the rest.
    """
    _check_range(start, end)
    container, stream = _open_video(path)
    return _video_frames(container, stream, path, start, end, size, lazy)


class LazyFrame:
    """A decoded video frame, converted to its RGB array (``H x W x 3`` uint8) by ``np.asarray`` (once; later
    calls return the same array). ``shape`` is known before; :meth:`luma` gives its grey without the RGB."""

    __slots__ = ("_convert", "_luma", "_rgb", "shape")

    def __init__(self, convert, shape: tuple[int, int, int], luma=None):
        self._convert, self._luma, self._rgb, self.shape = convert, luma, None, shape

    def __array__(self, dtype=None, copy=None):
        if self._rgb is None:
            self._rgb, self._convert = self._convert(), None
        rgb = self._rgb if dtype is None else self._rgb.astype(dtype, copy=False)
        return rgb.copy() if copy and rgb is self._rgb else rgb

    def luma(self) -> tuple[np.ndarray, np.ndarray]:
        """``(plane, table)``: the frame's grey is ``table[plane]``, ``H x W`` uint8, its luma in the RGB array's
        0-255 range. For a picture tagged BT.601 or untagged (FFmpeg's RGB conversion then uses BT.601 too) that is
        0.299 R + 0.587 G + 0.114 B within about a grey level; a picture tagged BT.709 (much HD video)
        gives BT.709's luma (0.2126 R + 0.7152 G + 0.0722 B), not converted.

        An 8-bit YUV picture (libx264's output, phones') gives its own luma plane, upright, possibly a
        read-only view, and the table that stretches video range (16-235) to 0-255: no RGB conversion is
        paid, and a caller that needs a small part of the frame looks the table up on that part only. Other
        pictures give the grey of the RGB array and the identity."""
        if self._luma is not None:
            return self._luma()
        import cv2  # here, not at the top: readers of this module need not load OpenCV

        return cv2.cvtColor(np.asarray(self), cv2.COLOR_RGB2GRAY), _IDENTITY


def read_video(path: PathLike, start: float = 0.0, end: float | None = None,
               size: tuple[int, int] | None = None,
               max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Decode the frames of ``path`` between ``start`` and ``end`` seconds.

    Returns ``(frames, fps)`` with frames an ``N x H x W x 3`` uint8 RGB array (at most
    ``max_frames`` of them) and fps the stream's frame rate.
    """
    _check_range(start, end)
    container, stream = _open_video(path)
    fps = _fps(stream)
    with contextlib.closing(_video_frames(container, stream, path, start, end, size)) as it:
        frames = [rgb for _, _, rgb in itertools.islice(it, max_frames)]
    if not frames:
        if size is None:
            info = probe(path)
            size = (info.width, info.height)
        return np.zeros((0, size[1], size[0], 3), np.uint8), fps
    return np.stack(frames), fps


# ----------------------------------------------------------------------------- audio reading


def _open_audio(path: PathLike) -> tuple[av.container.InputContainer,
                                         av.audio.stream.AudioStream, float | None]:
    """Open ``path`` for audio decoding.

    Also returns the reference time (s): the first video frame's time, or None for files
    without a (decodable) video stream, whose reference is their first audio sample.
    """
    container = _open_input(path)
    stream = _audio_stream(container)
    if stream is None:
        container.close()
        raise MediaError(f"'{_name(path)}' has no audio track")
    try:
        first = _first_video_frame(path) if _video_stream(container) else None
    except MediaError:
        container.close()
        raise
    return container, stream, (first[0] if first is not None else None)


def _audio_end(container: av.container.InputContainer,
               stream: av.audio.stream.AudioStream) -> float | None:
    """End time (s) of an MP4/MOV audio track as its edit list says, else None.

    The decoder returns the AAC encoder's padding after the last sample; the track's edit-list
    duration tells where the real signal ends. Other formats trim their padding themselves.
    """
    if "mp4" not in container.format.name or not stream.duration:
        return None
    return float(((stream.start_time or 0) + stream.duration) * stream.time_base)


def _audio_blocks(container: av.container.InputContainer, stream: av.audio.stream.AudioStream,
                  reference: float | None, path: PathLike, sr: int, start: float = 0.0,
                  n_max: int | None = None, mono: bool = True) -> Iterator[np.ndarray]:
    """Decode ``stream``, resample it to ``sr`` and yield float32 blocks in order.

    Blocks are ``(n,)`` if ``mono`` (mean of the channels) else ``(channels, n)``. The first
    sample yielded is at ``reference + start`` (``reference`` defaults to the first audio
    sample's time); at most ``n_max`` samples are yielded. Closes ``container`` when done.
    """
    with container, _av_errors(path, "decode"):
        end_time = _audio_end(container, stream)
        resampler, setup = None, None
        to_drop = None  # samples to discard before the first one yielded; None: not yet known
        remaining = n_max  # samples still to yield; None: no limit
        for frame in itertools.chain(container.decode(stream), [None]):
            blocks = []
            if frame is not None and to_drop is None:
                first_time = _frame_time(frame) or 0.0
                target = (first_time if reference is None else reference) + start
                offset = round((first_time - target) * sr)
                if offset > 0:  # audio starts after the reference: pad with silence
                    channels = frame.layout.nb_channels
                    blocks.append(np.zeros(offset if mono else (channels, offset), np.float32))
                to_drop = max(0, -offset)
                if end_time is not None:
                    limit = max(0, round((end_time - target) * sr))
                    remaining = limit if remaining is None else min(remaining, limit)
            key = None if frame is None else (frame.format.name, frame.layout.name,
                                              frame.sample_rate)
            if resampler is not None and key != setup:  # end of stream or format change
                blocks.extend(_resampled(resampler.resample(None), mono))
                resampler = None
            if frame is not None:
                if resampler is None:
                    resampler, setup = av.AudioResampler(format="fltp", rate=sr), key
                blocks.extend(_resampled(resampler.resample(frame), mono))
            for block in blocks:
                if to_drop:
                    dropped = min(to_drop, block.shape[-1])
                    block, to_drop = block[..., dropped:], to_drop - dropped
                if remaining is not None:
                    block = block[..., :remaining]
                    remaining -= block.shape[-1]
                if block.shape[-1]:
                    yield block
                if remaining == 0:
                    return


def _resampled(frames: list[av.AudioFrame], mono: bool) -> Iterator[np.ndarray]:
    for frame in frames:
        samples = frame.to_ndarray()  # planar float: (channels, n)
        yield samples.mean(axis=0) if mono else samples


def read_audio(path: PathLike, sr: int = 16000, start: float = 0.0, end: float | None = None,
               mono: bool = True) -> np.ndarray:
    """Decode the audio of ``path`` between ``start`` and ``end`` seconds, resampled to ``sr``.

    Returns float32 samples in [-1, 1]: shape ``(n,)`` (mean of the channels) if ``mono``,
    else ``(channels, n)``. Sample 0 is at ``start`` seconds after the first video frame, or
    after the first audio sample for audio-only files (see the module docstring). The result
    is shorter than ``end - start`` when the audio ends earlier. Decoding always starts at the
    beginning of the file (audio seeking is inexact in some formats) and stops at ``end``.
    """
    _check_range(start, end)
    container, stream, reference = _open_audio(path)
    channels = stream.codec_context.channels
    n_max = None if end is None else round((end - start) * sr)
    blocks = list(_audio_blocks(container, stream, reference, path, sr, start, n_max, mono))
    if not blocks:
        return np.zeros(0 if mono else (channels, 0), np.float32)
    return np.concatenate(blocks, axis=-1)


def iter_audio_chunks(path: PathLike, sr: int = 16000,
                      chunk_s: float = 10.0) -> Iterator[np.ndarray]:
    """Stream the mono audio of ``path`` at ``sr`` in float32 chunks of ``chunk_s`` seconds.

    Every chunk has ``round(chunk_s * sr)`` samples except the last, which may be shorter.
    Alignment is as in :func:`read_audio`; memory use is bounded by the chunk size. The file
    is opened and checked at call time; decoding happens while iterating.
    """
    size = round(chunk_s * sr)
    if size <= 0:
        raise MediaError(f"chunk_s must be positive, got {chunk_s}")
    container, stream, reference = _open_audio(path)
    return _rechunk(_audio_blocks(container, stream, reference, path, sr), size)


def _rechunk(blocks: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Regroup 1-D blocks into chunks of ``size`` samples (the last one may be shorter)."""
    with contextlib.closing(blocks):
        pending, n = [], 0
        for block in blocks:
            pending.append(block)
            n += len(block)
            if n >= size:
                data = np.concatenate(pending)
                while len(data) >= size:
                    yield data[:size]
                    data = data[size:]
                pending, n = [data], len(data)
        if n:
            yield np.concatenate(pending)


# ----------------------------------------------------------------------------- writing


def shift_audio(audio: np.ndarray, sr: int, delay_s: float) -> np.ndarray:
    """Delay (``delay_s > 0``) or advance (``delay_s < 0``) a signal, keeping its length.

    A delay prepends zeros and drops the end; an advance drops the start and appends zeros.
    Works on the last axis, so ``(n,)`` and ``(channels, n)`` arrays are both accepted.
    """
    audio = np.asarray(audio)
    n = audio.shape[-1]
    shift = min(abs(round(delay_s * sr)), n)
    out = np.zeros_like(audio)
    if delay_s > 0:
        out[..., shift:] = audio[..., : n - shift]
    else:
        out[..., : n - shift] = audio[..., shift:]
    return out


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def read_image(path: PathLike) -> np.ndarray:
    """(h, w, 3) RGB uint8 of a photo, upright as viewers show it (EXIF orientation applied)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return np.ascontiguousarray(np.asarray(ImageOps.exif_transpose(img).convert("RGB")))
    except UnidentifiedImageError as err:
        raise MediaError(f"'{_name(path)}' is not a readable image") from err
    except Image.DecompressionBombError as err:  # a few KB can declare billions of pixels
        raise MediaError(f"'{_name(path)}' has too many pixels to open safely") from err
    except OSError as err:
        raise MediaError(f"'{_name(path)}' is not a readable image: {err.strerror or 'truncated or damaged'}") from err


def fitted_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(w, h) scaled so that neither side exceeds ``max_side`` (aspect kept, even numbers for video
    encoders); the size itself when it already fits."""
    if max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(2, 2 * round(width * scale / 2)), max(2, 2 * round(height * scale / 2))


def fit_within(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` scaled down (area interpolation) so that neither side exceeds ``max_side``; itself if it fits."""
    import cv2

    h, w = image.shape[:2]
    size = fitted_size(w, h, max_side)
    return image if size == (w, h) else cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def write_audio(path: PathLike, audio: np.ndarray, sr: int) -> None:
    """Write ``audio`` (``(n,)`` or ``(channels, n)`` floats in [-1, 1]) as 16-bit PCM WAV."""
    audio = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    if audio.ndim not in (1, 2):
        raise MediaError(f"audio must be (n,) or (channels, n), got shape {audio.shape}")
    try:
        sf.write(str(path), audio.T, sr, subtype="PCM_16", format="WAV")
    except (sf.LibsndfileError, OSError) as exc:
        raise MediaError(f"Could not write '{_name(path)}': {exc}") from exc


def _mono_signal(audio: np.ndarray | PathLike, sr: int) -> np.ndarray:
    """A float32 mono signal at ``sr`` from an array or a media file (read with read_audio)."""
    if isinstance(audio, (str, os.PathLike)):
        return read_audio(audio, sr=sr)
    signal = np.asarray(audio, dtype=np.float32)
    if signal.ndim != 1:
        raise MediaError(f"audio must be a 1-D mono array, got shape {signal.shape}")
    return np.clip(signal, -1.0, 1.0)


def _frame_rate(fps: float | Fraction) -> Fraction:
    """Exact frame rate for ``fps``; rounded NTSC rates (29.97, 23.976, ...) become N*1000/1001."""
    rate = Fraction(fps).limit_denominator(1001)
    if rate <= 0:
        raise MediaError(f"fps must be positive, got {fps}")
    ntsc = Fraction(round(fps * Fraction(1001, 1000)) * 1000, 1001)
    if rate.denominator != 1 and abs(fps - ntsc) < 1e-3:
        return ntsc
    return rate


def _open_output(path: PathLike, fmt: str = "mp4") -> av.container.OutputContainer:
    return av.open(str(path), "w", format=fmt, options={"movflags": "+faststart"} if fmt in ("mp4", "mov") else {})


class _AacTrack:
    """An AAC (or 16-bit PCM) audio stream fed in step with the video, so that the two are interleaved.

    The signal is treated as followed by silence: :meth:`write_until` encodes it up to a time
    (s, 0 = first video frame), padding with zeros past its end, and samples beyond the last
    requested time are never written.
    """

    def __init__(self, out: av.container.OutputContainer, signal: np.ndarray, sr: int,
                 start_time: float = 0.0, pcm: bool = False):
        if not pcm and sr not in av.codec.Codec("aac", "w").audio_rates:
            raise MediaError(f"AAC cannot encode audio at {sr} Hz; use e.g. 16000, 22050, "
                             "44100 or 48000")
        self.out, self.signal, self.sr, self.pcm = out, signal, sr, pcm
        self.stream = out.add_stream("pcm_s16le" if pcm else "aac", rate=sr, layout="mono")
        self.first_pts = round(start_time * sr)
        self.pos = 0

    def write_until(self, time: float) -> None:
        stop = round(time * self.sr)
        if stop <= self.pos:
            return
        chunk = np.zeros(stop - self.pos, np.float32)
        available = self.signal[self.pos:stop]
        chunk[: len(available)] = available
        if self.pcm:
            pcm16 = np.round(np.clip(chunk, -1.0, 1.0) * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(pcm16[None, :], format="s16", layout="mono")
        else:
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
        frame.sample_rate = self.sr
        frame.time_base = Fraction(1, self.sr)
        frame.pts = self.first_pts + self.pos
        self.out.mux(self.stream.encode(frame))
        self.pos = stop

    def finish(self, time: float) -> None:
        self.write_until(time)
        self.out.mux(self.stream.encode(None))


# libx264's settings for every video written (benchmarks/performance.py: encoder; docs/performance.md). "superfast"
# with veryfast's macroblock tree and 10-frame lookahead kept: 1.4-1.9 times as fast as "veryfast" for 0.02-0.08 dB
# less PSNR. The tree and the lookahead are what keep still areas still: without them ("superfast", "ultrafast"
# as they come) a still textured clip gains motion and a false visual beat, and a still background is
# re-encoded on every frame.
ENCODER_PRESET, ENCODER_CRF, ENCODER_PARAMS = "superfast", 20, "mbtree=1:rc-lookahead=10"


def _rgb_frame(rgb: np.ndarray, index: int, shape: tuple[int, ...]) -> av.VideoFrame:
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.shape != shape:
        raise MediaError(f"frame {index} is {rgb.dtype} {rgb.shape}; expected uint8 {shape} "
                         "like the first frame")
    height, width = shape[:2]
    if height % 2 or width % 2:  # yuv420p needs even sizes: repeat the last row/column
        rgb = np.pad(rgb, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    import cv2  # here, not at the top: readers of this module need not load OpenCV

    # OpenCV's RGB -> I420 is BT.601 limited range, what the stream is tagged with (SMPTE 170M), and twice as
    # fast as the encoder's own conversion at 1080p (docs/performance.md)
    return av.VideoFrame.from_ndarray(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420),
                                      format="yuv420p")


T = TypeVar("T")
PREFETCH = 8  # items a prefetch() producer may run ahead: a few frames, not the video


def prefetch(items: Iterable[T], depth: int = PREFETCH) -> Iterator[T]:
    """``items``, produced ahead in a background thread, at most ``depth`` of them waiting.

    Chained prefetches let decoding, per-frame work and encoding overlap on several cores, as far as their
    heavy parts (FFmpeg, OpenCV, torch, MediaPipe) leave the GIL free; docs/performance.md measures what it
    gains. An exception in the producer is raised here, after the items produced before it. When the consumer
    stops early, the producer stops at its next item, and ``items`` is closed in its thread (a decoder's file
    with it).
    """
    waiting: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    end = object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                waiting.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        source = iter(items)
        try:
            for item in source:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as err:  # noqa: BLE001 -- any error is handed to the consumer, raised there
            put((end, err))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, err = waiting.get()
            if item is end:
                if err is not None:
                    raise err
                return
            yield item
    finally:
        stop.set()
        thread.join()


def write_video(path: PathLike, frames: Iterable[np.ndarray], fps: float,
                audio: np.ndarray | PathLike | None = None, sr: int = 16000,
                crf: int = ENCODER_CRF, preset: str = ENCODER_PRESET, x264_params: str = ENCODER_PARAMS) -> None:
    """Encode RGB frames (and optionally a mono audio track) into an H.264/AAC MP4 file.

    ``frames`` is any iterable (a generator is fine) of ``H x W x 3`` uint8 arrays, all the
    size of the first; odd sizes are padded to even. ``fps`` may be fractional (29.97 is
    stored as 30000/1001). ``audio`` is a float32 mono array at ``sr`` Hz (or a media file to
    read at ``sr``); it starts with the first frame and is cut or padded with silence to the
    video duration ``n_frames / fps``. ``crf``, ``preset`` and ``x264_params`` (``key=value:...``, may be
    empty) are libx264's quality and speed settings.
    """
    rate = _frame_rate(fps)
    signal = None if audio is None else _mono_signal(audio, sr)
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise MediaError(f"Could not write '{_name(path)}': no video frames were given")
    shape = np.asarray(first).shape
    if len(shape) != 3 or shape[2] != 3:
        raise MediaError(f"frames must be H x W x 3 RGB arrays, got shape {shape}")
    with _av_errors(path, "write"), _open_output(path) as out:
        video = out.add_stream("libx264", rate=rate,
                               options={"crf": str(crf), "preset": preset,
                                        **({"x264-params": x264_params} if x264_params else {})})
        video.width, video.height = shape[1] + shape[1] % 2, shape[0] + shape[0] % 2
        video.pix_fmt = "yuv420p"
        ctx = video.codec_context
        ctx.colorspace = ctx.color_primaries = ctx.color_trc = _SMPTE170M
        ctx.color_range = _LIMITED_RANGE
        track = _AacTrack(out, signal, sr) if signal is not None else None
        for index, rgb in enumerate(itertools.chain([first], frames)):
            frame = _rgb_frame(rgb, index, shape)
            frame.pts, frame.time_base = index, 1 / rate
            out.mux(video.encode(frame))
            if track is not None:
                track.write_until((index + 1) / rate)
        out.mux(video.encode(None))
        if track is not None:
            track.finish((index + 1) / rate)


def mux_audio(video_path: PathLike, out_path: PathLike, audio: np.ndarray | PathLike,
              sr: int = 16000, delay_s: float = 0.0) -> PathLike:
    """Replace the audio of a video: copy its video stream unchanged and add ``audio``.

    The video packets are copied without re-encoding into ``out_path``: an MP4 file with AAC
    audio, or, when ``out_path`` ends in ``.mkv`` or ``.mov``, that container with lossless
    16-bit PCM audio (no codec delay at all: what shifted test clips need).
    ``audio`` is a float32 mono array at ``sr`` Hz or a media file (read with
    :func:`read_audio`). Its first sample plays with the first video frame, moved by
    ``delay_s`` (> 0: later, < 0: earlier), and it is cut or padded with silence to the video
    duration (frame count / fps). Returns ``out_path``.
    """
    if Path(out_path).resolve() == Path(video_path).resolve():
        raise MediaError(f"Cannot write '{_name(out_path)}' over its own input")
    info = probe(video_path)
    if not info.has_video:
        raise MediaError(f"'{_name(video_path)}' has no video stream")
    first = _first_video_frame(video_path)
    if first is None:
        raise MediaError(f"'{_name(video_path)}' has no decodable video frames")
    t0 = first[0]
    duration = info.n_frames / info.fps if info.n_frames and info.fps else info.duration
    n_out = round(duration * sr)
    signal = _mono_signal(audio, sr)
    # Fit to the video, plus what an advance will drop, then shift and cut to the video.
    advance = max(0, -round(delay_s * sr))
    fitted = np.zeros(n_out + advance, np.float32)
    fitted[: min(len(signal), len(fitted))] = signal[: len(fitted)]
    signal = shift_audio(fitted, sr, delay_s)[:n_out]

    with _open_input(video_path) as source, _av_errors(video_path, "copy the video of"):
        in_video = _video_stream(source)
        suffix = Path(out_path).suffix.lower()
        formats = {".mkv": "matroska", ".mov": "mov", ".mp4": "mp4", ".m4v": "mp4"}
        if suffix not in formats:
            raise MediaError(f"Cannot write '{_name(out_path)}': use .mp4 (AAC) or .mkv / .mov (PCM)")
        pcm = suffix in (".mkv", ".mov")
        with _av_errors(out_path, "write"), _open_output(out_path, formats[suffix]) as out:
            out_video = out.add_stream_from_template(in_video)
            track = _AacTrack(out, signal, sr, start_time=t0, pcm=pcm)
            for packet in source.demux(in_video):
                if packet.size == 0:  # the demuxer's end-of-stream marker
                    continue
                ts = packet.dts if packet.dts is not None else packet.pts
                if ts is not None:
                    track.write_until(float(ts * packet.time_base) - t0)
                packet.stream = out_video
                out.mux(packet)
            track.finish(duration)
    return out_path
