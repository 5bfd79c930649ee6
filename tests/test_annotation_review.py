"""Review (agreement, aggregation, annotator figures) and export of human labels, on tiny synthetic records."""
from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import datasets
import krippendorff
import numpy as np
import pytest

from annotation import review
from annotation.errors import AnnotationError
from annotation.export import build_dataset, dataset_card, export, load_labels

CANDIDATES = ["tracks/a.flac", "tracks/b.flac", "tracks/c.flac"]
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
_ids = itertools.count(1)


def label(item_id, annotator, value, *, kind="pair", minutes=0.0, gold=False, answer=None, order=None,
          dwell_ms=4000, tags=(), hum=None):
    """A label record as the store gives it."""
    presentation = ({"order": list(order or reversed(CANDIDATES))} if kind == "pair"
                    else {"gains": {"speech_gain_db": 0.0, "bgm_gain_db": -12.0, "duck_db": -6.0}})
    n = next(_ids)
    return {"label_id": n, "client_id": f"c{n}", "task": "t", "kind": kind, "item_id": item_id,
            "item_key": f"key{item_id}", "annotator": annotator, "value": value, "tags": list(tags),
            "dwell_ms": dwell_ms, "presentation": presentation, "hum_sha256": "ab" if hum else None,
            "hum_path": hum, "hum_flag": False if hum else None, "is_gold": gold,
            "gold_answer": answer, "app_version": "0.1.0",
            "created_at": (T0 + timedelta(minutes=minutes)).isoformat(), "revision": 0}


def item(item_id, kind="pair", *, gold=False, answer=None, root="/media"):
    payload = ({"video": f"videos/v{item_id}.mp4", "candidates": list(CANDIDATES)} if kind == "pair"
               else {"speech": f"speech/s{item_id}.wav", "bgm": f"music/m{item_id}.ogg"})
    return {"item_id": item_id, "item_key": f"key{item_id}", "is_gold": gold, "gold_answer": answer,
            "payload": payload, "media_root": root}


A, B, C = CANDIDATES


# ------------------------------------------------------------------------------------------------
# gold, alpha, uncertainty
# ------------------------------------------------------------------------------------------------
def test_gold_correct():
    assert review.gold_correct("pair", A, A) and review.gold_correct("pair", None, None)
    assert not review.gold_correct("pair", A, B) and not review.gold_correct("pair", None, A)
    assert review.gold_correct("bgm", 4, 5) and review.gold_correct("bgm", 3, 3)
    assert not review.gold_correct("bgm", 2, 4)


def test_alpha_undefined_is_none():
    assert review.alpha([], "pair") is None
    # one item with two labels: not enough items
    assert review.alpha([label(1, "ann", A), label(1, "bob", B), label(2, "ann", A)], "pair") is None
    # a single value everywhere: no expected disagreement
    assert review.alpha([label(i, w, 4, kind="bgm") for i in (1, 2) for w in ("ann", "bob")], "bgm") is None


def test_alpha_bgm_matches_the_package_and_ignores_single_labels():
    ratings = {"ann": [1, 2, 3, 4, 5, 3], "bob": [1, 3, 3, 5, 4, np.nan], "cat": [2, 2, np.nan, 4, 5, 3]}
    labels = [label(i, w, int(r), kind="bgm") for w, rs in ratings.items() for i, r in enumerate(rs)
              if not np.isnan(r)]
    expected = krippendorff.alpha(reliability_data=list(ratings.values()), level_of_measurement="ordinal",
                                  value_domain=[1, 2, 3, 4, 5])
    assert review.alpha(labels, "bgm") == pytest.approx(expected)
    assert review.alpha(labels + [label(9, "ann", 1, kind="bgm")], "bgm") == pytest.approx(expected)
    perfect = [label(i, w, r, kind="bgm") for i, r in enumerate([1, 3, 5]) for w in ("ann", "bob")]
    assert review.alpha(perfect, "bgm") == pytest.approx(1.0)


