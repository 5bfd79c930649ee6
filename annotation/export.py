"""Export of a task's labels as a Hugging Face dataset, and :func:`load_labels`, which the trainers read.

A task exports to one :class:`datasets.DatasetDict` with two splits:

* ``labels``: one row per label of the annotators kept (gold items included, ``is_gold`` true);
* ``items``: one row per non-gold item with at least one kept label: the aggregated answer, its score,
  agreement and uncertainty (:func:`annotation.review.aggregate`).

Media columns hold absolute paths cast to ``Audio(decode=False)`` / ``Video(decode=False)``: nothing is
decoded (there is no torchaudio/torchcodec here), and ``save_to_disk`` / ``push_to_hub`` copy the files'
bytes into the dataset, so an export is self-contained. Saved locally, it is
``OUT/<task>/`` (``load_from_disk``) with the dataset card as ``README.md`` and the figures as
``summary.json``; on the Hub, each task is a config of the repo.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import datasets

from annotation.errors import AnnotationError
from annotation.review import aggregate, task_stats

__all__ = ["MEDIA_COLUMNS", "build_dataset", "dataset_card", "export", "load_labels"]

# the media columns of each split by task kind, and their feature
MEDIA_COLUMNS = {
    ("pair", "labels"): {"sample_audio": "audio", "sample_video": "video", "matching_audio": "audio"},
    ("pair", "items"): {"sample_video": "video", "matching_audio": "audio"},
    ("bgm", "labels"): {"speech": "audio", "bgm": "audio"},
    ("bgm", "items"): {"speech": "audio", "bgm": "audio"},
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_STR, _INT, _FLOAT, _BOOL = (datasets.Value("string"), datasets.Value("int64"), datasets.Value("float64"),
                             datasets.Value("bool"))


def _kind(task_meta: Mapping) -> str:
    kind = task_meta.get("kind")
    if kind not in ("pair", "bgm"):
        raise AnnotationError(f"task {task_meta.get('name')!r} has kind {kind!r}; expected 'pair' or 'bgm'")
    return kind


def _plain_features(kind: str, split: str) -> datasets.Features:
    """The split's columns before the media columns are cast (media as plain path strings)."""
    if split == "labels":
        cols = {"item_key": _STR, "annotator": _STR, "value": _STR if kind == "pair" else _INT}
        if kind == "pair":
            cols["none_fits"] = _BOOL
        cols.update({"tags": datasets.List(_STR), "dwell_ms": _INT, "presentation": _STR, "is_gold": _BOOL,
                     "revision": _INT, "app_version": _STR, "created_at": _STR, "label_id": _INT,
                     "client_id": _STR, "hum_flag": _BOOL, "label_source": _STR})
    else:
        agg = _STR if kind == "pair" else _FLOAT
        cols = {"item_key": _STR, "n": _INT, "aggregate": agg, "majority": agg}
        if kind == "pair":
            cols["none_fits"] = _BOOL
        cols.update({"score": _FLOAT, "agreement": _FLOAT, "uncertainty": _FLOAT, "method": _STR})
    cols.update({name: _STR for name in MEDIA_COLUMNS[(kind, split)]})
    return datasets.Features(cols)


def _table(rows: list[dict], kind: str, split: str, embed_media: bool = True) -> datasets.Dataset:
    """A split from its rows: plain columns first, then the media columns cast to Audio/Video (left as
    path strings with ``embed_media=False``)."""
    features = _plain_features(kind, split)
    table = datasets.Dataset.from_dict({name: [row[name] for row in rows] for name in features},
                                       features=features, split=datasets.Split(split))
    if not embed_media:
        return table
    for name, media in MEDIA_COLUMNS[(kind, split)].items():
        table = table.cast_column(name, datasets.Audio(decode=False) if media == "audio"
                                  else datasets.Video(decode=False))
    return table


def _absolute(root: str, rel: str | None) -> str | None:
    """A media path relative to ``root`` as an absolute path; ``None`` stays ``None``."""
    if not rel:
        return None
    return str(Path(root or ".", rel).resolve())


def _item_media(kind: str, item: Mapping, track: str | None, root: str) -> dict:
    """The media columns shared by both splits: pair: the video and ``track`` (the chosen or aggregate
    candidate); bgm: the speech and the music. Paths are relative to the item's media root, else ``root``
    (the task's)."""
    payload, root = item.get("payload") or {}, item.get("media_root") or root
    if kind == "pair":
        return {"sample_video": _absolute(root, payload.get("video")), "matching_audio": _absolute(root, track)}
    return {"speech": _absolute(root, payload.get("speech")), "bgm": _absolute(root, payload.get("bgm"))}


