"""BGM library vector search at scale: build time, memory, top-10 latency and recall of the ANN index vs exact.

The library is ``--n`` window vectors (default 1,000,000, d=128): the real library's features replicated
with noise. ``--real`` takes them from the media collection (every 10 s window of its 669 music tracks
through the bundled BGM fit model: 2,128 deep features, d=32). ``--base FILE.npy`` gives the real library's vectors (n_base, d) when they exist (and
``--base-track-ids FILE.npy`` their tracks); without it the stand-in is ``--centres`` (2,000) random unit
vectors, the "real windows". Each base vector is replicated ``n / n_base`` times (500 for the stand-in)
with Gaussian noise of per-dimension std ``--noise * |base| / sqrt(d)`` (noise norm about ``--noise``
times the vector's, default 0.5: a replica's cosine to its base is about 0.9). Tracks: replica ``r`` of
the windows of real track ``t`` is one track; without real track ids, every ``--windows-per-track`` (10)
consecutive replicas of one base vector form a track (the windows of one song are alike).

Queries: ``--queries`` (1,000) fresh noisy replicas of random base vectors, searched ONE AT A TIME (as the
app does), single-threaded and with 2 threads: p50/p95 latency of ``TrackIndex.search(q, 10)`` (10
distinct tracks). Recall@10 against exact flat search (ground truth in batches): of windows (the raw
top-10 vectors) and of tracks (the top-10 distinct tracks). Baseline beside it: the exact flat index's
own latency (fewer queries: a 1M flat scan is slow). Memory: bytes of the serialized index and the
growth of the process RSS while building it.

    python -m benchmarks.bgm_index --real                   # -> benchmarks/results/bgm_index.json
    python -m benchmarks.bgm_index --n 200000 --kind ivf hnsw --out /tmp/bgm.json
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from tqdm import tqdm

from models.bgm_index import TrackIndex, set_threads
from models.provenance import save_results


def real_library() -> tuple[np.ndarray, np.ndarray]:
    """(deep features (n, 32), track ids (n,)) of the media collection's music tracks, per 10 s window."""
    from models.bgm_fit import BGMFitNet
    from pipelines.common import settings
    from training.bgm_features import window_features
    from training.make_bgm_fit_labels import media_root

    media = media_root()
    paths = sorted((media / "music").glob("*")) + sorted((media / "music_emotion").glob("*/*/*.opus"))
    feats, _ = window_features(paths, speech=False)
    model = BGMFitNet.from_pretrained(settings().bgm_fit)
    vecs = [model.music_features(v) for v in feats.values()]
    return np.concatenate(vecs), np.concatenate([np.full(len(v), i) for i, v in enumerate(vecs)])