def test_alpha_pair_codes_tracks_per_item_whatever_order_was_shown():
    picks = {1: [A, A, B], 2: [None, None, None], 3: [C, C, C], 4: [A, B, None]}
    shown = itertools.cycle([CANDIDATES, list(reversed(CANDIDATES)), [B, C, A]])
    labels = [label(i, w, v, order=next(shown)) for i, vs in picks.items() for w, v in zip("xyz", vs)]
    a = review.alpha(labels, "pair")
    # the same as the package on codes 0 = none, 1 + rank among the sorted candidates
    code = {None: 0, A: 1, B: 2, C: 3}
    data = [[code[picks[i][k]] for i in picks] for k in range(3)]
    assert a == pytest.approx(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))
    assert 0 < a < 1
    agreeing = [label(i, w, v) for i, v in enumerate([A, B, None, C]) for w in "xyz"]
    assert review.alpha(agreeing, "pair") == pytest.approx(1.0)


def test_item_uncertainty_is_highest_without_labels():
    assert review.item_uncertainty("pair", [], 4) == pytest.approx(0.75)
    assert review.item_uncertainty("pair", [A, A], 4) == pytest.approx(0.5)  # 1 - 3/6
    for n in range(1, 4):
        for values in itertools.product([A, B, None], repeat=n):
            assert 0 <= review.item_uncertainty("pair", list(values), 4) < 0.75
        for ratings in itertools.product([1, 3, 5], repeat=n):
            assert 0 <= review.item_uncertainty("bgm", list(ratings)) < review.item_uncertainty("bgm", [])
    assert review.item_uncertainty("bgm", []) == pytest.approx(0.6)
    # agreement makes an item more certain; so do more labels
    assert review.item_uncertainty("bgm", [4, 4, 4]) < review.item_uncertainty("bgm", [1, 4, 5])
    assert review.item_uncertainty("bgm", [4] * 6) < review.item_uncertainty("bgm", [4] * 2)
    assert review.item_uncertainty("pair", [A, A, A], 4) < review.item_uncertainty("pair", [A, B, None], 4)


# ------------------------------------------------------------------------------------------------
# aggregation
# ------------------------------------------------------------------------------------------------
def test_aggregate_pair():
    # on the gold items (answer C) ann is right while bob and cat outvote her with B: with the gold answers
    # Dawid-Skene learns that bob's B means C and sides with ann on item 3
    labels = [label(10, "ann", C, gold=True, answer=C), label(10, "bob", B, gold=True, answer=C),
              label(10, "cat", B, gold=True, answer=C),
              label(11, "ann", C, gold=True, answer=C), label(11, "bob", B, gold=True, answer=C),
              label(11, "cat", B, gold=True, answer=C),
              label(1, "ann", A), label(1, "bob", A), label(1, "cat", A),
              label(2, "ann", None), label(2, "bob", None),
              label(3, "ann", C), label(3, "bob", B),
              label(4, "bob", C), label(4, "cat", B)]
    items = [item(i) for i in (1, 2, 3, 4, 5)] + [item(10, gold=True, answer=C), item(11, gold=True, answer=C)]
    out = {a["item_id"]: a for a in review.aggregate(labels, items, "pair")}
    assert set(out) == {1, 2, 3, 4, 10, 11}  # item 5 has no label
    assert out[10]["is_gold"] and not out[1]["is_gold"]
    assert out[1]["aggregate"] == A and out[1]["agreement"] == 1.0 and out[1]["n"] == 3
    assert out[2]["aggregate"] is None and out[2]["majority"] is None
    assert out[3]["majority"] == B  # a 1-1 tie goes to the smaller path
    assert out[3]["aggregate"] == C  # the annotator right on gold wins
    assert out[10]["aggregate"] == C and out[10]["majority"] == B  # gold answers are known truths
    assert out[3]["agreement"] == 0.5 and all(a["method"] == "dawid_skene" for a in out.values())
    assert all(0 <= a["score"] <= 1 and 0 <= a["uncertainty"] <= 1 for a in out.values())
    assert out[3]["uncertainty"] > out[1]["uncertainty"]


def test_aggregate_pair_falls_back_to_the_majority():
    (only,) = review.aggregate([label(1, "ann", B)], [item(1)], "pair")
    assert only["method"] == "majority" and only["aggregate"] == B and only["score"] == 1.0
    assert only["uncertainty"] == pytest.approx(1 - 2 / 5)