def build_dataset(task_meta: Mapping, labels: Iterable[Mapping], items: Iterable[Mapping],
                  excluded: Iterable[str] = frozenset(), embed_media: bool = True) -> datasets.DatasetDict:
    """A task's labels and aggregates as a ``DatasetDict`` with splits ``labels`` and ``items``.

    Parameters
    ----------
    task_meta : the task (``name``, ``kind``, ...)
    labels : current label records of the task
    items : the task's item records
    excluded : annotators whose labels are left out (paused for low gold accuracy)
    embed_media : False keeps the media columns as absolute path strings instead of Audio/Video columns
        (``save_to_disk`` copies an Audio/Video file's bytes into every row that names it: a bootstrap set
        pairing each of 500 files with 40 others would hold each file 40 times)

    Returns
    -------
    datasets.DatasetDict
        ``labels``: ``item_key, annotator, value`` (pair: the chosen path, "" for none fits, and
        ``none_fits``; bgm: the rating), ``tags, dwell_ms, presentation`` (JSON), ``is_gold, revision,
        app_version, created_at, label_id, client_id, hum_flag, label_source`` (``human`` unless the record says
        otherwise, e.g. ``rule`` for bootstrap labels) and the media (pair: ``sample_audio`` the
        hum or None, ``sample_video``, ``matching_audio`` the chosen track or None; bgm: ``speech, bgm``).
        ``items``: ``item_key, n, aggregate, majority`` (pair: path, "" for none fits, and ``none_fits``;
        bgm: mean and median rating), ``score, agreement, uncertainty, method`` and the media (pair:
        ``sample_video`` and ``matching_audio`` the aggregate's track; bgm: ``speech, bgm``).
        An empty task gives both splits with these columns and no rows.

    Raises
    ------
    AnnotationError
        The task's kind is unknown, or a label names an item missing from ``items``.
    """
    kind, root = _kind(task_meta), str(task_meta.get("media_root") or "")
    excluded = set(excluded)
    by_id = {it["item_id"]: it for it in items}
    kept = sorted((lb for lb in labels if lb["annotator"] not in excluded),
                  key=lambda lb: (lb["item_id"], lb["created_at"], lb["label_id"]))
    missing = sorted({lb["item_id"] for lb in kept} - set(by_id))
    if missing:
        raise AnnotationError(f"labels of task {task_meta['name']!r} name items that are not in it: "
                              f"{', '.join(map(str, missing[:5]))}")

    label_rows = []
    for lb in kept:
        item = by_id[lb["item_id"]]
        row = {"item_key": lb["item_key"], "annotator": lb["annotator"],
               "tags": list(lb.get("tags") or []), "dwell_ms": int(lb.get("dwell_ms") or 0),
               "presentation": json.dumps(lb.get("presentation") or {}, sort_keys=True),
               "is_gold": bool(lb.get("is_gold")), "revision": int(lb.get("revision") or 0),
               "app_version": str(lb.get("app_version") or ""), "created_at": lb["created_at"],
               "label_id": int(lb["label_id"]), "client_id": str(lb.get("client_id") or ""),
               "hum_flag": lb.get("hum_flag"), "label_source": str(lb.get("label_source") or "human")}
        if kind == "pair":
            row.update({"value": lb["value"] or "", "none_fits": lb["value"] is None,
                        "sample_audio": lb.get("hum_path") or None})
        else:
            row["value"] = int(lb["value"])
        row.update(_item_media(kind, item, lb["value"] if kind == "pair" else None, root))
        label_rows.append(row)

    item_rows = []
    for agg in aggregate(kept, by_id.values(), kind):
        if agg["is_gold"]:
            continue
        row = {key: agg[key] for key in ("item_key", "n", "score", "agreement", "uncertainty", "method")}
        if kind == "pair":
            row.update({"aggregate": agg["aggregate"] or "", "majority": agg["majority"] or "",
                        "none_fits": agg["aggregate"] is None})
        else:
            row.update({"aggregate": float(agg["aggregate"]), "majority": float(agg["majority"])})
        row.update(_item_media(kind, by_id[agg["item_id"]], agg["aggregate"] if kind == "pair" else None, root))
        item_rows.append(row)

    return datasets.DatasetDict({"labels": _table(label_rows, kind, "labels", embed_media),
                                 "items": _table(item_rows, kind, "items", embed_media)})


