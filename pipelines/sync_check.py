"""Sync check (spec 04): how far a talking-face video's audio is off its picture, and the fix.

SyncNet's offset search with the bundled three-stage discriminator (models.syncnet): the audio is
shifted against the picture by -15..+15 frames; for each shift the mean embedding distance over all
5-frame windows gives the distance curve. ``offset_frames`` is the shift at the curve's minimum,
``min_dist`` that minimum (LSE-D) and ``confidence`` the median minus the minimum (LSE-C).
Sign convention: ``offset_frames = k > 0`` means the audio is k frames EARLY (it leads the
picture); delaying the audio by k frames re-syncs it (``--out``).

    python -m pipelines.sync_check VIDEO [--out RESYNCED.mp4] [--model DIR_OR_HUB_ID] [--max-seconds S] [--json]
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from media.face import NoFaceError
from media.features import (
    SAMPLE_RATE,
    SYNC_VIDEO_FPS,
    SYNC_VIDEO_FRAMES,
    is_silent,
    loudness_per_frame,
)
from media.io import (
    iter_video_frames,
    mux_audio,
    probe,
    read_audio,
    shift_audio,
    write_video,
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
    resolve_bfloat16,
    resolve_max_seconds,
    run_cli,
    settings,
    timed,
)

if TYPE_CHECKING:
    from models.syncnet import SyncNet

# models.syncnet (and torch) is imported where it is used: it is most of a cold command's start-up
MAX_SHIFT = 15  # frames at 25 fps, as SyncNet's LSE-D / LSE-C
MAX_SHIFT_SECONDS = MAX_SHIFT / SYNC_VIDEO_FPS  # the same +/-0.6 s at any frame rate
# Below this confidence the minimum of the curve is not trusted (no fix is written). Measured with the
# bundled model: 16 of 18 real held-out clips score above it, 5 of 18 faces given another clip's audio do.
MIN_CONFIDENCE = 0.05
# The face mesh looks at every TRACK_EVERY-th frame; the crops' boxes between are interpolated (the lips are
# cut from every frame). On 70 held-out cases the offsets found are as good as with every frame or every other
# frame, and every 4th frame loses some (benchmarks/results/offset_recovery*.json; docs/performance.md).
TRACK_EVERY = 3
# The discriminator runs in bfloat16 (torch.autocast) where the CPU computes it natively: a third of its time,
# the same offsets on 70 held-out cases (benchmarks/results/offset_recovery.json; docs/performance.md). None:
# where the CPU computes it natively (pipelines.common.resolve_bfloat16); False: always float32.
NETWORK_BFLOAT16: bool | None = None


class SyncCheckError(AVStudioError):
    """Input the Sync check cannot score; the message is meant for the user."""


@dataclass(kw_only=True)
class SyncResult(PipelineOutput):
    """The offset search's outcome; ``output_path`` is the re-synced video when one was asked for and written
    (``problem`` says why not otherwise)."""

    offset_frames: int
    offset_ms: float
    confidence: float  # LSE-C
    min_dist: float  # LSE-D
    fps: float
    n_frames: int
    face_frames: int
    reliable: bool = True  # confidence >= the threshold
    baseline_offset_frames: int | None = None
    shifts: np.ndarray = field(repr=False)
    curve: np.ndarray = field(repr=False)
    frame_confidence: np.ndarray = field(repr=False)

    def summary(self, paths: bool = True) -> dict:
        """JSON-ready fields, with the distance curve as {shift: distance} (no per-frame arrays)."""
        return {**super().summary(paths),
                "curve": {str(int(s)): round(float(d), 4) for s, d in zip(self.shifts, self.curve)}}

    def verdict(self) -> str:
        """One sentence: in sync, early or late, or no reliable signal."""
        if not self.reliable:
            return (f"No reliable lip-sync signal (confidence {self.confidence:.3f} < {MIN_CONFIDENCE}): the face may "
                    f"not be speaking, or the audio may not belong to it. Best guess: {self.offset_frames:+d} frames.")
        if self.offset_frames == 0:
            return f"In sync (confidence {self.confidence:.3f})."
        lead = "early (leads the picture)" if self.offset_frames > 0 else "late (lags the picture)"
        return (f"Audio is {abs(self.offset_frames)} frame(s) = {abs(self.offset_ms):.0f} ms {lead}; "
                f"confidence {self.confidence:.3f}.")

    def facts(self) -> str:
        """What was measured, in one sentence."""
        return (f"{self.face_frames}/{self.n_frames} frames with a face, {self.duration_s:.1f} s at {self.fps:.2f} fps; "
                f"LSE-D {self.min_dist:.3f}, LSE-C {self.confidence:.3f}.")

    def message(self) -> str:
        return f"{self.verdict()} {self.facts()}"


def load_model(dir_or_repo: str | Path | None = None) -> SyncNet:
    """The discriminator, loaded once per process: the bundled one, AVSTUDIO_SYNC_CHECK, or ``dir_or_repo``
    (a folder or Hugging Face Hub repo id)."""
    from models.syncnet import SyncNet

    return load_pretrained(SyncNet, str(dir_or_repo or settings().sync_check), "sync discriminator",
                           prepare=fold_batchnorm)


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


def check_sync(video: str | Path, *, out_path: str | Path | None = None, model: SyncNet | None = None,
               max_seconds: float | None = None, progress: Progress | None = None,
               max_shift_seconds: float = MAX_SHIFT_SECONDS, min_confidence: float = MIN_CONFIDENCE,
               with_baseline: bool = False) -> SyncResult:
    """Score the lip sync of ``video`` (with its own audio track); with ``out_path``, also write the
    re-synced video there.

    Shifts of up to ``max_shift_seconds`` (0.6 s: +/-15 frames at 25 fps) are searched. The re-synced
    video is written only when the result is reliable; otherwise, or if writing fails, the scores are
    still returned and ``problem`` says why there is no video. Raises SyncCheckError (an AVStudioError)
    with a user-facing message for input it cannot score.
    """
    say = progress or (lambda f, m: None)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    video = Path(video)
    out = None if out_path is None else prepare_out_path(out_path, SyncCheckError)  # refused before any work
    model = loaded(model, load_model, say)
    # 1. check the file: a picture, a sound track, not too long, not too short, not silent
    say(0.0, "reading the video")
    with timed(timings, "reading"):
        info, audio = _read_clip(video, resolve_max_seconds(max_seconds))
    # 2. track the face and cut the lower-face crops; audio features
    from models.syncnet import TooFewWindows, prepare_clip, sync_score

    with timed(timings, "face_tracking"):
        try:
            x = prepare_clip(video, audio=audio, progress=lambda f: say(0.05 + 0.75 * f, "tracking the face"),
                             track_every=1 if with_baseline else TRACK_EVERY)  # the baseline reads every frame
        except NoFaceError as err:
            raise SyncCheckError(f"no face found in '{video.name}': the Sync check needs a visible face") from err
    # 3. the offset search
    say(0.8, "comparing audio and lips")
    max_shift = max(1, round(max_shift_seconds * x.fps))
    with timed(timings, "offset_search"):
        try:
            res = sync_score(model, x.gray, x.found, x.mel, x.fps, max_shift, bfloat16=use_bfloat16())
        except TooFewWindows as err:  # no window with a face, or the clip is too short
            raise SyncCheckError(f"'{video.name}': {err}") from err
    result = SyncResult(
        offset_frames=res["offset_frames"], offset_ms=res["offset_frames"] * 1000.0 / x.fps,
        confidence=res["confidence"], min_dist=res["min_dist"], fps=x.fps, duration_s=info.duration,
        n_frames=len(x.found), face_frames=int(x.found.sum()), shifts=res["shifts"], curve=res["curve"],
        frame_confidence=res["frame_confidence"], reliable=res["confidence"] >= min_confidence,
        baseline_offset_frames=baseline_offset(x.mouth_opening, x.audio, x.fps, max_shift) if with_baseline else None,
        timings=timings)
    # 4. the re-synced video, when asked for and the offset can be trusted
    if out_path is not None:
        if not result.reliable:
            result.problem = "no re-synced video: the offset is not reliable enough to act on"
        elif result.offset_frames == 0:
            result.notes.append("Already in sync: no re-synced video is needed.")
        else:
            say(0.9, "writing the re-synced video")
            with timed(timings, "writing"):
                try:
                    result.output_path = resync(video, result.offset_frames, x.fps, out)
                except AVStudioError as err:  # the scores are kept; only the file is missing
                    result.problem = f"could not write the re-synced video: {err}"
    timings["total"] = time.perf_counter() - t_start
    say(1.0, "done")
    return result


def use_bfloat16() -> bool:
    """Whether the network runs in bfloat16: NETWORK_BFLOAT16, resolved by pipelines.common.resolve_bfloat16."""
    return resolve_bfloat16(NETWORK_BFLOAT16)


def _read_clip(video: Path, max_seconds: float):
    """(probe info, 16 kHz mono audio) of a clip the check can score, or SyncCheckError saying why not."""
    name = video.name
    check_files([video], SyncCheckError)
    info = probe(video)  # MediaError (an AVStudioError) for unreadable files
    if not info.has_video:
        raise SyncCheckError(f"'{name}' has no video stream: upload a video of a talking face")
    if not info.has_audio:
        raise SyncCheckError(f"'{name}' has no audio track: nothing to check the lips against")
    if info.duration > max_seconds:
        raise SyncCheckError(f"'{name}' is {info.duration:.0f} s long; the limit is {max_seconds:.0f} s "
                             "(set AVSTUDIO_MAX_SECONDS or --max-seconds to change it)")
    if info.n_frames < SYNC_VIDEO_FRAMES * info.fps / SYNC_VIDEO_FPS:
        raise SyncCheckError(f"'{name}' is too short ({info.n_frames} frames): the check needs at least 0.2 s")
    audio = read_audio(video, sr=SAMPLE_RATE)
    if is_silent(audio):
        raise SyncCheckError(f"the audio track of '{name}' is silent: nothing to check the lips against")
    return info, audio


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
    a.set_title("distance over shifts", fontsize=9)
    b.set_title("confidence per frame", fontsize=9)
    fig.tight_layout()
    return fig


def _add_arguments(ap) -> None:
    ap.add_argument("video", help="a talking-face video with its sound")
    ap.add_argument("--min-confidence", type=float, default=MIN_CONFIDENCE,
                    help="below this confidence the result is flagged unreliable and no re-synced video is written")
    ap.add_argument("--baseline", action="store_true", help="also report the non-learned baseline's offset")


def _run(args, progress: Progress) -> SyncResult:
    return check_sync(args.video, out_path=args.out, model=cli_model(args, progress, load_model),
                      max_seconds=args.max_seconds,
                      progress=progress, min_confidence=args.min_confidence, with_baseline=args.baseline)


def main(argv=None) -> int:
    return run_cli(argv, name="sync_check", description="How far a talking-face video's audio is off its lips.",
                   add_arguments=_add_arguments, run=_run, out_required=False,
                   out_help="write the re-synced video here (.mp4), when the offset is reliable")


if __name__ == "__main__":
    sys.exit(main())