def test_aggregate_bgm():
    rated = {"ann": {1: 5, 2: 3, 3: 1}, "bob": {1: 4, 2: 4, 3: 2}, "cat": {1: 2, 2: 1, 3: 1}, "dan": {4: 3}}
    labels = [label(i, w, r, kind="bgm") for w, rs in rated.items() for i, r in rs.items()]
    out = {a["item_id"]: a for a in review.aggregate(labels, [item(i, "bgm") for i in range(1, 5)], "bgm")}
    assert out[1]["aggregate"] == pytest.approx(11 / 3) and out[1]["majority"] == 4.0
    assert out[2]["majority"] == 3.0 and out[1]["method"] == "bradley_terry"
    # item 1 beats item 2 for ann and cat, loses for bob; item 3 never wins
    assert out[1]["score"] > out[2]["score"] > out[3]["score"]
    assert out[4]["score"] is None  # its only annotator rated nothing else
    assert out[4]["agreement"] == 1.0 and out[4]["n"] == 1
    assert out[3]["agreement"] == pytest.approx(1 - np.std([1, 2, 1]) / 2)


def test_aggregate_bgm_without_comparisons():
    out = review.aggregate([label(1, "ann", 4, kind="bgm"), label(1, "bob", 2, kind="bgm")], [], "bgm")
    assert out[0]["score"] is None and out[0]["method"] == "mean" and out[0]["agreement"] == pytest.approx(0.5)
    assert out[0]["item_key"] == "key1"  # from the labels when the item is not given


# ------------------------------------------------------------------------------------------------
# annotators, adjudication, task figures
# ------------------------------------------------------------------------------------------------
def test_should_pause():
    assert not review.should_pause([False] * 4)  # too few gold results yet
    assert review.should_pause([False] * 5)
    assert not review.should_pause([True] * 6 + [False] * 4)  # 60% is not below 60%
    assert review.should_pause([True] * 10 + [False] * 5 + [True] * 5, window=10, threshold=0.6)
    assert not review.should_pause([False] * 10 + [True] * 10)  # only the last 10 count


def test_annotator_stats():
    labels = [label(1, "ann", A, minutes=0, dwell_ms=2000), label(2, "ann", B, minutes=1, dwell_ms=4000),
              label(3, "ann", None, minutes=121, dwell_ms=6000),  # a 2 h break counts as 10 minutes
              label(10, "ann", A, minutes=122, gold=True, answer=B),
              label(11, "ann", A, minutes=123, gold=True, answer=A),
              label(1, "bob", A, minutes=5)]
    stats = {s["annotator"]: s for s in review.annotator_stats(labels, paused={"bob"}, window=1)}
    ann, bob = stats["ann"], stats["bob"]
    assert ann["n_labels"] == 5 and ann["n_gold"] == 2 and ann["gold_accuracy"] == 0.5
    assert ann["rolling_gold_accuracy"] == 1.0  # the last gold label (window=1) was right
    assert ann["median_dwell_s"] == 4.0
    active_s = 60 + 600 + 60 + 60 + 4.0
    assert ann["throughput_per_hour"] == pytest.approx(5 / (active_s / 3600))
    assert not ann["paused"] and bob["paused"]
    assert bob["throughput_per_hour"] is None and bob["gold_accuracy"] is None


def test_adjudication_queue():
    aggs = [{"item_key": "a", "n": 3, "agreement": 0.34, "is_gold": False},
            {"item_key": "b", "n": 2, "agreement": 0.5, "is_gold": False},
            {"item_key": "c", "n": 4, "agreement": 0.5, "is_gold": False},
            {"item_key": "d", "n": 1, "agreement": 1.0, "is_gold": False},
            {"item_key": "e", "n": 3, "agreement": 0.0, "is_gold": True}]
    assert [a["item_key"] for a in review.adjudication_queue(aggs)] == ["a", "c", "b"]
    assert [a["item_key"] for a in review.adjudication_queue(aggs, k=1)] == ["a"]


