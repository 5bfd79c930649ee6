"""Real-time factor of the Sync check on this CPU, split into decoding, face tracking and the model.

The clip (default: a 10 s talking-face clip) is processed stage by stage as the pipeline does (one decoding
pass that tracks the face, the mesh on every ``TRACK_EVERY``-th frame, and cuts the crops), each timed; the
real-time factor is time / clip duration (target: under 0.5 in all). The end-to-end
``check_sync`` call is timed too, and every figure is also given as a ratio to plain decoding
of the same clip (every frame to RGB, and the audio) measured in the same run, which cancels out the speed
of the machine.

    python -m benchmarks.sync_check [VIDEO] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from media.face import track_and_crop_gray
from media.features import SAMPLE_RATE, log_mel
from media.io import iter_video_frames, probe, read_audio
from models.provenance import save_results
from models.syncnet import CROP_SIZE, normalize_mel, sync_score
from pipelines.common import settings
from pipelines.sync_check import TRACK_EVERY, check_sync, load_model, use_bfloat16

DEFAULT_CLIP = "talking_video/pcavs_Audio_Source_681100216.mp4"


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    media = Path(os.environ.get("AVSTUDIO_MEDIA", "../shared/media"))
    ap.add_argument("video", nargs="?", type=Path, default=media / DEFAULT_CLIP)
    ap.add_argument("--repeat", type=int, default=3, help="take the fastest of N runs")
    ap.add_argument("--model", default=None, help="discriminator folder or Hub id (default: the Sync check's)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/sync_check.json"))
    args = ap.parse_args(argv)
    duration = probe(args.video).duration
    where = args.model or settings().sync_check
    model = load_model(where)
    runs = []
    for _ in range(args.repeat):
        n_frames, t_video = timed(lambda: sum(1 for _ in iter_video_frames(args.video)))
        audio, t_audio = timed(lambda: read_audio(args.video, sr=SAMPLE_RATE))
        (track, crops, fps), t_track = timed(lambda: track_and_crop_gray(args.video, "lower", CROP_SIZE,
                                                                         every=TRACK_EVERY))
        mel, t_mel = timed(lambda: normalize_mel(log_mel(audio)))  # noqa: B023 (timed calls it at once)
        _, t_model = timed(lambda: sync_score(model, crops, track.found, mel, fps,  # noqa: B023
                                              bfloat16=use_bfloat16()))
        _, t_total = timed(lambda: check_sync(args.video, model=model))
        runs.append({"decode": t_video + t_audio, "face_tracking": t_track, "audio_features": t_mel,
                     "model": t_model, "check_sync_end_to_end": t_total})
    best = {k: min(r[k] for r in runs) for k in runs[0]}
    rtf = {k: v / duration for k, v in best.items()}
    vs_decode = {k: v / best["decode"] for k, v in best.items()}
    result = {"clip": str(args.video.name), "duration_s": duration, "frames": n_frames, "fps": fps,
              "threads": torch.get_num_threads(), "bfloat16": use_bfloat16(), "track_every": TRACK_EVERY,
              "cpu_count": os.cpu_count(), "seconds": best,
              "real_time_factor": rtf, "ratio_to_decoding": vs_decode, "target_rtf": 0.5,
              "meets_target": rtf["check_sync_end_to_end"] < 0.5}
    save_results(args.out, result, module=__spec__.name, argv=argv, weights={"syncnet": where})
    print(f"{args.video.name}: {duration:.2f} s, {n_frames} frames, {os.cpu_count()} CPU cores")
    for k, v in best.items():
        print(f"  {k:24s} {v:7.3f} s   RTF {rtf[k]:.3f}   x{vs_decode[k]:.1f} decoding")
    print(f"end-to-end real-time factor {rtf['check_sync_end_to_end']:.3f} (target < 0.5): "
          f"{'met' if result['meets_target'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