# ------------------------------------------------------------------------------------------------
# the dataset card
# ------------------------------------------------------------------------------------------------
_COLUMNS = {
    "pair": {
        "labels": [
            ("value", "the chosen candidate track, a path relative to the media root; empty for none fits"),
            ("none_fits", "the annotator found no candidate that matches the video"),
            ("sample_audio", "the annotator's hum of the music they imagined (may be empty)"),
            ("sample_video", "the video, watched muted"),
            ("matching_audio", "the chosen track (empty for none fits)"),
            ("hum_flag", "the hum and the chosen track disagree"),
            ("presentation", "JSON: the candidates in the order shown (`order`)"),
        ],
        "items": [
            ("aggregate", "the Dawid-Skene answer: a track path, empty for none fits"),
            ("majority", "the most common answer (ties to the smallest path)"),
            ("none_fits", "the aggregate is none fits"),
            ("score", "the Dawid-Skene posterior probability of the aggregate"),
            ("sample_video", "the video"),
            ("matching_audio", "the aggregate's track (empty for none fits)"),
        ],
    },
    "bgm": {
        "labels": [
            ("value", "the rating 1-5 of how well the music fits the speech"),
            ("tags", "reasons ticked: mood, tempo, too busy, too loud, genre"),
            ("speech", "the speech segment"),
            ("bgm", "the background-music track"),
            ("presentation", "JSON: the mix gains heard (`gains`: speech, music and ducking in dB)"),
        ],
        "items": [
            ("aggregate", "the mean rating"),
            ("majority", "the median rating"),
            ("score", ("Bradley-Terry log-strength from each annotator's ratings turned into pairwise "
                      "comparisons (0 = an item with an even record; empty when never compared)")),
            ("speech", "the speech segment"),
            ("bgm", "the background-music track"),
        ],
    },
}
_COMMON = {
    "labels": [
        ("item_key", "the item's stable key"), ("annotator", "who labelled it"),
        ("dwell_ms", "time on the item before submitting, in ms"),
        ("is_gold", "a gold item with a known answer, used to check annotators"),
        ("revision", "how many times the annotator revised this label"),
        ("app_version", "the labelling app's version"), ("created_at", "when it was submitted (UTC, ISO 8601)"),
        ("label_id", "the label's id in the store"), ("client_id", "the submission's client-side id"),
        ("label_source", "who gave the label: human (an annotator in the labelling app), or rule (written by "
                         "a bootstrap rule from other labels, e.g. training/make_bgm_fit_labels.py)"),
    ],
    "items": [
        ("item_key", "the item's stable key"), ("n", "how many labels it has"),
        ("agreement", "pair: the share of labels equal to the majority; bgm: 1 - std/2 of the ratings"),
        ("uncertainty", ("how uncertain the aggregate still is, 0-1 (Dirichlet posterior for pair, "
                        "posterior sd of the mean rating for bgm)")),
        ("method", "how the item was aggregated"),
    ],
}


def _size_category(n: int) -> str:
    return "n<1K" if n < 1000 else "1K<n<10K" if n < 10_000 else "10K<n<100K" if n < 100_000 else "100K<n<1M"


