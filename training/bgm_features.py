"""Fused feature vectors (media.fused) of many files, computed once and cached, for the BGM-fit scripts.

The cache is one ``.npz`` per file under ``--cache`` (default ``data/bgm_fit/features``), named by the
SHA-1 of the file's absolute path, size, modification time and kind (speech or music), so a changed file is
recomputed. Each holds the window vectors ``(n_windows, D)`` of the file with the default 10 s windows.
Files are processed by a pool of ``workers`` processes (the windows of one file are independent of
another's); a file that cannot be read is reported and left out, never fatal.

    python -m training.bgm_features FILES... [--speech] [--workers 2]   # fill the cache
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = REPO / "data" / "bgm_fit" / "features"


def _key(path: Path, speech: bool) -> str:
    st = path.stat()
    raw = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{'speech' if speech else 'music'}"
    return hashlib.sha1(raw.encode()).hexdigest()


def _compute(job: tuple[str, bool, str]) -> tuple[str, str | None]:
    from media.errors import AVStudioError
    from media.fused import fused_file

    path, speech, target = job
    try:
        vectors = fused_file(path, speech=speech)
    except AVStudioError as err:
        return path, str(err)
    tmp = target + ".tmp.npz"
    np.savez(tmp, vectors=vectors)
    os.replace(tmp, target)
    return path, None


def window_features(paths, *, speech: bool, cache: str | Path = DEFAULT_CACHE, workers: int = 2,
                    desc: str = "fused features") -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``({path: (n_windows, D) float32}, {path: error})`` for ``paths`` (str), from the cache where it holds
    them, computed (and cached) otherwise."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    paths = [str(p) for p in paths]
    targets = {p: str(cache / f"{_key(Path(p), speech)}.npz") for p in paths}
    todo = [(p, speech, targets[p]) for p in paths if not Path(targets[p]).is_file()]
    errors: dict[str, str] = {}
    if todo:
        if workers > 1 and len(todo) > 1:
            with ProcessPoolExecutor(workers) as pool:
                results = pool.map(_compute, todo, chunksize=4)
                for path, err in tqdm(results, total=len(todo), desc=desc, file=sys.stderr):
                    if err:
                        errors[path] = err
        else:
            for job in tqdm(todo, desc=desc, file=sys.stderr):
                path, err = _compute(job)
                if err:
                    errors[path] = err
    out = {}
    for p in paths:
        if p not in errors:
            with np.load(targets[p]) as f:
                out[p] = f["vectors"].astype(np.float32)
    return out, errors


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.bgm_features", description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--speech", action="store_true", help="the files are speech (prosody features on)")
    ap.add_argument("--cache", default=str(DEFAULT_CACHE))
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    done, errors = window_features(args.files, speech=args.speech, cache=args.cache, workers=args.workers)
    for path, err in errors.items():
        print(f"skipped {path}: {err}", file=sys.stderr)
    print(f"{len(done)} files, {sum(len(v) for v in done.values())} windows; {len(errors)} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
