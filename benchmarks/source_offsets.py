"""Where each source's recordings sit: the offset every talking clip reads at, unshifted, per model.

Offset accuracy on held-out clips assumes the held-out recordings are in sync. This reads every
talking clip of ``AVSTUDIO_MEDIA/talking_video`` (own audio, or the side-car .wav of the same
name) as it is, with each given model (default: the bundled one) and the non-learned baseline,
and summarises per source. Comparing a model that was trained on a source with one that held it
out shows how far apart the sources' own zero points are.

    python -m benchmarks.source_offsets          # the Sync check's discriminator and the independent judge
    python -m benchmarks.source_offsets --model bundled=models/weights/syncnet lrs2_out=runs/syncnet_lrs2/final
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from media.face import NoFaceError
from media.features import SAMPLE_RATE, log_mel
from media.io import MediaError
from models.provenance import save_results, shown_path
from models.syncnet import (
    DEFAULT_WEIGHTS,
    SyncNet,
    embed_video_windows,
    normalize_mel,
    prepare_clip,
    sync_score,
)
from pipelines.sync_check import SyncCheckError, baseline_offset

JUDGE = DEFAULT_WEIGHTS.parent / "syncnet_judge"


def talking_clips(root: Path) -> list[tuple[Path, Path | None]]:
    """(video, side-car wav or None) for every clip with sound under ``root``, silent ones left out."""
    out = []
    for video in sorted(root.rglob("*.mp4")):
        if "no_audio" in video.parts:
            continue
        wav = video.with_suffix(".wav")
        out.append((video, wav if wav.exists() else None))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--media", type=Path, default=Path(os.environ.get("AVSTUDIO_MEDIA", "../shared/media")))
    ap.add_argument("--model", nargs="+", default=[f"bundled={DEFAULT_WEIGHTS}", f"judge={JUDGE}"], metavar="NAME=DIR",
                    help="models to read the clips with")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/source_offsets.json"))
    args = ap.parse_args(argv)

    paths = {}
    for spec in args.model:
        name, _, path = spec.partition("=")
        paths[name] = path or name
    models = {name: SyncNet.from_pretrained(path) for name, path in paths.items()}
    clips = talking_clips(args.media / "talking_video")
    if not clips:
        print(f"error: no talking clip under {args.media / 'talking_video'}", file=sys.stderr)
        return 2
    rows = []
    for video, wav in tqdm(clips, desc="clips", unit="clip"):
        try:
            x = prepare_clip(video, wav)
        except (MediaError, NoFaceError) as err:
            print(f"skipped {video.name}: {err}", file=sys.stderr)
            continue
        mel = normalize_mel(log_mel(x.audio, SAMPLE_RATE))
        row = {"clip": video.name, "source": video.name.split("_")[0], "seconds": round(len(x.found) / x.fps, 2)}
        for name, model in models.items():
            emb = embed_video_windows(model, x.gray, x.found, x.fps)
            r = sync_score(model, x.gray, x.found, mel, x.fps, video_embeddings=emb)
            row[name] = int(r["offset_frames"])
            row[f"{name}_confidence"] = round(float(r["confidence"]), 3)
        try:
            row["baseline"] = int(baseline_offset(x.mouth_opening, x.audio, x.fps))
        except SyncCheckError:
            row["baseline"] = None
        rows.append(row)

    names = list(models) + ["baseline"]
    summary = defaultdict(dict)
    for source in sorted({r["source"] for r in rows}):
        sel = [r for r in rows if r["source"] == source]
        summary[source]["clips"] = len(sel)
        for n in names:
            vals = [r[n] for r in sel if r[n] is not None]
            summary[source][n] = {"median": float(np.median(vals)) if vals else None,
                                  "within_1": float(np.mean([abs(v) <= 1 for v in vals])) if vals else None}
    save_results(args.out, {"models": {n: shown_path(p) for n, p in paths.items()}, "per_source": summary,
                            "per_clip": rows}, module=__spec__.name, argv=argv, weights=paths)
    print(f"{'source':14s} {'clips':>5s} " + " ".join(f"{n + ' median / |k|<=1':>26s}" for n in names))
    for source, s in summary.items():
        cells = []
        for n in names:
            m, w = s[n]["median"], s[n]["within_1"]
            cells.append(f"{'-' if m is None else f'{m:+.1f}':>15s} / {'-' if w is None else f'{w:4.0%}':>8s}")
        print(f"{source:14s} {s['clips']:5d} " + " ".join(f"{c:>26s}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