def dataset_card(task_meta: Mapping, stats: Mapping, excluded: Iterable[str] = ()) -> str:
    """The dataset card (README.md) of an exported task: YAML front matter naming the task as a config,
    then counts, agreement, exclusions, the label scale, how items were aggregated, and the columns.

    Parameters
    ----------
    task_meta : the task
    stats : :func:`annotation.review.task_stats` of the task (its ``annotators`` give the excluded
        annotators' gold accuracy)
    excluded : annotators left out of the export
    """
    kind, name = _kind(task_meta), task_meta["name"]
    excluded = sorted(set(excluded))
    categories = ["audio-classification", "video-classification"] if kind == "pair" else ["audio-classification"]
    front = ["---", "license: other", "task_categories:", *[f"- {c}" for c in categories],
             "tags:", "- human-annotation", "- audio", *(["- video"] if kind == "pair" else []),
             f"pretty_name: AV Studio labels - {name}",
             "size_categories:", f"- {_size_category(int(stats.get('n_labels_included', 0)))}",
             "configs:", f"- config_name: {name}", "  data_files:",
             "  - split: labels", f"    path: {name}/labels-*", "  - split: items", f"    path: {name}/items-*",
             "---", ""]

    a = stats.get("alpha")
    level = stats.get("alpha_level", "nominal" if kind == "pair" else "ordinal")
    alpha_text = (f"{a:.3f} ({level})" if a is not None
                  else f"not defined yet ({level}; fewer than two items with 2+ labels, or a single value)")
    body = [f"# AV Studio labels: {name}", ""]
    if task_meta.get("instructions"):
        body += ["## Instructions given to annotators", "", str(task_meta["instructions"]).strip(), ""]
    body += ["## Counts", "",
             f"- items: {stats.get('n_items', 0)} ({stats.get('n_gold_items', 0)} gold)",
             f"- labels: {stats.get('n_labels_included', 0)} exported of {stats.get('n_labels', 0)}",
             f"- annotators: {stats.get('n_annotators', 0)}",
             (f"- items complete ({task_meta.get('per_item', '?')} labels each): {stats.get('n_items_complete', 0)}"
             f" ({stats.get('percent_complete', 0.0)}% of non-gold items)"),
             f"- Krippendorff's alpha: {alpha_text}", ""]
    if kind == "pair":
        body[-1:-1] = ["  (a pick is coded as none fits or the track's rank among the item's candidates)"]

    body += ["## Excluded annotators", ""]
    if excluded:
        accuracy = {s["annotator"]: s for s in stats.get("annotators", [])}
        body += [("Their labels are not in this dataset: they were paused because their rolling accuracy on "
                 "gold items fell below the threshold."), ""]
        for who in excluded:
            s = accuracy.get(who, {})
            acc = s.get("rolling_gold_accuracy")
            body.append(f"- {who}: gold accuracy {acc:.0%} over their last gold labels "
                        f"({s.get('n_gold', 0)} gold labels, {s.get('n_labels', 0)} labels)" if acc is not None
                        else f"- {who}: paused by an admin")
        body.append("")
    else:
        body += ["None.", ""]

    body += ["## Labels", ""]
    if kind == "pair":
        body += [("Annotators watched each video muted and picked, among its candidate tracks (shown in a "
                 "random order), the one that matches it, or **none fits**. `value` is the chosen track; "
                 "`none_fits` marks the second answer."), ""]
        body += ["## Aggregation", "",
                 ("Each item's answer is the Dawid-Skene estimate (crowd-kit `DawidSkene`, gold answers given as "
                 "known truths), which weighs annotators by their estimated confusion; `score` is its posterior "
                 "probability. Where it could not be fitted, the majority vote is used (`method`)."), ""]
    else:
        body += ["Annotators rated how well the background music fits the speech, 1-5:", "",
                 "- 1 = clashes with the speech", "- 2 = poor fit", "- 3 = acceptable", "- 4 = good fit",
                 "- 5 = made for it", "", "and could tick reasons: mood, tempo, too busy, too loud, genre.", ""]
        body += ["## Aggregation", "",
                 ("`aggregate` is the mean rating and `majority` the median. `score` is a Bradley-Terry strength "
                 "(maximum likelihood): each annotator's ratings become pairwise comparisons between the "
                 "items they rated (higher wins, ties skipped), so annotators who rate harshly or kindly count "
                 "alike; each item also gets one win and one loss against a virtual anchor, which keeps "
                 "strengths finite."), ""]
    body += ["Gold items are in the `labels` split (`is_gold`) but not in `items`.", "",
             "## Columns", ""]
    for split in ("labels", "items"):
        body += [f"`{split}`:", ""]
        body += [f"- `{col}`: {text}" for col, text in _COMMON[split] + _COLUMNS[kind][split]]
        body.append("")
    body += [("Media columns are Audio/Video features holding the files' bytes (decode them with the "
             "`datasets` Audio/Video features or read the bytes directly)."), ""]
    return "\n".join(front + body)


