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
import os
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from media.features import SAMPLE_RATE, loudness_envelope, frame_to_mel
from media.io import MediaError, mux_audio, probe, read_audio
from models.syncnet import DEFAULT_WEIGHTS, SyncNet, prepare_clip, sync_score

MAX_SHIFT = 15
DEFAULT_MAX_SECONDS = float(os.environ.get("AVSTUDIO_MAX_SECONDS", 120))


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
    baseline_offset_frames: int | None = None
    fixed_path: str | None = None

    def summary(self) -> dict:
        """JSON-ready metadata (without the per-frame arrays)."""
        return {"offset_frames": self.offset_frames, "offset_ms": round(self.offset_ms, 1),
                "confidence": round(self.confidence, 4), "min_dist": round(self.min_dist, 4),
                "fps": round(self.fps, 3), "duration": round(self.duration, 3), "n_frames": self.n_frames,
                "face_frames": self.face_frames, "baseline_offset_frames": self.baseline_offset_frames,
                "curve": {str(int(s)): round(float(d), 4) for s, d in zip(self.shifts, self.curve)},
                "fixed_path": self.fixed_path}

    def verdict(self) -> str:
        if self.offset_frames == 0:
            return f"In sync (confidence {self.confidence:.3f})."
        lead = "early (leads the picture)" if self.offset_frames > 0 else "late (lags the picture)"
        return (f"Audio is {abs(self.offset_frames)} frame(s) = {abs(self.offset_ms):.0f} ms {lead}; "
                f"confidence {self.confidence:.3f}.")


@lru_cache(maxsize=4)
def load_model(dir_or_repo: str = str(DEFAULT_WEIGHTS)) -> SyncNet:
    """The discriminator, loaded once per process (bundled weights unless a folder/Hub id is given)."""
    return SyncNet.from_pretrained(dir_or_repo)


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
    env = 10.0 ** (loudness_envelope(audio, SAMPLE_RATE).astype(np.float64) / 20.0)
    bounds = np.clip(frame_to_mel(np.arange(len(opening) + 1), fps), 0, len(env) - 1)
    loud = np.array([env[a:b + 1].mean() for a, b in zip(bounds[:-1], bounds[1:])])
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
               max_seconds: float = DEFAULT_MAX_SECONDS, max_shift: int = MAX_SHIFT, with_baseline: bool = False,
               progress=None) -> SyncResult:
    """Score the lip sync of ``video`` (with its own audio track); optionally write the re-synced video.

    ``progress(fraction, message)`` is called as work advances. Raises SyncCheckError (or
    media.io.MediaError) with a user-facing message for input it cannot score.
    """
    def report(frac, msg):
        if progress is not None:
            progress(frac, msg)

    video = str(video)
    report(0.0, "reading")
    info = probe(video)  # MediaError for unreadable / empty files
    if not info.has_video:
        raise SyncCheckError(f"'{Path(video).name}' has no video stream: upload a video of a talking face")
    if not info.has_audio:
        raise SyncCheckError(f"'{Path(video).name}' has no audio track: nothing to check the lips against")
    if info.duration > max_seconds:
        raise SyncCheckError(f"'{Path(video).name}' is {info.duration:.0f} s long; the limit is {max_seconds:.0f} s "
                             "(set AVSTUDIO_MAX_SECONDS or --max-seconds to change it)")
    try:
        x = prepare_clip(video, progress=lambda f: report(0.05 + 0.75 * f, "tracking the face"))
    except MediaError:
        raise
    except ValueError as err:
        raise SyncCheckError(f"no face found in '{Path(video).name}': the Sync check needs a visible face") from err
    if float(np.max(np.abs(x.audio), initial=0.0)) < 1e-4:
        raise SyncCheckError(f"the audio track of '{Path(video).name}' is silent")
    model = model or load_model()
    report(0.8, "comparing audio and lips")
    try:
        res = sync_score(model, x.gray, x.found, x.mel, x.fps, max_shift)
    except ValueError as err:
        raise SyncCheckError(f"'{Path(video).name}': {err}") from err
    result = SyncResult(
        offset_frames=res["offset_frames"], offset_ms=res["offset_frames"] * 1000.0 / x.fps,
        confidence=res["confidence"], min_dist=res["min_dist"], fps=x.fps, duration=info.duration,
        n_frames=len(x.found), face_frames=int(x.found.sum()), shifts=res["shifts"], curve=res["curve"],
        frame_confidence=res["frame_confidence"],
        baseline_offset_frames=baseline_offset(x.mouth_opening, x.audio, x.fps, max_shift) if with_baseline else None,
    )
    if fix_path is not None:
        report(0.9, "writing the re-synced video")
        result.fixed_path = resync(video, result.offset_frames, x.fps, fix_path)
    report(1.0, "done")
    return result


def resync(video: str | Path, offset_frames: int, fps: float, out: str | Path) -> str:
    """Delay the audio of ``video`` by ``offset_frames`` (negative: advance); the picture is copied."""
    sr = probe(video).audio_sample_rate or SAMPLE_RATE
    audio = read_audio(video, sr=sr)
    return str(mux_audio(video, out, audio, sr=sr, delay_s=offset_frames / fps))


def plot_curve(result: SyncResult):
    """Matplotlib figure: distance over shifts (minimum marked) and per-frame confidence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.2))
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
    ap.add_argument("--baseline", action="store_true", help="also report the non-learned baseline's offset")
    args = ap.parse_args(argv)
    from tqdm import tqdm

    bar = tqdm(total=100, desc="sync check", unit="%", file=sys.stderr)

    def progress(frac, msg):
        bar.set_description(msg)
        bar.update(int(frac * 100) - bar.n)

    try:
        result = check_sync(args.video, load_model(args.model), args.fix, args.max_seconds,
                            with_baseline=args.baseline, progress=progress)
    except ValueError as err:  # SyncCheckError and MediaError
        bar.close()
        print(f"error: {err}", file=sys.stderr)
        if args.json:
            print(json.dumps({"error": str(err)}))
        return 2
    bar.close()
    if args.json:
        print(json.dumps(result.summary()))
    else:
        print(result.verdict())
        print(f"offset {result.offset_frames:+d} frames ({result.offset_ms:+.0f} ms), LSE-C {result.confidence:.3f}, "
              f"LSE-D {result.min_dist:.3f}, {result.face_frames}/{result.n_frames} frames with a face")
        if result.fixed_path:
            print(f"re-synced video: {result.fixed_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
