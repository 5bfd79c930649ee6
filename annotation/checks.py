"""Checks on the media of the annotation suite: files an admin imports, hums an annotator records.

* :func:`check_media` vets one file of a task being imported: inside the media root, present, the right kind
  of stream, not too long (from the declared duration, before any decoding) and decodable to the end, so
  that a truncated upload is refused at import rather than discovered by an annotator.
* :func:`check_hum` vets a microphone recording uploaded by the browser (webm/opus from MediaRecorder, ogg,
  mp4 or wav), decoded from memory: size, length, silence (refused) and clipping (a warning: the annotator
  may retake it).
* :func:`hum_track_similarity` and :func:`hum_disagrees` compare the melody of a hum with music tracks
  (pitch-class profiles), to flag Pair labels whose hum does not match the track chosen.

Refusals raise :class:`AnnotationError` with one line meant for the person who caused it; messages name a
file by the path it was given relative to the media root, never by a server path.
"""
from __future__ import annotations

import collections
import hashlib
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np
from scipy.signal import resample_poly

from annotation.errors import AnnotationError
from media.io import _video_stream
from media.mix import frame_rms_db

__all__ = ["HUM_SR", "HumCheck", "ImportRefusal", "check_hum", "check_media", "hum_disagrees", "hum_profile",
           "hum_track_similarity", "track_profile"]

PathLike = str | os.PathLike

# check_media: a stream that decodes this much short of its declared duration is truncated (s, share).
TRUNCATION_TOLERANCE_S, TRUNCATION_TOLERANCE_SHARE = 0.5, 0.05
# Most packets kept to decode the end of a stream: the last keyframe and what follows it (video), or the
# last packets (audio). A longer group of pictures is decoded up to this many packets.
_TAIL_PACKETS = 300
_AUDIO_TAIL_PACKETS = 32

# check_hum
HUM_SR = 16000  # HumCheck.audio's sample rate
SILENCE_DBFS = -45.0  # below this RMS (whole recording, or a 30 ms frame) is silence
MIN_VOICED_SHARE = 0.05  # less than this share of non-silent frames: a silent recording
CLIP_LEVEL, CLIP_SHARE = 0.99, 0.005  # more than 0.5 % of samples at |x| >= 0.99: clipped

# similarity
MAX_ANALYSIS_S = 30.0  # only the first 30 s of a hum or a track are compared
_HOP = 512  # analysis hop at HUM_SR (32 ms)


class ImportRefusal(NamedTuple):
    """A file refused while importing a task, with the one-line reason shown to the admin."""

    path: str
    reason: str