# ------------------------------------------------------------------------------------------------
# export and load
# ------------------------------------------------------------------------------------------------
def _folder_name(name: str) -> str:
    """A task name that is safe as a folder and Hub config name, or AnnotationError."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise AnnotationError(f"task name {name!r} cannot be a folder name")
    return name


def _missing_media(dataset: datasets.DatasetDict) -> list[str]:
    """Media files the dataset names that do not exist (saving would fail on them)."""
    missing = set()
    for split in dataset.values():
        for name, feature in split.features.items():
            if isinstance(feature, (datasets.Audio, datasets.Video)):
                for value in split.data.column(name).to_pylist():
                    path = value.get("path") if isinstance(value, dict) else value
                    if path and not Path(path).is_file():
                        missing.add(path)
    return sorted(missing)


def export(task_meta: Mapping, labels: Iterable[Mapping], items: Iterable[Mapping], excluded: Iterable[str],
           out_dir: str | Path, push_to_hub: str | None = None, token: str | None = None,
           embed_media: bool = True) -> dict:
    """Export a task: ``out_dir/<task name>/`` holds the dataset (``save_to_disk``, media bytes included;
    with ``embed_media=False`` only their paths, see :func:`build_dataset`), its card as ``README.md`` and the
    task's figures as ``summary.json``.

    With ``push_to_hub=REPO`` the dataset is also pushed to that Hub dataset repo as the config named
    after the task (data under ``<task name>/``), and the card uploaded as ``<task name>/README.md`` there
    (the repo's own README lists every task's config; ``push_to_hub`` maintains it).

    Returns
    -------
    dict
        ``task, path, card, summary, n_labels, n_items, excluded, alpha, alpha_level`` and ``hub``
        (the repo or ``None``).

    Raises
    ------
    AnnotationError
        A bad task name, or media files that no longer exist.
    """
    labels, items, excluded = list(labels), list(items), sorted(set(excluded))
    name = _folder_name(task_meta["name"])
    stats = task_stats(task_meta, labels, items, excluded)
    dataset = build_dataset(task_meta, labels, items, excluded, embed_media)
    missing = _missing_media(dataset)
    if missing:
        raise AnnotationError(f"{len(missing)} media file(s) of task {name!r} are missing, e.g. {missing[0]}")
    card = dataset_card(task_meta, stats, excluded)

    target = Path(out_dir) / name
    # an empty split needs one (empty) shard, or load_from_disk cannot read it back
    shards = {split: 1 for split, table in dataset.items() if table.num_rows == 0}
    dataset.save_to_disk(str(target), num_shards=shards or None)
    (target / "README.md").write_text(card, encoding="utf-8")
    (target / "summary.json").write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if push_to_hub:
        dataset.push_to_hub(push_to_hub, config_name=name, data_dir=name, token=token, num_shards=shards or None,
                            commit_message=f"Export labels of task {name}")
        from huggingface_hub import HfApi

        HfApi(token=token).upload_file(path_or_fileobj=card.encode("utf-8"), path_in_repo=f"{name}/README.md",
                                       repo_id=push_to_hub, repo_type="dataset",
                                       commit_message=f"Dataset card of task {name}")
    return {"task": name, "path": str(target), "card": str(target / "README.md"),
            "summary": str(target / "summary.json"), "n_labels": dataset["labels"].num_rows,
            "n_items": dataset["items"].num_rows, "excluded": excluded, "alpha": stats["alpha"],
            "alpha_level": stats["alpha_level"], "hub": push_to_hub}


def _is_saved_dataset_dict(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file()


def load_labels(dir_or_hub_id: str | Path, task: str) -> datasets.DatasetDict:
    """A task's exported labels (splits ``labels`` and ``items``), as the trainers read them.

    ``dir_or_hub_id`` is an export folder holding ``<task>/`` (or that task's folder itself), or a Hub
    dataset repo id whose config ``task`` is loaded with ``datasets.load_dataset``.

    Raises
    ------
    AnnotationError
        No such folder or repo, or no export of ``task`` in it.
    """
    where = Path(dir_or_hub_id)
    if where.is_dir():
        if _is_saved_dataset_dict(where / task):
            return datasets.load_from_disk(str(where / task))
        if _is_saved_dataset_dict(where):
            summary = where / "summary.json"
            exported = json.loads(summary.read_text())["task"] if summary.is_file() else where.name
            if exported == task:
                return datasets.load_from_disk(str(where))
            raise AnnotationError(f"{where} holds the labels of task {exported!r}, not {task!r}")
        found = sorted(p.name for p in where.iterdir() if _is_saved_dataset_dict(p))
        raise AnnotationError(f"no labels of task {task!r} in {where}"
                              + (f"; it holds: {', '.join(found)}" if found else "; it holds no exported task"))
    if not _HUB_ID.match(str(dir_or_hub_id)) or where.exists():
        raise AnnotationError(f"{dir_or_hub_id} is neither an export folder nor a Hub dataset repo id (owner/name)")
    try:
        return datasets.load_dataset(str(dir_or_hub_id), task)
    except (ValueError, FileNotFoundError) as err:  # an unknown config or repo (DatasetNotFoundError is one)
        raise AnnotationError(f"no labels of task {task!r} in the Hub dataset {dir_or_hub_id}: {err}") from None
