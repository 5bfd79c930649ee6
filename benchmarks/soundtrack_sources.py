"""The soundtrack generator's bootstrap sources (spec 01), measured: how many songs each adds, and what
training on more of them does to the held-out figures of each.

    python -m benchmarks.soundtrack_sources    # -> benchmarks/results/soundtrack_sources.json

Sources (``training.soundtrack_data.SOURCES``): POP909 (melody, piano accompaniment, annotated chords and
beats), VGMIDI (video-game piano pieces: the melody by the skyline rule, chords read per beat) and the Bach
chorales of music21's corpus (soprano as the melody, alto, tenor and bass as the accompaniment). The
generator is trained for the same fixed number of iterations (``--iters``, no early stop, so the runs
compare) on POP909 alone and on every source, and scored on the same held-out songs of each source (whole
songs no run saw, ``training.train_soundtrack.held_out``), each figure beside its baseline.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from models.provenance import save_results
from training import soundtrack_data as data
from training import train_soundtrack as ts

ROOT = Path(__file__).resolve().parents[1]
RUNS = {"pop909": ["pop909"], "all": list(data.SOURCES)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "soundtrack_sources.json")
    ap.add_argument("--iters", type=int, default=600)
    ap.add_argument("--cache", default=str(ROOT / "data" / "soundtrack"))
    args = ap.parse_args(argv)
    _, rows = data.load_samples(Path(args.cache), [], sources=data.SOURCES)
    counts = {}
    for r in rows:
        c = counts.setdefault(r["source"], {"songs": 0, "held_out_songs": 0, "steps": 0})
        c["songs"] += 1
        c["held_out_songs"] += int(ts.held_out(r["song"]))
        c["steps"] += r["steps"]
    runs = {}
    # every run is scored on every source's held-out songs, trained on them or not
    samples = ts.Samples(*data.load_samples(Path(args.cache), [], sources=data.SOURCES))
    test_w = samples.subset(ts.held_out)
    with tempfile.TemporaryDirectory() as tmp:
        for name, sources in RUNS.items():
            argv_r = ["--max-iters", str(args.iters), "--stop-patience", str(10 ** 9), "--eval-every", str(10 ** 9),
                      "--cache", args.cache, "--out", f"{tmp}/m", "--report", f"{tmp}/r.json", "--plot", f"{tmp}/p.png",
                      "--sources", *sources]
            out = ts.train(ts.parse_args(argv_r))
            runs[name] = {"sources": sources, "train_windows": out["meta"]["data"]["sources"],
                          "seconds": out["meta"]["stop"]["seconds"], "held_out_by_source": {}}
            disc = ts.DifferenceDiscriminator()  # the difference is not compared across runs: a fresh judge
            for source, figures in ts.evaluate_by_source(out["model"], disc, samples, test_w, data.SOURCES).items():
                figures.pop("difference", None)
                runs[name]["held_out_by_source"][source] = figures
            print(name, runs[name], flush=True)
    save_results(args.out, {"sources": counts, "iterations": args.iters, "runs": runs},
                 module="benchmarks.soundtrack_sources", argv=argv)


if __name__ == "__main__":
    main()
