"""The spec's claimed training-set augmentation (spec 01), measured: how many samples it adds at each
similarity threshold, what the similarity looks like, and what it does to the held-out figures.

    python -m benchmarks.soundtrack_augmentation    # -> benchmarks/results/soundtrack_augmentation.json

For every training window of the POP909 bootstrap, each other song's window whose matching music is at least
``threshold`` similar (the cosine of ``training.train_soundtrack.embeddings``: 15 named, standardised
numbers: the 12 pitch-class shares of chords and bass, onset density, dynamics, register) becomes a new
sample: same hum, same controls, that music as the match. The generator is then trained for the same fixed
number of iterations (``--iters``, no early stop, so the runs are comparable) with no augmentation and at
each threshold, and scored on the same held-out songs (whole songs no run saw).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from models.provenance import save_results
from training import soundtrack_data as data
from training import train_soundtrack as ts

ROOT = Path(__file__).resolve().parents[1]
COUNT_AT = (0.99, 0.98, 0.95, 0.9, 0.85, 0.8)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "soundtrack_augmentation.json")
    ap.add_argument("--train-at", type=float, nargs="*", default=[0.98, 0.95, 0.9])
    ap.add_argument("--iters", type=int, default=800)
    ap.add_argument("--cache", default=str(ROOT / "data" / "soundtrack"))
    args = ap.parse_args(argv)
    arrays, rows = data.load_samples(Path(args.cache), [])
    samples = ts.Samples(arrays, rows)
    train_w = samples.subset(lambda s: not ts.held_out(s))
    counts = {}
    for t in COUNT_AT:
        added = ts.augment(samples, train_w, t)
        counts[str(t)] = {"added": len(added), "windows_with_a_match": len({a["window"] for a in added}),
                          "per_window": len(added) / len(train_w)}
        print(f"threshold {t}: {len(added)} added", flush=True)
    # what a match looks like: the named embeddings of a few pairs at 0.95
    emb = ts.embeddings(samples, train_w)
    where = {w: i for i, w in enumerate(train_w)}
    rng = np.random.default_rng(0)
    pairs = ts.augment(samples, train_w, 0.95)
    shown = []
    for k in rng.choice(len(pairs), size=min(5, len(pairs)), replace=False):
        a = pairs[int(k)]
        song = [samples.rows[samples.windows[w][0]]["song"] for w in (a["window"], a["match"])]
        shown.append({"sample": song[0], "match": song[1], "similarity": round(a["similarity"], 4),
                      "sample_z": dict(zip(ts.EMBEDDING_NAMES, np.round(emb[where[a["window"]]], 3).tolist())),
                      "match_z": dict(zip(ts.EMBEDDING_NAMES, np.round(emb[where[a["match"]]], 3).tolist()))})
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for t in [None, *args.train_at]:
            argv_t = ["--max-iters", str(args.iters), "--stop-patience", str(10 ** 9), "--eval-every", str(10 ** 9),
                      "--cache", args.cache, "--out", f"{tmp}/m", "--report", f"{tmp}/r.json", "--plot", f"{tmp}/p.png"]
            if t is not None:
                argv_t += ["--augment", str(t)]
            out = ts.train(ts.parse_args(argv_t))
            runs["none" if t is None else str(t)] = {"added": out["meta"]["data"]["augmented"],
                                                     "held_out": out["meta"]["held_out"],
                                                     "seconds": out["meta"]["stop"]["seconds"]}
            print(t, runs["none" if t is None else str(t)], flush=True)
    save_results(args.out, {"embedding": ts.EMBEDDING_NAMES, "train_windows": len(train_w), "counts": counts,
                            "examples_at_0.95": shown, "iterations": args.iters, "runs": runs},
                 module="benchmarks.soundtrack_augmentation", argv=argv)


if __name__ == "__main__":
    main()