def test_task_stats_leave_paused_annotators_out():
    meta = {"name": "t", "kind": "bgm", "per_item": 2}
    labels = [label(1, "ann", 5, kind="bgm", tags=["mood"]), label(1, "bob", 4, kind="bgm"),
              label(2, "ann", 2, kind="bgm", tags=["tempo", "mood"]), label(2, "eve", 1, kind="bgm"),
              label(9, "ann", 3, kind="bgm", gold=True, answer=3)]
    items = [item(1, "bgm"), item(2, "bgm"), item(3, "bgm"), item(9, "bgm", gold=True, answer=3)]
    stats = review.task_stats(meta, labels, items, {"eve"})
    assert (stats["n_items"], stats["n_gold_items"], stats["n_labels"], stats["n_labels_included"]) == (4, 1, 5, 4)
    assert stats["n_annotators"] == 3 and stats["excluded"] == ["eve"]
    assert stats["n_items_complete"] == 1 and stats["percent_complete"] == pytest.approx(100 / 3, abs=0.01)
    assert stats["label_distribution"]["ratings"] == {"1": 0, "2": 1, "3": 1, "4": 1, "5": 1}
    assert stats["label_distribution"]["tags"]["mood"] == 2
    assert stats["alpha"] is None and stats["alpha_level"] == "ordinal"
    json.dumps(stats)  # the summary is written as JSON


# ------------------------------------------------------------------------------------------------
# export
# ------------------------------------------------------------------------------------------------
PAIR_META = {"name": "pairs", "kind": "pair", "instructions": "Pick the track that fits.", "per_item": 2,
             "gold_rate": 0.1, "media_root": "/media", "n_items": 4, "created_at": T0.isoformat()}
BGM_META = dict(PAIR_META, name="bgm-fit", kind="bgm", instructions="Rate the fit.")


def _pair_task(root, hum=None):
    items = [item(i, root=str(root)) for i in (1, 2, 3)] + [item(9, gold=True, answer=B, root=str(root))]
    labels = [label(1, "ann", A, hum=hum), label(1, "bob", A), label(2, "ann", None), label(2, "bob", B),
              label(9, "ann", B, gold=True, answer=B), label(3, "eve", C)]
    return items, labels


def _make_media(root, items):
    for it in items:
        for rel in [it["payload"].get("video"), *it["payload"].get("candidates", []),
                    it["payload"].get("speech"), it["payload"].get("bgm")]:
            if rel:
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                (root / rel).write_bytes(rel.encode())


def test_build_dataset_pair(tmp_path):
    items, labels = _pair_task(tmp_path, hum="/hums/h1.webm")
    ds = build_dataset(PAIR_META, labels, items, excluded={"eve"})
    assert set(ds) == {"labels", "items"}
    lab = ds["labels"]
    assert isinstance(lab.features["sample_audio"], datasets.Audio) and not lab.features["sample_audio"].decode
    assert isinstance(lab.features["sample_video"], datasets.Video) and not lab.features["sample_video"].decode
    assert isinstance(ds["items"].features["matching_audio"], datasets.Audio)
    assert lab.num_rows == 5 and "eve" not in lab["annotator"]
    rows = lab.data.to_pylist()
    none_row = next(r for r in rows if r["item_key"] == "key2" and r["annotator"] == "ann")
    assert none_row["value"] == "" and none_row["none_fits"] and none_row["matching_audio"] is None
    first = next(r for r in rows if r["item_key"] == "key1" and r["annotator"] == "ann")
    assert first["sample_audio"]["path"] == "/hums/h1.webm"
    assert first["matching_audio"]["path"] == str(tmp_path / A)
    assert first["sample_video"]["path"] == str(tmp_path / "videos/v1.mp4")
    assert json.loads(first["presentation"])["order"] == list(reversed(CANDIDATES))
    assert sum(lab["is_gold"]) == 1
    keys = ds["items"]["item_key"]
    assert keys == ["key1", "key2"]  # gold item 9 left out; item 3 only had eve's label
    assert ds["items"]["aggregate"][0] == A and ds["items"]["n"] == [2, 2]