# ------------------------------------------------------------------------------------------------
# check_media
# ------------------------------------------------------------------------------------------------
def _clock(seconds: float) -> str:
    """``seconds`` as ``H:MM:SS`` (an hour or more) or ``M:SS``."""
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _span(seconds: float) -> str:
    """A limit in words: ``10 min``, ``1 h 30 min``, ``90 s``."""
    if seconds >= 60 and float(seconds).is_integer() and seconds % 60 == 0:
        h, m = divmod(int(seconds) // 60, 60)
        return " ".join(part for part in (f"{h} h" if h else "", f"{m} min" if m else "") if part)
    return f"{seconds:g} s"


def _short_reason(exc: Exception) -> str:
    if isinstance(exc, av.error.InvalidDataError):
        return "invalid data (damaged, truncated or not a media file)"
    if isinstance(exc, av.FFmpegError):
        return (exc.strerror or str(exc)).rstrip(".").lower()
    return str(exc) or type(exc).__name__


def _locate(path: PathLike, media_root: PathLike) -> tuple[str, Path]:
    """The label to show for ``path`` and the file it resolves to inside ``media_root``."""
    root = Path(media_root).resolve()
    given = Path(path)
    full = given if given.is_absolute() else root / given
    label = given.as_posix()
    if given.is_absolute():  # show it relative to the root when it lies inside, else by its name only
        label = full.relative_to(root).as_posix() if full.is_relative_to(root) else given.name
    try:
        resolved = full.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise AnnotationError(f"'{label}': the path cannot be resolved (symlink loop?)") from None
    if not resolved.is_relative_to(root):
        raise AnnotationError(f"'{label}': outside the media root")
    if not resolved.exists():
        raise AnnotationError(f"'{label}': file not found")
    if not resolved.is_file():
        raise AnnotationError(f"'{label}': not a file")
    if resolved.stat().st_size == 0:
        raise AnnotationError(f"'{label}': the file is empty (0 bytes)")
    return label, resolved


def _declared_duration(container: av.container.InputContainer, stream: av.stream.Stream) -> float | None:
    """The stream's duration as the container states it (s), else the container's; None if neither."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _frame_end(frame: av.frame.Frame, stream: av.stream.Stream) -> float | None:
    """End time (s) of a decoded frame: its time plus one frame (video) or its samples (audio)."""
    if frame.pts is None:
        return None
    start = float(frame.pts * (frame.time_base or stream.time_base))
    if isinstance(frame, av.AudioFrame):
        return start + frame.samples / frame.sample_rate
    rate = stream.average_rate or stream.guessed_rate
    return start + (1 / float(rate) if rate else 0.0)


def _decode_packets(stream: av.stream.Stream, packets, flush: bool) -> list[av.frame.Frame]:
    frames = []
    for packet in packets:
        frames.extend(stream.decode(packet))
    if flush:
        frames.extend(stream.decode(None))
    return frames


def _scan(container: av.container.InputContainer, stream: av.stream.Stream,
          max_seconds: float) -> tuple[float | None, float | None, float, bool]:
    """Demux every packet of ``stream`` (decoding only its first frames and its last group of pictures).

    Returns ``(start, decoded_end, demuxed_end, too_long)`` in seconds: the first packet's time, the end of
    the last frame decoded at the end of the stream, the end of the last packet demuxed, and whether the
    stream went on past ``start + max_seconds`` (demuxing stops there).
    """
    is_video = stream.type == "video"
    tail = collections.deque(maxlen=None if is_video else _AUDIO_TAIL_PACKETS)
    head_decoded, start, demuxed_end = False, None, 0.0
    for packet in container.demux(stream):
        if packet.size == 0:  # the end-of-stream marker
            continue
        ts = packet.pts if packet.pts is not None else packet.dts
        if ts is not None:
            t = float(ts * packet.time_base)
            start = t if start is None else min(start, t)
            demuxed_end = max(demuxed_end, t + float((packet.duration or 0) * packet.time_base))
            if demuxed_end - start > max_seconds + 1:
                return start, None, demuxed_end, True
        if not head_decoded:  # the first frame must decode: the codec works and the stream starts well
            head_decoded = bool(_decode_packets(stream, [packet], flush=False))
        if is_video and packet.is_keyframe:
            tail.clear()
        if len(tail) < _TAIL_PACKETS:
            tail.append(packet)
    stream.codec_context.flush_buffers()
    ends = [_frame_end(frame, stream) for frame in _decode_packets(stream, tail, flush=True)]
    ends = [end for end in ends if end is not None]
    if not (head_decoded or ends):
        return start, None, demuxed_end, False
    decoded_end = max(ends) if ends else None
    if len(tail) >= _TAIL_PACKETS and decoded_end is not None:  # a long group of pictures: trust the demuxer
        decoded_end = demuxed_end
    return start, decoded_end, demuxed_end, False


def check_media(path: PathLike, kind: str, *, media_root: PathLike, max_seconds: float) -> float:
    """Vet one media file of a task being imported; return its duration in seconds.

    ``path`` is relative to ``media_root`` (or absolute); ``kind`` is ``"video"`` or ``"audio"``. Raises
    :class:`AnnotationError` with a one-line reason when the path resolves (symlinks followed) outside the
    media root, the file is missing or empty, it does not open or decode, it has no stream of that kind
    ("no video track" / "no audio track"), its declared duration is above ``max_seconds``, or the stream
    stops well before the duration it declares (a truncated upload).

    Cost: the duration check reads the container's header only, so a 10-hour file is refused without
    decoding it. Accepted files are demuxed in full (no decoding) and decoded at their start and over their
    last group of pictures (or last audio packets); a file with no declared duration is demuxed until it
    passes ``max_seconds``.
    """
    if kind not in ("video", "audio"):
        raise AnnotationError(f"unknown media kind {kind!r}: use 'video' or 'audio'")
    label, file = _locate(path, media_root)

    def refuse(reason: str) -> AnnotationError:
        return AnnotationError(f"'{label}': {reason}")

    try:
        container = av.open(str(file), metadata_errors="replace")
    except (av.FFmpegError, OSError) as exc:
        raise refuse(f"does not decode: {_short_reason(exc)}") from None
    with container:
        stream = _video_stream(container) if kind == "video" else next(iter(container.streams.audio), None)
        if stream is None:
            raise refuse(f"no {kind} track")
        declared = _declared_duration(container, stream)
        if declared is not None and declared > max_seconds:
            raise refuse(f"{_clock(declared)} long; the limit is {_span(max_seconds)}")
        stream.thread_type = "AUTO"
        try:
            start, decoded_end, demuxed_end, too_long = _scan(container, stream, max_seconds)
        except (av.FFmpegError, OSError) as exc:
            raise refuse(f"does not decode: {_short_reason(exc)}") from None
    if too_long:
        raise refuse(f"more than {_clock(max_seconds)} long; the limit is {_span(max_seconds)}")
    if start is None or decoded_end is None:
        raise refuse(f"does not decode: no {kind} frames")
    decoded = decoded_end - start
    if declared is None:
        declared = demuxed_end - start
    if declared > max_seconds:
        raise refuse(f"{_clock(declared)} long; the limit is {_span(max_seconds)}")
    if declared - decoded > max(TRUNCATION_TOLERANCE_S, TRUNCATION_TOLERANCE_SHARE * declared):
        raise refuse(f"truncated: decodes {decoded:.1f} s of the {declared:.1f} s it declares")
    return round(declared, 3)


# ------------------------------------------------------------------------------------------------
# check_hum
# ------------------------------------------------------------------------------------------------
@dataclass
class HumCheck:
    """What :func:`check_hum` found in an accepted recording."""

    sha256: str  # of the uploaded bytes
    size: int  # bytes
    duration_s: float
    sample_rate: int  # of the recording as uploaded
    rms_dbfs: float  # over the whole recording (DC removed)
    clipped_fraction: float  # share of samples at |x| >= CLIP_LEVEL
    warnings: list[str] = field(default_factory=list)  # problems worth a retake, not a refusal
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)  # mono, HUM_SR
    ext: str = ""  # the container, as a file extension: "webm", "ogg", "wav", "mp4", ...


def _container_ext(format_name: str, data: bytes) -> str:
    """A file extension for a container PyAV detected (``format_name``) in ``data``."""
    names = format_name.split(",")
    if "matroska" in names or "webm" in names:
        return "webm" if b"webm" in data[:64] else "mkv"
    if "mp4" in names or "mov" in names:
        return "mp4"
    return names[0]


def _decode_recording(data: bytes, max_seconds: float) -> tuple[np.ndarray, int, str]:
    """Decode the first audio stream of ``data``: ``(samples, sample_rate, ext)`` with ``samples`` a
    ``(channels, n)`` float32 array, at most ``max_seconds + 1`` seconds of it."""
    with av.open(io.BytesIO(data), metadata_errors="replace") as container:
        if not container.streams.audio:
            raise AnnotationError("the recording has no audio track")
        stream = container.streams.audio[0]
        ext = _container_ext(container.format.name, data)
        blocks, n, rate, resampler, setup = [], 0, None, None, None
        for frame in container.decode(stream):
            rate = rate or frame.sample_rate
            key = (frame.format.name, frame.layout.name, frame.sample_rate)
            if resampler is None or key != setup:  # the first frame, or a format change
                if resampler is not None:
                    blocks.extend(f.to_ndarray() for f in resampler.resample(None))
                resampler, setup = av.AudioResampler(format="fltp", layout=frame.layout.name, rate=rate), key
            for out in resampler.resample(frame):
                blocks.append(out.to_ndarray())
                n += blocks[-1].shape[-1]
            if n > (max_seconds + 1) * rate:
                break
        if resampler is not None:
            blocks.extend(f.to_ndarray() for f in resampler.resample(None))
    if not blocks:
        raise AnnotationError("the recording does not decode: no audio in it")
    channels = min(block.shape[0] for block in blocks)
    return np.concatenate([block[:channels] for block in blocks], axis=-1), rate, ext


def check_hum(data: bytes, *, max_bytes: int = 5_000_000, max_seconds: float = 30.0,
              min_seconds: float = 1.0) -> HumCheck:
    """Vet a hum recorded in the browser and uploaded as ``data`` (webm/opus, ogg, mp4/aac, wav, ...).

    Raises :class:`AnnotationError` when the upload is empty or larger than ``max_bytes``, does not decode,
    is shorter than ``min_seconds`` or longer than ``max_seconds``, or is silent (RMS below -45 dBFS, or
    fewer than 5 % of its 30 ms frames above that: "the recording is silent: check the microphone").
    Clipping (more than 0.5 % of samples at full scale) is returned in ``warnings``, not refused: the user
    may retake it. Decoding stops after ``max_seconds + 1`` s, so a small file declaring hours costs little.
    """
    size = len(data)
    if not size:
        raise AnnotationError("the recording is empty")
    if size > max_bytes:
        raise AnnotationError(f"the recording is too big ({size / 1e6:.1f} MB; the limit is "
                              f"{max_bytes / 1e6:g} MB)")
    try:
        samples, rate, ext = _decode_recording(bytes(data), max_seconds)
    except av.FFmpegError as exc:
        raise AnnotationError(f"the recording does not decode: {_short_reason(exc)}") from None
    duration = samples.shape[-1] / rate
    if duration > max_seconds:
        raise AnnotationError(f"the recording is too long (over {max_seconds:g} s; the limit is "
                              f"{max_seconds:g} s)")
    if duration < min_seconds:
        raise AnnotationError(f"the recording is too short ({duration:.1f} s; at least {min_seconds:g} s)")

    clipped = float(np.mean(np.max(np.abs(samples), axis=0) >= CLIP_LEVEL))
    mono = samples.mean(axis=0, dtype=np.float64)
    mono -= mono.mean()  # a microphone's DC offset is not sound
    rms_dbfs = 10 * math.log10(float(np.mean(mono * mono)) + 1e-20)
    voiced = float(np.mean(frame_rms_db(mono, rate, 0.03, 0.03) >= SILENCE_DBFS))
    if rms_dbfs < SILENCE_DBFS or voiced < MIN_VOICED_SHARE:
        raise AnnotationError("the recording is silent: check the microphone")
    warnings = []
    if clipped > CLIP_SHARE:
        warnings.append(f"{100 * clipped:.1f}% of the samples are clipped: the recording is too loud. "
                        "Retake it further from the microphone.")
    ratio = Fraction(HUM_SR, rate)
    audio = resample_poly(mono, ratio.numerator, ratio.denominator) if rate != HUM_SR else mono
    return HumCheck(sha256=hashlib.sha256(data).hexdigest(), size=size, duration_s=round(duration, 3),
                    sample_rate=int(rate), rms_dbfs=round(rms_dbfs, 2), clipped_fraction=round(clipped, 5),
                    warnings=warnings, audio=np.clip(audio, -1, 1).astype(np.float32), ext=ext)


# ------------------------------------------------------------------------------------------------
# melody similarity
# ------------------------------------------------------------------------------------------------
def _analysis_signal(x: np.ndarray, sr: int) -> np.ndarray:
    """The first MAX_ANALYSIS_S seconds of mono ``x`` at HUM_SR, as float32."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise AnnotationError(f"expected a 1-D mono signal, got shape {x.shape}")
    x = x[: round(MAX_ANALYSIS_S * sr)]
    if sr != HUM_SR:
        ratio = Fraction(HUM_SR, int(sr))
        x = resample_poly(x, ratio.numerator, ratio.denominator)
    return x.astype(np.float32)


def hum_profile(hum: np.ndarray, sr: int) -> np.ndarray:
    """12-bin pitch-class profile (C, C#, ..., B) of a hum, summing to 1 (all zeros if nothing is voiced).

    The pitch comes from ``librosa.pyin`` (65-1000 Hz, 32 ms hops, 20-cent grid) over the first 30 s; each
    voiced frame adds its voicing probability to the pitch class of its nearest semitone, after removing
    the hum's own tuning offset (a singer need not be tuned to A = 440 Hz).
    """
    import librosa

    x = _analysis_signal(hum, sr)
    if len(x) < 1024:
        return np.zeros(12)
    f0, voiced, prob = librosa.pyin(x, fmin=65.0, fmax=1000.0, sr=HUM_SR, frame_length=1024, hop_length=_HOP,
                                    resolution=0.2)
    keep = voiced & np.isfinite(f0)
    if not keep.any():
        return np.zeros(12)
    midi = librosa.hz_to_midi(f0[keep])
    tuning = librosa.pitch_tuning(f0[keep]) if keep.sum() > 1 else 0.0
    classes = np.round(midi - tuning).astype(int) % 12
    profile = np.bincount(classes, weights=prob[keep], minlength=12)
    return profile / profile.sum() if profile.sum() > 0 else profile


def track_profile(track: np.ndarray, sr: int) -> np.ndarray:
    """12-bin chroma profile (C, C#, ..., B) of a music track: ``librosa.feature.chroma_cqt`` (tuning
    estimated from the track) summed over the first 30 s, so louder passages weigh more; sums to 1."""
    import librosa

    x = _analysis_signal(track, sr)
    if len(x) < _HOP or not np.any(x):
        return np.zeros(12)
    chroma = librosa.feature.chroma_cqt(y=x, sr=HUM_SR, hop_length=_HOP, norm=None)
    profile = chroma.sum(axis=1)
    return profile / profile.sum() if profile.sum() > 0 else profile


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.clip(a @ b / norm, 0.0, 1.0)) if norm > 0 else 0.0