def make_library(args, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(vectors (n, d), track_ids (n,), base (n_base, d), description)."""
    if args.real:
        base, base_tracks = real_library()
        source = ("the real library: deep features (bundled BGM fit model) of every 10 s window of the media "
                  f"collection's music/, PANDA and Emotify tracks ({len(base)} windows, {base_tracks.max() + 1} tracks)")
    elif args.base:
        base = np.load(args.base).astype(np.float32)
        base_tracks = np.load(args.base_track_ids).astype(np.int64) if args.base_track_ids else None
        source = f"--base {args.base}"
    else:
        base = rng.standard_normal((args.centres, args.d), dtype=np.float32)
        base /= np.linalg.norm(base, axis=1, keepdims=True)
        base_tracks = None
        source = f"stand-in: {args.centres} random unit vectors, d={args.d}"
    n_base, d = base.shape
    copies = max(1, args.n // n_base)
    n = copies * n_base
    sigma = (args.noise * np.linalg.norm(base, axis=1) / np.sqrt(d)).astype(np.float32)
    # layout: base-vector major, so that consecutive rows are replicas of one base vector
    vectors = np.empty((n, d), dtype=np.float32)
    for j in tqdm(range(n_base), desc="library", unit="base", mininterval=2):
        block = vectors[j * copies:(j + 1) * copies]
        block[:] = base[j]
        block += rng.standard_normal((copies, d), dtype=np.float32) * sigma[j]
    replica = np.tile(np.arange(copies), n_base)
    if base_tracks is not None:
        tracks = replica * (base_tracks.max() + 1) + np.repeat(base_tracks, copies)
    else:
        tracks = np.repeat(np.arange(n_base), copies) * -(-copies // args.windows_per_track) \
            + replica // args.windows_per_track
    _, tracks = np.unique(tracks, return_inverse=True)
    desc = (f"{source}; each replicated {copies}x with Gaussian noise (noise norm ~{args.noise} x vector norm); "
            f"n={n}, {tracks.max() + 1} tracks")
    return vectors, tracks.astype(np.int64), base, desc


def make_queries(base, m, noise, rng) -> np.ndarray:
    pick = base[rng.integers(0, len(base), m)]
    sigma = noise * np.linalg.norm(pick, axis=1, keepdims=True) / np.sqrt(base.shape[1])
    return (pick + rng.standard_normal(pick.shape, dtype=np.float32) * sigma).astype(np.float32)


def latencies_ms(index: TrackIndex, queries, k, threads) -> dict:
    set_threads(threads)
    index.search(queries[:5], k)  # warm-up
    times = []
    for q in tqdm(queries, desc=f"{index.kind} {threads} thr", unit="q", mininterval=2, leave=False):
        t0 = time.perf_counter()
        index.search(q[None], k)
        times.append((time.perf_counter() - t0) * 1000)
    return {"p50": float(np.percentile(times, 50)), "p95": float(np.percentile(times, 95)),
            "mean": float(np.mean(times)), "queries": len(times)}


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0]) & set(t[t >= 0])) / max(1, (t >= 0).sum())
                          for f, t in zip(found, truth)]))


def batched(fn, queries, k, batch, desc):
    outs = [fn(queries[i:i + batch], k) for i in tqdm(range(0, len(queries), batch), desc=desc, unit="batch")]
    return tuple(np.concatenate(parts) for parts in zip(*outs))


def index_bytes(index: TrackIndex) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        folder = index.save(tmp)
        return sum(p.stat().st_size for p in folder.iterdir())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--real", action="store_true",
                    help="base = the real library's deep features (media collection's music, bundled model)")
    ap.add_argument("--base", type=Path, default=None, help="the real library's vectors (n_base, d) .npy")
    ap.add_argument("--base-track-ids", type=Path, default=None, help="their track ids (n_base,) .npy")
    ap.add_argument("--centres", type=int, default=2000)
    ap.add_argument("--noise", type=float, default=0.5)
    ap.add_argument("--windows-per-track", type=int, default=10)
    ap.add_argument("--kind", nargs="+", default=["ivf"], choices=["ivf", "hnsw"])
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--flat-latency-queries", type=int, default=50)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--build-threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/bgm_index.json"))
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    proc = psutil.Process()
    vectors, tracks, base, desc = make_library(args, rng)
    paths = [f"track_{t}" for t in range(tracks.max() + 1)]
    queries = make_queries(base, args.queries, args.noise, rng)
    print(desc, flush=True)

    flat = TrackIndex(vectors, tracks, paths, kind="flat", threads=args.build_threads)
    set_threads(args.build_threads)
    _, truth_rows = batched(flat.search_windows, queries, args.k, 100, "exact windows")
    _, truth_tracks = batched(flat.search, queries, args.k, 100, "exact tracks")
    flat_lat = {f"{t}_threads": latencies_ms(flat, queries[:args.flat_latency_queries], args.k, t) for t in (1, 2)}
    results = {"library": desc, "n": len(vectors), "d": vectors.shape[1], "tracks": len(paths), "k": args.k,
               "queries": args.queries, "query_noise": args.noise,
               "baseline_flat": {"build_s": flat.build_seconds, "index_bytes": index_bytes(flat),
                                 "latency_ms": flat_lat}}
    del flat
    for kind in args.kind:
        rss0 = proc.memory_info().rss
        index = TrackIndex(vectors, tracks, paths, kind=kind, threads=args.build_threads, seed=args.seed)
        rss1 = proc.memory_info().rss
        print(f"{kind}: built in {index.build_seconds:.1f} s, {index.params}", flush=True)
        set_threads(args.build_threads)
        _, rows = batched(index.search_windows, queries, args.k, 100, f"{kind} windows")
        _, found = batched(index.search, queries, args.k, 100, f"{kind} tracks")
        results[kind] = {
            "params": index.params, "build_s": index.build_seconds, "index_bytes": index_bytes(index),
            "rss_growth_bytes": rss1 - rss0,
            "latency_ms": {f"{t}_threads": latencies_ms(index, queries, args.k, t) for t in (1, 2)},
            "recall_at_k_windows": recall(rows, truth_rows), "recall_at_k_tracks": recall(found, truth_tracks)}
        if kind == "ivf":  # nprobe sweep: recall of windows (batched) and 1-thread p50 on the first 200 queries
            sweep, chosen = {}, index.params["nprobe"]
            for nprobe in (1, 2, 4, 8, 16, 32, 64):
                index.params["nprobe"] = nprobe
                set_threads(args.build_threads)
                _, rows = batched(index.search_windows, queries, args.k, 250, f"nprobe {nprobe}")
                sweep[nprobe] = {"recall_at_k_windows": recall(rows, truth_rows),
                                 "p50_ms_1_thread": latencies_ms(index, queries[:200], args.k, 1)["p50"]}
            index.params["nprobe"] = chosen
            results[kind]["nprobe_sweep"] = sweep
        print({k: v for k, v in results[kind].items()}, flush=True)
        del index
    print({"baseline_flat": results["baseline_flat"]})
    save_results(args.out, results, module=__spec__.name if __spec__ else "benchmarks.bgm_index", argv=sys.argv)
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
