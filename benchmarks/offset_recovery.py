"""Offset recovery on held-out real clips: the bundled discriminators (optionally every stage of a run) and the baseline.

For every clip of the held-out sources, the audio is shifted by known amounts (default -8, -4, 0,
+4, +8 frames; positive = audio early) and written with the untouched picture into a Matroska
file with 16-bit PCM audio (lossless, no AAC priming delay). Each file goes through the Sync
check's own decoding; every discriminator and the non-learned baseline (mouth opening vs loudness
envelope) estimate the offset. A case counts when the estimate is within +/-1 frame. Because a
recording is not always in sync to begin with, the shift recovery is also given: the share of
shifted cases whose estimate moved by the applied shift (+/-1) from the same clip's unshifted
estimate.

By default the two bundled discriminators are compared: the Sync check's (``bundled``) and the
independent judge that scores the lip-sync outputs (``judge``); ``--model NAME=DIR`` replaces them and
``--runs`` adds every stage of a training run (keys ``RUN/STAGE``).

    python -m benchmarks.offset_recovery                         # -> benchmarks/results/offset_recovery.json
    python -m benchmarks.offset_recovery --model new=runs/syncnet/final --runs runs/syncnet --out /tmp/x.json
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

from media.features import SAMPLE_RATE, log_mel
from media.io import mux_audio, read_audio
from models.provenance import save_results, shown_path
from models.syncnet import (
    DEFAULT_WEIGHTS,
    embed_video_windows,
    normalize_mel,
    prepare_clip,
    shift_recovery,
    sync_score,
)
from pipelines.sync_check import (
    TRACK_EVERY,
    SyncCheckError,
    baseline_offset,
    load_model,
    use_bfloat16,
)

STAGES = ["stage1", "stage2", "stage3", "nofilter_stage2", "nofilter_stage3"]
JUDGE = DEFAULT_WEIGHTS.parent / "syncnet_judge"
DEFAULT_MODELS = [f"bundled={DEFAULT_WEIGHTS}", f"judge={JUDGE}"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--media", type=Path, default=Path(os.environ.get("AVSTUDIO_MEDIA", "../shared/media")))
    ap.add_argument("--holdout-source", nargs="+", default=["pcavs"])
    ap.add_argument("--shifts", type=int, nargs="+", default=[-8, -4, 0, 4, 8])
    ap.add_argument("--model", nargs="+", default=DEFAULT_MODELS, metavar="NAME=DIR",
                    help="discriminators to compare (default: the Sync check's and the independent judge)")
    ap.add_argument("--runs", type=Path, default=None, help="training output folder with one sub-folder per stage")
    ap.add_argument("--track-every", type=int, default=TRACK_EVERY,
                    help="the face mesh on every N-th frame, the rest interpolated (default: the Sync check's)")
    ap.add_argument("--bfloat16", choices=("yes", "no"), default=None,
                    help="the discriminators in bfloat16 (default: as the Sync check runs them on this CPU)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/offset_recovery.json"))
    args = ap.parse_args(argv)

    bf16 = use_bfloat16() if args.bfloat16 is None else args.bfloat16 == "yes"
    paths = dict(spec.partition("=")[::2] for spec in args.model)
    if args.runs:
        paths.update({f"{args.runs.name}/{s}": str(args.runs / s) for s in STAGES if (args.runs / s).is_dir()})
    models = {name: load_model(path) for name, path in paths.items()}  # as the Sync check loads them (folded)
    clips = sorted(p for p in (args.media / "talking_video").glob("*.mp4") if p.name.split("_")[0] in args.holdout_source)
    if not clips:
        print(f"error: no clip of {args.holdout_source} under {args.media / 'talking_video'}", file=sys.stderr)
        return 2
    names = list(models) + ["baseline"]
    hits = {n: 0 for n in names}
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for clip in tqdm(clips, desc="clips", unit="clip"):
            x = prepare_clip(clip, track_every=args.track_every)  # face tracking once: the picture is the same in every shifted copy
            # the baseline reads the lips' opening on every frame: never from landmarks interpolated between frames
            opening = x.mouth_opening if args.track_every == 1 else prepare_clip(clip).mouth_opening
            video_emb = {name: embed_video_windows(model, x.gray, x.found, x.fps, bfloat16=bf16)
                         for name, model in models.items()}
            original = read_audio(clip, sr=SAMPLE_RATE)
            for shift in args.shifts:
                shifted = mux_audio(clip, Path(tmp) / f"{clip.stem}_{shift}.mkv", original, sr=SAMPLE_RATE,
                                    delay_s=-shift / x.fps)
                audio = read_audio(shifted, sr=SAMPLE_RATE)
                mel = normalize_mel(log_mel(audio, SAMPLE_RATE))
                case = {"clip": clip.name, "true": shift}
                for name, model in models.items():
                    case[name] = sync_score(model, x.gray, x.found, mel, x.fps, video_embeddings=video_emb[name],
                                            bfloat16=bf16)["offset_frames"]
                try:
                    case["baseline"] = baseline_offset(opening, audio, x.fps)
                except SyncCheckError:  # too few face frames for the baseline's search: a miss
                    case["baseline"] = None
                for n in names:
                    hits[n] += case[n] is not None and abs(case[n] - shift) <= 1
                cases.append(case)
    accuracy = {n: hits[n] / len(cases) for n in names}
    recovery = {n: shift_recovery(cases, key=n) for n in names}
    result = {"models": {n: shown_path(p) for n, p in paths.items()}, "clips": len(clips), "cases": len(cases),
              "shifts": args.shifts, "holdout_sources": args.holdout_source, "track_every": args.track_every,
              "bfloat16": bf16,
              "accuracy_within_1_frame": accuracy,
              "shift_recovery_within_1_frame": recovery, "per_case": cases}
    save_results(args.out, result, module=__spec__.name, argv=argv, weights=paths)
    print(f"{len(cases)} cases ({len(clips)} held-out clips x {len(args.shifts)} shifts)")
    print(f"  {'':18s} {'offset within +/-1':>20s} {'shift recovered +/-1':>22s}")
    for n in names:
        print(f"  {n:18s} {accuracy[n]:20.1%} {recovery[n]:22.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