def test_build_dataset_empty_has_the_columns():
    for meta in (PAIR_META, BGM_META):
        ds = build_dataset(meta, [], [])
        assert ds["labels"].num_rows == 0 and ds["items"].num_rows == 0
        media = ("sample_audio", "sample_video", "matching_audio") if meta["kind"] == "pair" else ("speech", "bgm")
        for name in ("item_key", "annotator", "value", "tags", "dwell_ms", "label_id", "hum_flag", *media):
            assert name in ds["labels"].column_names
        for name in ("item_key", "n", "aggregate", "majority", "score", "agreement", "uncertainty"):
            assert name in ds["items"].column_names


def test_build_dataset_refuses_labels_of_unknown_items():
    with pytest.raises(AnnotationError, match="not in it"):
        build_dataset(PAIR_META, [label(7, "ann", A)], [item(1)])


def test_export_round_trip_pair(tmp_path):
    root = tmp_path / "media"
    items, labels = _pair_task(root)
    _make_media(root, items)
    summary = export(PAIR_META, labels, items, {"eve"}, tmp_path / "out")
    assert summary["n_labels"] == 5 and summary["n_items"] == 2 and summary["excluded"] == ["eve"]
    folder = tmp_path / "out" / "pairs"
    card = (folder / "README.md").read_text()
    assert "config_name: pairs" in card and "license: other" in card and "eve" in card
    assert "Dawid-Skene" in card and "Krippendorff" in card
    assert json.loads((folder / "summary.json").read_text())["n_labels_included"] == 5

    loaded = load_labels(tmp_path / "out", "pairs")
    built = build_dataset(PAIR_META, labels, items, {"eve"})
    for split in ("labels", "items"):
        for col in ("item_key", "value", "annotator", "aggregate", "score", "agreement", "n"):
            if col in built[split].column_names:
                assert loaded[split][col] == built[split][col], (split, col)
    chosen = next(r for r in loaded["labels"] if r["value"] == A)
    assert chosen["matching_audio"]["bytes"] == A.encode()  # the media travel with the dataset
    # the task's own folder loads too; another task's name does not
    assert load_labels(folder, "pairs")["labels"].num_rows == 5
    with pytest.raises(AnnotationError, match="holds the labels of task 'pairs'"):
        load_labels(folder, "bgm-fit")
    with pytest.raises(AnnotationError, match="no labels of task 'other'.*pairs"):
        load_labels(tmp_path / "out", "other")
    with pytest.raises(AnnotationError, match="neither an export folder"):
        load_labels(tmp_path / "missing", "pairs")


def test_export_round_trip_bgm_and_empty(tmp_path):
    root = tmp_path / "media"
    items = [item(i, "bgm", root=str(root)) for i in (1, 2)]
    _make_media(root, items)
    labels = [label(1, "ann", 5, kind="bgm", tags=["mood"]), label(2, "ann", 2, kind="bgm"),
              label(1, "bob", 4, kind="bgm"), label(2, "bob", 1, kind="bgm", tags=["too loud", "tempo"])]
    export(BGM_META, labels, items, set(), tmp_path / "out")
    export(dict(BGM_META, name="empty"), [], [], set(), tmp_path / "out")
    loaded = load_labels(tmp_path / "out", "bgm-fit")
    assert sorted(zip(loaded["labels"]["item_key"], loaded["labels"]["annotator"], loaded["labels"]["value"])) == \
        [("key1", "ann", 5), ("key1", "bob", 4), ("key2", "ann", 2), ("key2", "bob", 1)]
    assert sorted(map(tuple, loaded["labels"]["tags"])) == [(), (), ("mood",), ("too loud", "tempo")]
    by_key = {r["item_key"]: r for r in loaded["items"]}
    assert by_key["key1"]["aggregate"] == 4.5 and by_key["key1"]["score"] > by_key["key2"]["score"]
    assert by_key["key2"]["speech"]["bytes"] == b"speech/s2.wav"
    empty = load_labels(tmp_path / "out", "empty")
    assert empty["labels"].num_rows == 0 and "speech" in empty["items"].column_names


