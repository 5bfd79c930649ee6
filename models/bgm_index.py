"""Vector index over a BGM library's deep features: one vector per window of every track, ranked by cosine.

The BGM-fit pipeline computes the deep feature of every window of every library track once; a
:class:`TrackIndex` holds them and answers "which tracks fit this speech segment best" by vector search,
so that the model's head only re-scores the top few exactly.

* Similarity is cosine: vectors are L2-normalised and compared by inner product (scores in [-1, 1]).
* ``kind="auto"`` is exact search (``IndexFlatIP``) up to :data:`FLAT_MAX` vectors and IVF above it
  (``IndexIVFFlat``, ``nlist = 4 * sqrt(n)``, ``nprobe`` = :data:`IVF_NPROBE`). IVF was chosen over HNSW by
  measurement on 1,000,000 clustered vectors on the project's 2-core CPU (``benchmarks/bgm_index.py``, a
  clustered stand-in of d=128, results now in ``benchmarks/results/history/``): both met p50 < 5 ms at
  recall@10 >= 0.95 (IVF nprobe=32: p50 0.31 ms, recall 1.00; HNSW M=32, efSearch=64: p50 0.16 ms, recall
  0.985), but IVF built in 42 s vs 115 s and took 532 MB vs 794 MB (it keeps no graph beside the vectors).
  On the real library's deep features replicated to 1,000,000 (``--real``, d=32,
  ``benchmarks/results/bgm_index.json``) they cluster less cleanly: recall@10 was 0.957 at nprobe=32 and
  0.982 at 64 (an earlier model's features; 0.975 and 0.991 with the bundled one), both at p50 ~0.3-0.5 ms,
  so ``IVF_NPROBE`` is 64. ``kind="hnsw"`` (``IndexHNSWFlat``, inner
  product) stays available.
* :meth:`TrackIndex.search` returns the best ``k`` distinct TRACKS: the windows of one track collapse to
  its best window, and more windows than ``k`` are searched (doubling until ``k`` tracks are found).
* :meth:`TrackIndex.save` / :meth:`TrackIndex.load`: ``index.faiss`` (``faiss.write_index``),
  ``track_ids.npy`` and ``meta.json`` (paths, d, kind, build parameters) in one folder.
* Threads: faiss uses OpenMP; ``threads=`` on build and search (or :func:`set_threads`) sets
  ``faiss.omp_set_num_threads``; ``None`` leaves faiss's setting alone.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from media.errors import AVStudioError

FLAT_MAX = 50_000
"""Below or at this many vectors ``kind="auto"`` is exact search (a flat scan of 50,000 x 128 floats is
well under a millisecond's worth of arithmetic per query)."""
IVF_NPROBE = 64
"""Inverted lists visited per query (of ``nlist = 4 * sqrt(n)``); the 1M measurement: see the module docstring."""
IVF_TRAIN_PER_LIST = 40
"""k-means for the IVF centroids runs on at most this many vectors per list (faiss asks for >= 39)."""
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 64
KINDS = ("auto", "flat", "ivf", "hnsw")
INDEX_FILE, IDS_FILE, META_FILE = "index.faiss", "track_ids.npy", "meta.json"
FORMAT_VERSION = 1


class TrackIndexError(AVStudioError):
    """A BGM index that cannot be built, searched or loaded (the message says why)."""


def _faiss():
    import faiss

    return faiss


def set_threads(threads: int | None) -> None:
    """OpenMP threads faiss uses from now on (``None``: leave as is)."""
    if threads is not None:
        _faiss().omp_set_num_threads(int(threads))


def normalized(vectors: np.ndarray) -> np.ndarray:
    """A float32, C-contiguous, L2-normalised copy of ``vectors`` (n, d); zero rows stay zero."""
    x = np.array(vectors, dtype=np.float32, order="C", copy=True)
    if x.ndim != 2:
        raise TrackIndexError(f"vectors must be a 2-D array (n, d), got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, norms, out=x, where=norms > 0)
    return x


def ivf_nlist(n: int) -> int:
    """Inverted lists for ``n`` vectors: ``4 * sqrt(n)``, at most ``n // 39`` (k-means needs 39 per list)."""
    return max(1, min(round(4 * math.sqrt(n)), n // 39))


class TrackIndex:
    """Cosine search over window vectors that belong to tracks; see the module docstring.

    ``vectors``: (n, d) float; ``track_ids``: (n,) int, the track (index into ``paths``) of each vector;
    ``paths``: one entry per track. ``kind``: ``auto`` | ``flat`` | ``ivf`` | ``hnsw``; ``flat_max``: the
    ``auto`` threshold; ``nprobe`` / ``nlist`` (IVF) and ``m`` / ``ef_construction`` / ``ef_search`` (HNSW)
    override the defaults."""

    def __init__(self, vectors: np.ndarray, track_ids: np.ndarray, paths: list[str], *, kind: str = "auto",
                 flat_max: int = FLAT_MAX, nlist: int | None = None, nprobe: int = IVF_NPROBE, m: int = HNSW_M,
                 ef_construction: int = HNSW_EF_CONSTRUCTION, ef_search: int = HNSW_EF_SEARCH,
                 threads: int | None = None, seed: int = 0):
        if kind not in KINDS:
            raise TrackIndexError(f"unknown index kind {kind!r}; one of {', '.join(KINDS)}")
        x = normalized(vectors)
        n, d = x.shape
        ids = np.asarray(track_ids)
        if n == 0:
            raise TrackIndexError("no vectors to index")
        if ids.shape != (n,) or not np.issubdtype(ids.dtype, np.integer):
            raise TrackIndexError(f"track_ids must be {n} integers (one per vector), got {ids.dtype} {ids.shape}")
        if ids.min() < 0 or ids.max() >= len(paths):
            raise TrackIndexError(f"track_ids must lie in [0, {len(paths)}) (one per path)")
        if kind == "auto":
            kind = "flat" if n <= flat_max else "ivf"
        set_threads(threads)
        faiss = _faiss()
        t0 = time.perf_counter()
        if kind == "flat":
            index, params = faiss.IndexFlatIP(d), {}
        elif kind == "ivf":
            nlist = int(nlist or ivf_nlist(n))
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = seed
            cap = IVF_TRAIN_PER_LIST * nlist
            sample = x if n <= cap else x[np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))]
            index.train(sample)
            index.nprobe = int(nprobe)
            params = {"nlist": nlist, "nprobe": int(nprobe), "train_vectors": len(sample)}
        else:
            index = faiss.IndexHNSWFlat(d, int(m), faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = int(ef_construction)
            index.hnsw.efSearch = int(ef_search)
            params = {"m": int(m), "ef_construction": int(ef_construction), "ef_search": int(ef_search)}
        index.add(x)
        self.build_seconds = time.perf_counter() - t0
        self.index, self.kind, self.params = index, kind, params
        self.track_ids = ids.astype(np.int64)
        self.paths = [str(p) for p in paths]
        self.d = d

    # ------------------------------------------------------------------ search
    def __len__(self) -> int:
        return int(self.index.ntotal)

    def _set_search_params(self, k_windows: int) -> None:
        if self.kind == "ivf":
            self.index.nprobe = self.params["nprobe"]
        elif self.kind == "hnsw":
            self.index.hnsw.efSearch = max(self.params["ef_search"], k_windows)

    def search_windows(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, vector rows), each (m, k): the best ``k`` WINDOWS per query, rows -1 where fewer were
        found. Queries are normalised like the library."""
        q = normalized(np.atleast_2d(queries))
        if q.shape[1] != self.d:
            raise TrackIndexError(f"queries have dimension {q.shape[1]}, the index {self.d}")
        k = int(min(k, len(self)))
        self._set_search_params(k)
        return self.index.search(q, k)

    def search(self, queries: np.ndarray, k: int = 10, *, threads: int | None = None,
               oversample: int = 4) -> tuple[np.ndarray, np.ndarray]:
        """(scores (m, k) float32, track_ids (m, k) int64): the best ``k`` distinct tracks per query, each
        scored by its best window, best first; where fewer than ``k`` tracks are found the rest is
        ``-inf`` / ``-1``. ``k * oversample`` windows are searched first, doubled for queries that did not
        yet reach ``k`` tracks (until every window was searched)."""
        set_threads(threads)
        q = np.atleast_2d(queries)
        m = len(q)
        k = int(k)
        out_s = np.full((m, k), -np.inf, dtype=np.float32)
        out_t = np.full((m, k), -1, dtype=np.int64)
        if k <= 0 or m == 0:
            return out_s, out_t
        todo = np.arange(m)
        kw = min(len(self), k * max(1, int(oversample)))
        while len(todo):
            scores, rows = self.search_windows(q[todo], kw)
            again = []
            for i, s_row, r_row in zip(todo, scores, rows):
                found = r_row >= 0
                tracks = self.track_ids[r_row[found]]
                _, first = np.unique(tracks, return_index=True)
                first = np.sort(first)[:k]
                if len(first) < k and kw < len(self) and found.all():
                    again.append(i)
                    continue
                out_s[i, :len(first)] = s_row[found][first]
                out_t[i, :len(first)] = tracks[first]
            todo = np.asarray(again, dtype=np.int64)
            kw = min(len(self), kw * 2)
        return out_s, out_t

    def search_paths(self, query: np.ndarray, k: int = 10, **kw) -> list[tuple[str, float]]:
        """[(track path, score)] for one query vector, best first."""
        scores, tracks = self.search(np.asarray(query)[None], k, **kw)
        return [(self.paths[t], float(s)) for s, t in zip(scores[0], tracks[0]) if t >= 0]

    # ------------------------------------------------------------------ save / load
    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        _faiss().write_index(self.index, str(folder / INDEX_FILE))
        np.save(folder / IDS_FILE, self.track_ids)
        meta = {"format_version": FORMAT_VERSION, "kind": self.kind, "d": self.d, "n": len(self),
                "params": self.params, "paths": self.paths, "faiss_version": _faiss().__version__}
        (folder / META_FILE).write_text(json.dumps(meta, indent=1))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> TrackIndex:
        folder = Path(folder)
        if not folder.is_dir():
            raise TrackIndexError(f"BGM index folder {folder} does not exist")
        missing = [f for f in (INDEX_FILE, IDS_FILE, META_FILE) if not (folder / f).is_file()]
        if missing:
            raise TrackIndexError(f"BGM index folder {folder} is incomplete: missing {', '.join(missing)}")
        try:
            meta = json.loads((folder / META_FILE).read_text())
            kind, d, paths, params = meta["kind"], int(meta["d"]), list(meta["paths"]), dict(meta["params"])
            ids = np.load(folder / IDS_FILE, allow_pickle=False).astype(np.int64)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise TrackIndexError(f"BGM index folder {folder} is broken: {err}") from err
        if kind not in KINDS[1:]:
            raise TrackIndexError(f"BGM index folder {folder} is broken: unknown kind {kind!r}")
        try:
            index = _faiss().read_index(str(folder / INDEX_FILE))
        except RuntimeError as err:
            raise TrackIndexError(f"BGM index folder {folder} is broken: cannot read {INDEX_FILE}") from err
        if index.d != d or index.ntotal != len(ids) or ids.ndim != 1:
            raise TrackIndexError(f"BGM index folder {folder} is broken: the index holds {index.ntotal} vectors of "
                                  f"dimension {index.d}, the metadata {len(ids)} of dimension {d}")
        if len(ids) and (ids.min() < 0 or ids.max() >= len(paths)):
            raise TrackIndexError(f"BGM index folder {folder} is broken: track ids outside the {len(paths)} paths")
        self = cls.__new__(cls)
        self.index, self.kind, self.params, self.track_ids, self.paths, self.d = index, kind, params, ids, paths, d
        self.build_seconds = None
        return self