def hum_track_similarity(hum: np.ndarray, track: np.ndarray, sr: int) -> float:
    """Melody similarity in [0, 1] of a hum and a music track, both mono at ``sr`` Hz: the cosine of the
    hum's pitch-class profile (:func:`hum_profile`) and the track's chroma profile (:func:`track_profile`).

    It compares which notes are used, not their order, and is not transposition-invariant: a hum in
    another key than the track scores low. 0 when the hum has no voiced frames.
    """
    return round(_cosine(hum_profile(hum, sr), track_profile(track, sr)), 4)


def hum_disagrees(hum: np.ndarray, chosen_track: np.ndarray, other_tracks: Sequence[np.ndarray], sr: int, *,
                  margin: float = 0.1) -> tuple[bool, dict]:
    """Whether a Pair label's hum disagrees with the track chosen for it.

    True when the chosen track's similarity to the hum is the lowest of all the candidates shown and
    more than ``margin`` below the best one: a sign of a random pick. Returns ``(flag, scores)`` with
    ``scores = {"chosen": s, "others": [s, ...], "best": s, "margin": margin}``.
    """
    return profiles_disagree(hum_profile(hum, sr), track_profile(chosen_track, sr),
                             [track_profile(t, sr) for t in other_tracks], margin=margin)


def profiles_disagree(hum: np.ndarray, chosen: np.ndarray, others: Sequence[np.ndarray], *,
                      margin: float = 0.1) -> tuple[bool, dict]:
    """:func:`hum_disagrees` on profiles already computed (:func:`hum_profile`, :func:`track_profile`), so
    that a track shown in many items is analysed once."""
    chosen = round(_cosine(hum, chosen), 4)
    others = [round(_cosine(hum, t), 4) for t in others]
    best = max([chosen, *others])
    flag = bool(others) and chosen <= min(others) and best - chosen > margin
    return flag, {"chosen": chosen, "others": others, "best": best, "margin": margin}
