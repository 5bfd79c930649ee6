"""The BGM library's vector index (models/bgm_index.py): exact and ANN search over track windows."""
from __future__ import annotations

import json

import numpy as np
import pytest

from media.errors import AVStudioError
from models.bgm_index import FLAT_MAX, TrackIndex, TrackIndexError, normalized


def _library(n_tracks=50, windows=8, d=32, seed=0):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n_tracks * windows, d)).astype(np.float32)
    tracks = np.repeat(np.arange(n_tracks), windows)
    return vectors, tracks, [f"bgm/{t}.wav" for t in range(n_tracks)]


def _true_tracks(vectors, tracks, query, k):
    """Brute force: each track's best cosine, the k best tracks."""
    cos = normalized(vectors) @ normalized(query[None])[0]
    best = {t: cos[tracks == t].max() for t in np.unique(tracks)}
    order = sorted(best, key=lambda t: -best[t])[:k]
    return order, [best[t] for t in order]


def test_exact_search_returns_the_true_nearest_tracks():
    vectors, tracks, paths = _library()
    index = TrackIndex(vectors, tracks, paths)
    assert index.kind == "flat"
    queries = np.random.default_rng(1).standard_normal((5, 32)).astype(np.float32) * 3  # scale must not matter
    scores, found = index.search(queries, 5)
    assert scores.shape == found.shape == (5, 5) and found.dtype == np.int64
    for q, s_row, t_row in zip(queries, scores, found):
        want, want_scores = _true_tracks(vectors, tracks, q, 5)
        assert list(t_row) == want
        np.testing.assert_allclose(s_row, want_scores, atol=1e-5)
        assert np.all(np.diff(s_row) <= 1e-7)  # best first


def test_windows_of_one_track_collapse_to_its_best_window():
    d = 16
    rng = np.random.default_rng(2)
    target = rng.standard_normal(d).astype(np.float32)
    # track 0: 30 windows all next to the query (they would fill the top 10 windows); tracks 1..20 far
    near = target + 0.01 * rng.standard_normal((30, d)).astype(np.float32)
    far = rng.standard_normal((20 * 3, d)).astype(np.float32)
    vectors = np.concatenate([near, far])
    tracks = np.concatenate([np.zeros(30, int), np.repeat(np.arange(1, 21), 3)])
    index = TrackIndex(vectors, tracks, [f"t{i}" for i in range(21)])
    _, found = index.search(target[None], 10)  # needs > 4*10 windows: the doubling search
    assert found[0, 0] == 0 and len(set(found[0])) == 10 and (found[0] >= 0).all()
    assert list(found[0]) == _true_tracks(vectors, tracks, target, 10)[0]
    assert index.search_paths(target, 3)[0][0] == "t0"


def test_fewer_tracks_than_k_pads():
    vectors, tracks, paths = _library(n_tracks=3, windows=4)
    scores, found = TrackIndex(vectors, tracks, paths).search(vectors[:2], 5)
    assert (found[:, :3] >= 0).all() and (found[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_save_load_round_trip_gives_identical_results(tmp_path, kind):
    vectors, tracks, paths = _library(n_tracks=100, windows=20)
    index = TrackIndex(vectors, tracks, paths, kind=kind)
    queries = vectors[::97] + 0.1
    before = index.search(queries, 7)
    index.save(tmp_path / "idx")
    loaded = TrackIndex.load(tmp_path / "idx")
    assert (loaded.kind, loaded.d, loaded.paths, loaded.params) == (kind, 32, paths, index.params)
    after = loaded.search(queries, 7)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_array_equal(before[0], after[0])


def test_auto_picks_flat_for_small_and_ivf_for_large():
    vectors, tracks, paths = _library(n_tracks=100, windows=20)  # 2,000 vectors
    assert TrackIndex(vectors, tracks, paths).kind == "flat"
    assert len(vectors) <= FLAT_MAX
    ann = TrackIndex(vectors, tracks, paths, flat_max=1000)
    assert ann.kind == "ivf" and ann.params["nlist"] == 51  # 2000 // 39 caps 4 * sqrt(2000) = 179


def _clustered(n_centres, copies, d, noise, rng):
    centres = rng.standard_normal((n_centres, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = np.repeat(centres, copies, axis=0)
    vectors += rng.standard_normal(vectors.shape).astype(np.float32) * noise / np.sqrt(d)
    queries = centres[rng.integers(0, n_centres, 200)]
    queries = queries + rng.standard_normal(queries.shape).astype(np.float32) * noise / np.sqrt(d)
    return vectors, queries


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_ann_recall_against_exact_on_20k(kind):
    rng = np.random.default_rng(3)
    vectors, queries = _clustered(200, 100, 64, 0.5, rng)  # 20,000 vectors, the benchmark's structure
    tracks = np.arange(len(vectors)) // 10
    paths = [str(t) for t in range(tracks.max() + 1)]
    exact = TrackIndex(vectors, tracks, paths, kind="flat")
    ann = TrackIndex(vectors, tracks, paths, kind=kind, threads=1)
    _, want = exact.search_windows(queries, 10)
    _, got = ann.search_windows(queries, 10)
    window_recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want)])
    _, want_t = exact.search(queries, 10)
    _, got_t = ann.search(queries, 10)
    track_recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got_t, want_t)])
    assert window_recall >= 0.95 and track_recall >= 0.95, (window_recall, track_recall)


def test_bad_inputs_raise_the_project_error():
    vectors, tracks, paths = _library(n_tracks=4, windows=2)
    with pytest.raises(TrackIndexError, match="kind"):
        TrackIndex(vectors, tracks, paths, kind="lsh")
    with pytest.raises(TrackIndexError, match="track_ids"):
        TrackIndex(vectors, tracks[:-1], paths)
    with pytest.raises(TrackIndexError, match="track_ids"):
        TrackIndex(vectors, tracks, paths[:2])
    with pytest.raises(TrackIndexError, match="dimension"):
        TrackIndex(vectors, tracks, paths).search(np.zeros((1, 5), np.float32), 2)


def test_missing_or_broken_folder_is_a_clear_error(tmp_path):
    assert issubclass(TrackIndexError, AVStudioError)
    with pytest.raises(TrackIndexError, match="does not exist"):
        TrackIndex.load(tmp_path / "nowhere")
    vectors, tracks, paths = _library(n_tracks=4, windows=2)
    folder = TrackIndex(vectors, tracks, paths).save(tmp_path / "idx")

    (folder / "track_ids.npy").rename(tmp_path / "ids.npy")
    with pytest.raises(TrackIndexError, match="missing track_ids.npy"):
        TrackIndex.load(folder)
    (tmp_path / "ids.npy").rename(folder / "track_ids.npy")

    meta = (folder / "meta.json").read_text()
    (folder / "meta.json").write_text("{not json")
    with pytest.raises(TrackIndexError, match="broken"):
        TrackIndex.load(folder)
    (folder / "meta.json").write_text(meta)

    (folder / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(TrackIndexError, match=r"cannot read index\.faiss"):
        TrackIndex.load(folder)

    TrackIndex(vectors[:4], tracks[:4], paths).save(folder)  # an index of 4 vectors ...
    np.save(folder / "track_ids.npy", tracks)  # ... with the ids of 8
    with pytest.raises(TrackIndexError, match="broken"):
        TrackIndex.load(folder)

    bad = json.loads(meta) | {"paths": paths[:1]}
    TrackIndex(vectors, tracks, paths).save(folder)
    (folder / "meta.json").write_text(json.dumps(bad))
    with pytest.raises(TrackIndexError, match="track ids outside"):
        TrackIndex.load(folder)
