"""Real-time factor of the lip-sync pipeline on this CPU for a 256 x 256 face video, split into its parts.

The face video (default: a 256 x 256, 25 fps talking clip) is lip-synced to its own length of
speech from another speaker; the pipeline times preprocessing (decoding, face tracking, mouth
blur, crops), the network and the rest (encoding, muxing). Real-time factor = time / output
duration (target <= 1.0). As a machine-independent figure each part is also given as a ratio to
a plain decode + re-encode of the same clip, measured in the same run.

    python -m benchmarks.lipsync [FACE] [--speech SPEECH] [--repeat 2]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from media.features import SAMPLE_RATE
from media.io import iter_video_frames, probe, read_audio, write_audio, write_video
from models.provenance import save_results
from pipelines import lipsync as ls
from pipelines.common import settings

DEFAULT_FACE = "talking_video/paired_audio/edtalk_mouth_source.mp4"  # 256 x 256, 25 fps, 10 s
DEFAULT_SPEECH = "talking_video/pcavs_Audio_Source_741400104.mp4"  # another speaker, 12 s


def measure(face: Path, speech_file: Path, model, repeat: int = 2) -> dict:
    """The pipeline's parts on ``face`` lip-synced to as much of ``speech_file`` as the face video lasts,
    the fastest of ``repeat`` runs, beside a plain decode + re-encode of the same clip in the same run."""
    info = probe(face)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        speech = read_audio(speech_file, sr=SAMPLE_RATE)[: int(info.n_frames / info.fps * SAMPLE_RATE)]
        wav = tmp / "speech.wav"
        write_audio(wav, speech, SAMPLE_RATE)
        base, runs = [], []
        for _ in range(repeat):
            t = time.perf_counter()
            write_video(tmp / "copy.mp4", (f for _, _, f in iter_video_frames(face)), info.fps, audio=speech)
            base.append(time.perf_counter() - t)
            result = ls.lipsync(face, wav, out_path=tmp / "out.mp4", model=model)
            runs.append(result.timings)
    best = min(runs, key=lambda r: r["total"])
    duration = result.duration_s
    transcode = min(base)
    parts = {k: best[k] for k in ("preprocessing", "network", "encoding_and_decoding", "total")}
    return {"face": str(face.name), "size": [info.width, info.height], "fps": info.fps, "seconds": duration,
            "threads": os.cpu_count(), "network_bfloat16": ls.use_bfloat16(), "plain_transcode_s": transcode,
            "parts_s": parts, "real_time_factor": {k: v / duration for k, v in parts.items()},
            "x_plain_transcode": {k: v / transcode for k, v in parts.items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    media = Path(os.environ.get("AVSTUDIO_MEDIA", "../shared/media"))
    ap.add_argument("face", nargs="?", type=Path, default=media / DEFAULT_FACE)
    ap.add_argument("--speech", type=Path, default=media / DEFAULT_SPEECH)
    ap.add_argument("--repeat", type=int, default=2, help="take the fastest of N runs")
    ap.add_argument("--model", default=None, help="lip-sync model folder or Hub id (default: the pipeline's)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/lipsync_speed.json"))
    args = ap.parse_args(argv)

    where = args.model or settings().lipsync
    model = ls.load_model(where)
    out = measure(args.face, args.speech, model, args.repeat)
    info, duration, transcode, parts = probe(args.face), out["seconds"], out["plain_transcode_s"], out["parts_s"]
    save_results(args.out, out, module=__spec__.name, argv=argv, weights={"lipsync": where})
    print(f"{args.face.name}: {info.width}x{info.height}, {duration:.1f} s at {info.fps:g} fps")
    print(f"  {'part':24s} {'seconds':>8s} {'RTF':>7s} {'x transcode':>12s}")
    for k, v in parts.items():
        print(f"  {k:24s} {v:8.2f} {v / duration:7.3f} {v / transcode:12.2f}")
    print(f"  {'plain decode+encode':24s} {transcode:8.2f} {transcode / duration:7.3f} {1.0:12.2f}")
    return 0 if np.isfinite(parts["total"]) else 1


if __name__ == "__main__":
    sys.exit(main())