def test_export_refuses_missing_media(tmp_path):
    items, labels = _pair_task(tmp_path / "nowhere")
    with pytest.raises(AnnotationError, match="missing"):
        export(PAIR_META, labels, items, set(), tmp_path / "out")
    with pytest.raises(AnnotationError, match="folder name"):
        export(dict(PAIR_META, name="../up"), [], [], set(), tmp_path / "out")


def test_dataset_card_bgm():
    stats = {"n_items": 3, "n_gold_items": 1, "n_labels": 9, "n_labels_included": 6, "n_annotators": 3,
             "n_items_complete": 2, "percent_complete": 100.0, "alpha": 0.4123, "alpha_level": "ordinal",
             "annotators": [{"annotator": "eve", "rolling_gold_accuracy": 0.3, "n_gold": 10, "n_labels": 3}]}
    card = dataset_card(BGM_META, stats, {"eve"})
    assert card.startswith("---\n") and "config_name: bgm-fit" in card and "path: bgm-fit/labels-*" in card
    for anchor in ("1 = clashes with the speech", "2 = poor fit", "3 = acceptable", "4 = good fit",
                   "5 = made for it"):
        assert anchor in card
    assert "0.412 (ordinal)" in card and "Bradley-Terry" in card and "eve: gold accuracy 30%" in card
    assert "`speech`" in card and "`bgm`" in card


def test_bradley_terry_is_the_maximum_likelihood_fit():
    """Expected wins equal wins for every item (anchor prior included): the likelihood equations hold."""
    rng = np.random.default_rng(3)
    labels = [label(int(i), f"a{a}", int(rng.integers(1, 6)), kind="bgm")
              for a in range(4) for i in rng.choice(30, 15, replace=False)]
    strengths = review._bradley_terry(labels)
    by_annotator = {}
    for lb in labels:
        by_annotator.setdefault(lb["annotator"], []).append((lb["item_id"], lb["value"]))
    games = [((i, j) if ri > rj else (j, i)) for rated in by_annotator.values()
             for a, b in review._comparison_pairs(len(rated))
             for (i, ri), (j, rj) in [(rated[a], rated[b])] if ri != rj]
    games += [g for i in strengths for g in ((i, "anchor"), ("anchor", i))]
    p = {i: np.exp(s) for i, s in strengths.items()} | {"anchor": 1.0}
    for i in p:
        wins = sum(w == i for w, _ in games)
        expected = sum(p[i] / (p[w] + p[lo]) for w, lo in games if i in (w, lo))
        assert wins == pytest.approx(expected, abs=1e-6)


def test_bradley_terry_comparisons_grow_linearly_for_a_prolific_annotator():
    small = review._comparison_pairs(2 * review.BT_PARTNERS + 1)
    assert len(small) == (2 * review.BT_PARTNERS + 1) * review.BT_PARTNERS  # all against all
    big = review._comparison_pairs(5000)
    assert len(big) == len(set(big)) == 5000 * review.BT_PARTNERS // 2
    assert all(a != b for a, b in big) and {a for a, _ in big} == set(range(5000))
    labels = [label(i, "rule", 1 + i % 5, kind="bgm") for i in range(1, 3001)]
    strengths = review._bradley_terry(labels)  # 3,000 items from one annotator: seconds, not gigabytes
    assert len(strengths) == 3000
    rated_5, rated_1 = range(4, 3001, 5), range(5, 3001, 5)  # rating 1 + i % 5
    assert min(strengths[i] for i in rated_5) > max(strengths[i] for i in rated_1)


def test_export_marks_the_label_source_and_can_keep_paths(tmp_path):
    meta = {"name": "fit", "kind": "bgm", "media_root": str(tmp_path)}
    for rel in ("speech/s1.wav", "music/m1.ogg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x" * 10)
    human = label(1, "ann", 4, kind="bgm")
    rule = {**label(1, "rule", 2, kind="bgm"), "label_source": "rule"}
    ds = build_dataset(meta, [human, rule], [item(1, "bgm", root=str(tmp_path))], embed_media=False)
    assert sorted(ds["labels"]["label_source"]) == ["human", "rule"]
    assert ds["labels"].features["speech"] == datasets.Value("string")  # a path, not the file's bytes
    assert ds["labels"]["speech"][0] == str(tmp_path / "speech" / "s1.wav")
