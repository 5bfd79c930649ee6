"""Sync check (spec 04): how far a talking-face video's audio is off its picture, and the fix.

SyncNet's offset search with the bundled three-stage discriminator (models.syncnet): the audio is
shifted against the picture by -15..+15 frames; for each shift the mean embedding distance over all
5-frame windows gives the distance curve. ``offset_frames`` is the shift at the curve's minimum,
``min_dist`` that minimum (LSE-D) and ``confidence`` the median minus the minimum (LSE-C).
Sign convention: ``offset_frames = k > 0`` means the audio is k frames EARLY (it leads the
picture); delaying the audio by k frames re-syncs it (``--fix``).

    python -m pipelines.sync_check VIDEO [--json] [--fix OUT.mp4] [--model DIR_OR_HUB_ID]
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from media.face import NoFaceError
from media.features import SAMPLE_RATE, is_silent, loudness_per_frame
from media.io import (
    MediaError,
    iter_video_frames,
    mux_audio,
    probe,
    read_audio,
    shift_audio,
    write_video,
)
from models.syncnet import (
    DEFAULT_WEIGHTS,
    VIDEO_FPS,
    VIDEO_FRAMES,
    SyncNet,
    prepare_clip,
    sync_score,
)
from pipelines.common import (
    DEFAULT_MAX_SECONDS,
    cli_error,
    cli_progress,
    load_pretrained,
)

MAX_SHIFT = 15  # frames at 25 fps, as SyncNet's LSE-D / LSE-C
MAX_SHIFT_SECONDS = MAX_SHIFT / VIDEO_FPS  # the same +/-0.6 s at any frame rate
# Below this confidence the minimum of the curve is not trusted (no fix is written). Measured with the
# bundled model: 16 of 18 real held-out clips score above it, 5 of 18 faces given another clip's audio do.
MIN_CONFIDENCE = 0.05




class SyncCheckError(ValueError):
    """Input the Sync check cannot score; the message is meant for the user."""


@dataclass
class SyncResult:
    offset_frames: int
    offset_ms: float
    confidence: float  # LSE-C
    min_dist: float  # LSE-D
    fps: float
    duration: float
    n_frames: int
    face_frames: int
    shifts: np.ndarray = field(repr=False)
    curve: np.ndarray = field(repr=False)
    frame_confidence: np.ndarray = field(repr=False)
    reliable: bool = True  # confidence >= the threshold
    baseline_offset_frames: int | None = None
    fixed_path: str | None = None
    fix_error: str | None = None  # why the re-synced video was not written

    def summary(self) -> dict:
        """JSON-ready metadata (without the per-frame arrays)."""
        return {"offset_frames": self.offset_frames, "offset_ms": round(self.offset_ms, 1),
                "confidence": round(self.confidence, 4), "min_dist": round(self.min_dist, 4),
                "fps": round(self.fps, 3), "duration": round(self.duration, 3), "n_frames": self.n_frames,
                "face_frames": self.face_frames, "baseline_offset_frames": self.baseline_offset_frames,
                "reliable": self.reliable,
                "curve": {str(int(s)): round(float(d), 4) for s, d in zip(self.shifts, self.curve)},
                "fixed_path": self.fixed_path, "fix_error": self.fix_error}

    def verdict(self) -> str:
        if not self.reliable:
            return (f"No reliable lip-sync signal (confidence {self.confidence:.3f} < {MIN_CONFIDENCE}): the face may "
                    f"not be speaking, or the audio may not belong to it. Best guess: {self.offset_frames:+d} frames.")
        if self.offset_frames == 0:
            return f"In sync (confidence {self.confidence:.3f})."
        lead = "early (leads the picture)" if self.offset_frames > 0 else "late (lags the picture)"
        return (f"Audio is {abs(self.offset_frames)} frame(s) = {abs(self.offset_ms):.0f} ms {lead}; "
                f"confidence {self.confidence:.3f}.")


def load_model(dir_or_repo: str = str(DEFAULT_WEIGHTS)) -> SyncNet:
    """The model, loaded once per process (bundled weights unless a folder or Hub repo id is given)."""
    return load_pretrained(SyncNet, str(dir_or_repo), SyncCheckError, "sync model")


def baseline_offset(mouth_opening: np.ndarray, audio: np.ndarray, fps: float, max_shift: int = MAX_SHIFT) -> int:
    """Non-learned baseline: cross-correlate mouth opening with the audio loudness envelope.

    Mouth opening (inner-lip gap over eye-to-mouth distance, from the face landmarks) and the RMS
    loudness (linear, averaged over each frame's interval) are sampled at the video frames; their
    frame-to-frame changes are z-scored and correlated for shifts -max_shift..max_shift (same sign
    convention as the model: k > 0 = audio early). Changes rather than levels: onsets line up,
    while the levels of a mouth and a voice drift independently (measured on the held-out clips:
    53 % of cases within +/-1 frame with changes, 13 % with levels).
    """
    opening = np.asarray(mouth_opening, dtype=np.float64)
    ok = np.isfinite(opening)
    if ok.sum() < 2 * max_shift:
        raise SyncCheckError("too few frames with a face for the baseline")
    t = np.arange(len(opening))
    opening = np.interp(t, t[ok], opening[ok])
    loud = loudness_per_frame(audio, len(opening), fps)
    opening, loud = np.diff(opening, prepend=opening[0]), np.diff(loud, prepend=loud[0])
    opening = (opening - opening.mean()) / (opening.std() + 1e-9)
    loud = (loud - loud.mean()) / (loud.std() + 1e-9)
    best, best_corr = 0, -np.inf
    for k in range(-max_shift, max_shift + 1):
        # video frame i matches audio frame i - k
        i = np.arange(max(0, k), min(len(opening), len(loud) + k))
        corr = float(np.mean(opening[i] * loud[i - k])) if len(i) else -np.inf
        if corr > best_corr:
            best, best_corr = k, corr
    return best


def check_sync(video: str | Path, model: SyncNet | None = None, fix_path: str | Path | None = None,
               max_seconds: float = DEFAULT_MAX_SECONDS, max_shift_seconds: float = MAX_SHIFT_SECONDS,
               min_confidence: float = MIN_CONFIDENCE, with_baseline: bool = False, progress=None) -> SyncResult:
    """Score the lip sync of ``video`` (with its own audio track); optionally write the re-synced video.

    Shifts of up to ``max_shift_seconds`` (0.6 s: +/-15 frames at 25 fps) are searched. The
    re-synced video is written only when the result is reliable; if writing fails, the result is
    still returned, with ``fix_error`` saying why. ``progress(fraction, message)`` is called as work
    advances. Raises SyncCheckError (or media.io.MediaError) with a user-facing message for input
    it cannot score.
    """
    def report(frac, msg):
        if progress is not None:
            progress(frac, msg)

    video = str(video)
    name = Path(video).name
    report(0.0, "reading")
    info = probe(video)  # MediaError for unreadable / empty files
    if not info.has_video:
        raise SyncCheckError(f"'{name}' has no video stream: upload a video of a talking face")
    if not info.has_audio:
        raise SyncCheckError(f"'{name}' has no audio track: nothing to check the lips against")
    if info.duration > max_seconds:
        raise SyncCheckError(f"'{name}' is {info.duration:.0f} s long; the limit is {max_seconds:.0f} s "
                             "(set AVSTUDIO_MAX_SECONDS or --max-seconds to change it)")
    if info.n_frames < VIDEO_FRAMES * info.fps / VIDEO_FPS:
        raise SyncCheckError(f"'{name}' is too short ({info.n_frames} frames): the check needs at least 0.2 s")
    audio = read_audio(video, sr=SAMPLE_RATE)
    if is_silent(audio):
        raise SyncCheckError(f"the audio track of '{name}' is silent: nothing to check the lips against")
    model = model or load_model()
    try:
        x = prepare_clip(video, audio=audio, progress=lambda f: report(0.05 + 0.75 * f, "tracking the face"))
    except NoFaceError as err:
        raise SyncCheckError(f"no face found in '{name}': the Sync check needs a visible face") from err
    report(0.8, "comparing audio and lips")
    max_shift = max(1, round(max_shift_seconds * x.fps))
    try:
        res = sync_score(model, x.gray, x.found, x.mel, x.fps, max_shift)
    except ValueError as err:
        raise SyncCheckError(f"'{name}': {err}") from err
    result = SyncResult(
        offset_frames=res["offset_frames"], offset_ms=res["offset_frames"] * 1000.0 / x.fps,
        confidence=res["confidence"], min_dist=res["min_dist"], fps=x.fps, duration=info.duration,
        n_frames=len(x.found), face_frames=int(x.found.sum()), shifts=res["shifts"], curve=res["curve"],
        frame_confidence=res["frame_confidence"], reliable=res["confidence"] >= min_confidence,
        baseline_offset_frames=baseline_offset(x.mouth_opening, x.audio, x.fps, max_shift) if with_baseline else None,
    )
    if fix_path is not None:
        if not result.reliable:
            result.fix_error = "no re-synced video: the offset is not reliable enough to act on"
        else:
            report(0.9, "writing the re-synced video")
            try:
                result.fixed_path = resync(video, result.offset_frames, x.fps, fix_path)
            except MediaError as err:  # the scores are kept; only the file is missing
                result.fix_error = f"could not write the re-synced video: {err}"
    report(1.0, "done")
    return result


def resync(video: str | Path, offset_frames: int, fps: float, out: str | Path) -> str:
    """Delay the audio of ``video`` by ``offset_frames`` (negative: advance), as mono AAC in mp4.

    An H.264 picture is copied packet for packet; any other codec (MPEG-4 Part 2, HEVC, VP9, ...)
    is re-encoded to H.264 so that browsers can play the result.
    """
    info = probe(video)
    sr = info.audio_sample_rate or SAMPLE_RATE
    audio = read_audio(video, sr=sr)
    if info.video_codec == "h264" and Path(out).suffix.lower() == ".mp4":
        return str(mux_audio(video, out, audio, sr=sr, delay_s=offset_frames / fps))
    frames = (frame for _, _, frame in iter_video_frames(video))
    write_video(out, frames, fps, audio=shift_audio(audio, sr, offset_frames / fps), sr=sr)
    return str(out)


def plot_curve(result: SyncResult):
    """Matplotlib figure: distance over shifts (minimum marked) and per-frame confidence.

    A bare ``Figure`` (not registered with pyplot), so that a server making one per request
    does not accumulate them.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.2))
    a, b = fig.subplots(1, 2)
    a.plot(result.shifts, result.curve, marker="o", ms=3)
    a.axvline(result.offset_frames, color="tab:red", ls="--", label=f"offset {result.offset_frames:+d}")
    a.set_xlabel("shift k (frames; k > 0: audio early)")
    a.set_ylabel("mean embedding distance")
    a.legend()
    t = np.arange(len(result.frame_confidence)) / result.fps
    b.plot(t, result.frame_confidence, lw=1)
    b.set_xlabel("time (s)")
    b.set_ylabel("per-frame confidence")
    fig.tight_layout()
    return fig


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Lip-sync offset and confidence of a talking-face video (spec 04)")
    ap.add_argument("video")
    ap.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    ap.add_argument("--fix", metavar="OUT.mp4", help="write the re-synced video here")
    ap.add_argument("--model", default=str(DEFAULT_WEIGHTS), help="model folder or Hugging Face Hub repo id")
    ap.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS)
    ap.add_argument("--min-confidence", type=float, default=MIN_CONFIDENCE,
                    help="below this confidence the result is flagged unreliable and no fix is written")
    ap.add_argument("--baseline", action="store_true", help="also report the non-learned baseline's offset")
    args = ap.parse_args(argv)
    bar, progress = cli_progress("sync check")

    try:
        result = check_sync(args.video, load_model(args.model), args.fix, args.max_seconds,
                            min_confidence=args.min_confidence, with_baseline=args.baseline, progress=progress)
    except ValueError as err:  # SyncCheckError and MediaError
        return cli_error(bar, err, args.json)
    bar.close()
    if args.json:
        print(json.dumps(result.summary()))
    else:
        print(result.verdict())
        print(f"offset {result.offset_frames:+d} frames ({result.offset_ms:+.0f} ms), LSE-C {result.confidence:.3f}, "
              f"LSE-D {result.min_dist:.3f}, {result.face_frames}/{result.n_frames} frames with a face")
        if result.fixed_path:
            print(f"re-synced video: {result.fixed_path}")
    if result.fix_error:
        print(f"error: {result.fix_error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
