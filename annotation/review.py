"""Review of human labels: agreement, aggregation, annotator quality and what to label next.

Every function here is pure: it takes the label and item records the store produces (plain dicts, see
below) and returns numbers, lists or dicts; nothing reads the database or the media.

* A **label** is the current answer of one annotator on one item (revisions and undos already resolved):
  ``item_id, item_key, annotator, value, tags, dwell_ms, presentation, is_gold, gold_answer, created_at``
  and more. ``value`` is, for a ``"pair"`` task, the chosen candidate track (a path relative to the media
  root) or ``None`` for "none fits"; for a ``"bgm"`` task, a rating 1..5 of how well the music fits the speech.
* An **item** is ``item_id, item_key, is_gold, gold_answer, payload, media_root``; a pair item's payload
  lists its ``candidates``.

Aggregation uses crowd-kit: Dawid-Skene for the pair choice, Bradley-Terry over pairwise comparisons
derived from each annotator's ratings for the bgm score. Agreement is Krippendorff's alpha from the
``krippendorff`` package.
"""
from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

import numpy as np

__all__ = ["BGM_TAGS", "NONE", "RATINGS", "adjudication_queue", "aggregate", "alpha", "annotator_stats",
           "gold_correct", "item_uncertainty", "should_pause", "task_stats"]

NONE = "__none__"  # the category "none fits" where a pair value of None must be a category
RATINGS = (1, 2, 3, 4, 5)  # the bgm scale
BGM_TAGS = ("mood", "tempo", "too busy", "too loud", "genre")  # the reasons an annotator may tick
MAX_GAP_S = 600.0  # a pause longer than this between two labels counts as 10 minutes of work
PRIOR_MEAN, PRIOR_SD = 3.0, 1.2  # the bgm uncertainty's prior: one pseudo-rating in the middle of the scale
_ITERATIONS = 200  # Dawid-Skene and Bradley-Terry iterations (both stop earlier once they converge)


def _category(value) -> str:
    """A pair value as a category: the chosen path, or :data:`NONE` for "none fits"."""
    return NONE if value is None else str(value)


def _value(category: str):
    """The inverse of :func:`_category`."""
    return None if category == NONE else category


def _time(created_at: str) -> datetime:
    """An ISO-8601 time as an aware UTC datetime (a time without zone is taken as UTC)."""
    t = datetime.fromisoformat(created_at)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def gold_correct(kind: str, value, answer) -> bool:
    """Whether a label's ``value`` matches a gold item's ``answer``.

    Parameters
    ----------
    kind : "pair" or "bgm"
    value, answer : a pair value (path or ``None`` for "none fits") or a bgm rating

    Returns
    -------
    bool
        pair: the same track, or both "none fits"; bgm: the ratings differ by at most 1.
    """
    if kind == "pair":
        return value == answer
    if value is None or answer is None:
        return False
    return abs(float(value) - float(answer)) <= 1


# ------------------------------------------------------------------------------------------------
# agreement
# ------------------------------------------------------------------------------------------------
def _pair_code(label: Mapping) -> tuple[str, str | int]:
    """A pair label's code for alpha: 0 for "none fits", else 1 + the chosen track's rank among the item's
    candidates sorted by path (the same for every annotator, whatever order they saw). A track the label's
    presentation does not list keeps its path as the code."""
    value = label["value"]
    if value is None:
        return "i", 0
    shown = sorted((label.get("presentation") or {}).get("order") or [])
    return ("i", 1 + shown.index(value)) if value in shown else ("p", str(value))


def alpha(labels: Iterable[Mapping], kind: str) -> float | None:
    """Krippendorff's alpha of a task's labels: nominal for pair, ordinal for bgm.

    Units are items, coders are annotators. Items labelled only once add no pairable values, exactly as in
    the ``krippendorff`` package, so only items with 2+ labels are passed to it (the same alpha, and its
    coincidence step, which takes items x values^2 memory, stays small).

    A pair label is coded as "none fits" or as its track's rank among the item's candidates sorted by path,
    so that alpha's chance term is that of a choice among the item's options rather than among every track
    of the task (with every track its own category, expected disagreement is close to 1 and alpha is little
    more than raw agreement).

    Parameters
    ----------
    labels : label records (one per annotator and item)
    kind : "pair" or "bgm"

    Returns
    -------
    float or None
        alpha in [-1, 1]; ``None`` when it is undefined: fewer than 2 items with 2+ labels, or a single
        value among them (no expected disagreement).
    """
    import krippendorff

    by_item: dict[int, list] = defaultdict(list)
    for label in labels:
        by_item[label["item_id"]].append(_pair_code(label) if kind == "pair" else int(label["value"]))
    units = [codes for codes in by_item.values() if len(codes) >= 2]
    if len(units) < 2:
        return None
    domain = sorted({c for codes in units for c in codes})
    if len(domain) < 2:
        return None
    if kind == "bgm":
        domain = sorted(set(domain) | set(RATINGS))
    column = {c: j for j, c in enumerate(domain)}
    counts = np.zeros((len(units), len(domain)), dtype=np.int64)
    for i, codes in enumerate(units):
        for c in codes:
            counts[i, column[c]] += 1
    value_domain = domain if kind == "bgm" else np.arange(len(domain))
    a = float(krippendorff.alpha(value_counts=counts, value_domain=value_domain,
                                 level_of_measurement="nominal" if kind == "pair" else "ordinal"))
    return a if math.isfinite(a) else None


# ------------------------------------------------------------------------------------------------
# aggregation
# ------------------------------------------------------------------------------------------------
def item_uncertainty(kind: str, values: list, n_options: int = 6) -> float:
    """How uncertain the current answer of one item is, in [0, 1]; the next items to label are the least
    certain ones.

    * pair: 1 - the largest posterior mean of a Dirichlet(1, ..., 1) prior over ``n_options`` categories
      (the candidates and "none fits") updated with the counts of ``values``;
    * bgm: the posterior standard deviation of the item's mean rating, halved. The prior is one
      pseudo-rating of 3 with spread 1.2: the pooled variance is (1.2^2 + the sum of squared deviations of
      the ratings and the pseudo-rating from their mean) / (n + 1), and the mean's variance that / (n + 1).

    With no values the result is the largest the function gives for that kind (and ``n_options``):
    1 - 1/n_options for pair, 0.6 for bgm.

    Parameters
    ----------
    kind : "pair" or "bgm"
    values : the item's label values (pair: paths or ``None``; bgm: ratings)
    n_options : pair only: the number of categories, candidates + 1 for "none fits"
    """
    if kind == "pair":
        counts = Counter(_category(v) for v in values)
        k = max(int(n_options), len(counts), 1)
        top = max(counts.values(), default=0)
        return float(min(max(1.0 - (1 + top) / (k + len(values)), 0.0), 1.0))
    ratings = np.asarray([float(v) for v in values] + [PRIOR_MEAN])
    n = len(ratings)
    pooled = (PRIOR_SD ** 2 + float(((ratings - ratings.mean()) ** 2).sum())) / n
    sd = min(math.sqrt(pooled / n), PRIOR_SD)  # never above the no-label value
    return float(min(max(sd / 2.0, 0.0), 1.0))


def _majority(values: list) -> str:
    """The most common pair category of ``values``; ties go to the smallest string."""
    counts = Counter(_category(v) for v in values)
    top = max(counts.values())
    return min(c for c, k in counts.items() if k == top)


def _dawid_skene(labels: list[Mapping], candidates: Mapping[int, list[str]],
                 gold: Mapping[int, object]) -> tuple[dict[int, str], dict[int, float]] | None:
    """Dawid-Skene over pair labels: ``({item_id: category}, {item_id: posterior of it})``, or ``None``
    when crowd-kit cannot fit. A choice is coded as its index in the item's sorted candidates (so worker
    confusion matrices are shared across items) and decoded back to the path; gold answers clamp their
    items' posteriors."""
    import pandas as pd
    from crowdkit.aggregation import DawidSkene

    def code(item_id, value):
        if value is None:
            return NONE
        options = candidates.get(item_id, [])
        return f"#{options.index(value)}" if value in options else str(value)

    def decode(item_id, c):
        if c.startswith("#") and c[1:].isdigit() and int(c[1:]) < len(candidates.get(item_id, [])):
            return candidates[item_id][int(c[1:])]
        return c

    data = pd.DataFrame({"worker": [lb["annotator"] for lb in labels],
                         "task": [lb["item_id"] for lb in labels],
                         "label": [code(lb["item_id"], lb["value"]) for lb in labels]})
    observed, labelled = set(data["label"]), set(data["task"])
    truth = {i: code(i, a) for i, a in gold.items() if i in labelled}
    truth = {i: c for i, c in truth.items() if c in observed}
    try:
        model = DawidSkene(n_iter=_ITERATIONS)
        model.fit(data, true_labels=pd.Series(truth, dtype=object) if truth else None)
        probas = model.probas_
    except Exception:  # noqa: BLE001 - any failure of the fit falls back to the majority vote
        return None
    answers, posterior = {}, {}
    for item_id, row in probas.iterrows():
        best = row.idxmax()
        answers[item_id], posterior[item_id] = decode(item_id, best), float(row[best])
    return answers, posterior


# An annotator's ratings are compared all against all up to this many partners per rating; beyond it (a
# prolific annotator, a bootstrap rule with 20,000 ratings) each rating meets this many others, on a
# circulant graph of fixed random offsets: the comparisons grow linearly, and the graph stays connected.
BT_PARTNERS = 20


def _comparison_pairs(n: int) -> list[tuple[int, int]]:
    """Index pairs (a, b), a != b, of ``n`` ratings to compare (see :data:`BT_PARTNERS`)."""
    if n <= 2 * BT_PARTNERS + 1:
        return [(a, b) for a in range(n) for b in range(a + 1, n)]
    # the ring a -> a + 1 keeps every rating connected; the other offsets are drawn at random
    offsets = np.r_[1, np.random.default_rng(n).choice(np.arange(2, n), BT_PARTNERS // 2 - 1, replace=False)]
    return [(a, (a + int(k)) % n) for k in offsets for a in range(n)]


def _bradley_terry(labels: list[Mapping]) -> dict[int, float]:
    """Bradley-Terry log-strengths of bgm items from each annotator's ratings turned into pairwise
    comparisons (within one annotator, the higher-rated item wins; ties are skipped).

    Plain Bradley-Terry needs a strongly connected comparison graph and sends an item that never wins to
    -inf. Each compared item therefore also gets one win and one loss against a virtual anchor item (a
    weak prior that keeps every strength finite), and its score is ``log(p_item / p_anchor)``: 0 for an item
    as good as one with an even record, above 0 for better. Items without comparisons are left out.

    Fitted by maximum likelihood with Hunter's MM iterations over the list of comparisons (memory and time
    linear in the comparisons; the fit meets the likelihood equations, expected wins = wins, to 1e-8).
    crowd-kit's ``BradleyTerry``, used before, holds dense item-by-item tables (11 GB for a 21,000-item task);
    on a 30-item check its strengths differed from this fit by up to 1.75 in log units.
    """
    by_annotator: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for lb in labels:
        by_annotator[lb["annotator"]].append((lb["item_id"], int(lb["value"])))
    wins, losses = [], []
    for rated in by_annotator.values():
        for a, b in _comparison_pairs(len(rated)):
            (i, ri), (j, rj) = rated[a], rated[b]
            if ri != rj and i != j:
                wins.append(i if ri > rj else j)
                losses.append(j if ri > rj else i)
    if not wins:
        return {}
    compared = sorted(set(wins) | set(losses))
    index = {item: k for k, item in enumerate(compared)}
    anchor = len(compared)
    n = np.arange(len(compared))
    w = np.concatenate([[index[i] for i in wins], n, np.full(len(n), anchor)])  # prior: a win and a loss
    lo = np.concatenate([[index[i] for i in losses], np.full(len(n), anchor), n])
    n_wins = np.bincount(w, minlength=anchor + 1).astype(np.float64)
    p = np.ones(anchor + 1)
    for _ in range(_ITERATIONS * 5):
        inv = 1.0 / (p[w] + p[lo])
        denom = np.bincount(w, inv, anchor + 1) + np.bincount(lo, inv, anchor + 1)
        new = n_wins / denom
        new /= np.exp(np.mean(np.log(new)))
        done = np.max(np.abs(np.log(new) - np.log(p))) < 1e-9
        p = new
        if done:
            break
    return {item: float(math.log(p[index[item]] / p[anchor])) for item in compared}


def aggregate(labels: Iterable[Mapping], items: Iterable[Mapping], kind: str) -> list[dict]:
    """One aggregate per item with at least one label, in item id order.

    Each dict holds ``item_id, item_key, n, is_gold`` and

    * ``majority``: pair: the most common value (ties to the smallest string, "none fits" as
      :data:`NONE`, returned as ``None``); bgm: the median rating;
    * ``aggregate``: pair: the Dawid-Skene answer (crowd-kit; gold items' answers are passed to it as
      known truths); bgm: the mean rating;
    * ``score``: pair: the Dawid-Skene posterior probability of that answer; bgm: the item's Bradley-Terry
      log-strength from pairwise comparisons (see :func:`_bradley_terry`), ``None`` for an item never
      compared;
    * ``agreement``: pair: the share of labels equal to the majority; bgm: 1 - std/2 clipped to [0, 1]
      (1.0 for a single label);
    * ``uncertainty``: :func:`item_uncertainty`;
    * ``method``: pair: ``"dawid_skene"``, or ``"majority"`` when crowd-kit could not fit (fewer than two
      labels in all, or a failed fit), in which case ``aggregate`` is the majority and ``score`` its share
      of the votes; bgm: ``"bradley_terry"``, or ``"mean"`` when no item could be compared (``score`` None).

    Labels of items missing from ``items`` still count; their key and gold flag come from the labels.
    """
    labels = list(labels)
    known = {it["item_id"]: it for it in items}
    by_item: dict[int, list[Mapping]] = defaultdict(list)
    for label in labels:
        by_item[label["item_id"]].append(label)

    def info(item_id) -> Mapping:
        first = by_item[item_id][0]
        return known.get(item_id) or {"item_key": first["item_key"], "is_gold": first.get("is_gold", False),
                                      "gold_answer": first.get("gold_answer"), "payload": {}}

    out = []
    if kind == "pair":
        candidates = {}
        for item_id, group in by_item.items():
            listed = (info(item_id).get("payload") or {}).get("candidates")
            shown = [p for lb in group for p in (lb.get("presentation") or {}).get("order") or []]
            candidates[item_id] = sorted(set(listed or shown))
        gold = {i: info(i)["gold_answer"] for i in by_item if info(i).get("is_gold")}
        fitted = _dawid_skene(labels, candidates, gold) if len(labels) >= 2 else None
        for item_id in sorted(by_item):
            values = [lb["value"] for lb in by_item[item_id]]
            majority = _majority(values)
            if fitted is not None and item_id in fitted[0]:
                answer, score, method = fitted[0][item_id], fitted[1][item_id], "dawid_skene"
            else:
                answer, method = majority, "majority"
                score = sum(_category(v) == majority for v in values) / len(values)
            item = info(item_id)
            n_options = len(candidates[item_id]) + 1
            out.append({"item_id": item_id, "item_key": item["item_key"], "n": len(values),
                        "is_gold": bool(item.get("is_gold")), "majority": _value(majority),
                        "aggregate": _value(answer), "score": score,
                        "agreement": sum(_category(v) == majority for v in values) / len(values),
                        "uncertainty": item_uncertainty("pair", values, n_options), "method": method})
        return out

    scores = _bradley_terry(labels)
    for item_id in sorted(by_item):
        ratings = [float(lb["value"]) for lb in by_item[item_id]]
        item = info(item_id)
        std = float(np.std(ratings)) if len(ratings) > 1 else 0.0
        out.append({"item_id": item_id, "item_key": item["item_key"], "n": len(ratings),
                    "is_gold": bool(item.get("is_gold")), "majority": float(statistics.median(ratings)),
                    "aggregate": float(np.mean(ratings)), "score": scores.get(item_id),
                    "agreement": 1.0 if len(ratings) == 1 else float(min(max(1.0 - std / 2.0, 0.0), 1.0)),
                    "uncertainty": item_uncertainty("bgm", ratings),
                    "method": "bradley_terry" if scores else "mean"})
    return out


# ------------------------------------------------------------------------------------------------
# annotators
# ------------------------------------------------------------------------------------------------
def _gold_results(labels: Iterable[Mapping]) -> list[bool]:
    """Whether each gold label (gold item with a known answer) was right, oldest first."""
    gold = sorted((lb for lb in labels
                   if lb.get("is_gold") and (lb.get("kind") == "pair" or lb.get("gold_answer") is not None)),
                  key=lambda lb: _time(lb["created_at"]))
    return [gold_correct(lb["kind"], lb["value"], lb["gold_answer"]) for lb in gold]


def should_pause(gold_results: list[bool], threshold: float = 0.6, window: int = 10, min_gold: int = 5) -> bool:
    """Whether an annotator should be paused: at least ``min_gold`` gold results, and the share right among
    the last ``window`` of them (oldest first in ``gold_results``) below ``threshold``."""
    if len(gold_results) < min_gold:
        return False
    recent = gold_results[-window:]
    return sum(bool(r) for r in recent) / len(recent) < threshold


def annotator_stats(labels: Iterable[Mapping], paused: Iterable[str] = frozenset(), window: int = 10) -> list[dict]:
    """Per annotator (sorted by name): ``annotator, n_labels, n_gold, gold_accuracy`` (``None`` without gold
    labels), ``rolling_gold_accuracy`` (over the last ``window`` gold labels by ``created_at``),
    ``median_dwell_s``, ``throughput_per_hour`` and ``paused``.

    Throughput is labels per active hour, active time being the gaps between consecutive labels, each
    capped at 10 minutes (a longer gap is a break), plus one median dwell for the first label; ``None``
    with fewer than two labels.

    A gold label is one on a gold item; for a pair task a gold answer of ``None`` ("none fits") counts as
    an answer, for bgm a gold item without an answer is not scored.
    """
    paused = set(paused)
    by_annotator: dict[str, list[Mapping]] = defaultdict(list)
    for lb in labels:
        by_annotator[lb["annotator"]].append(lb)
    out = []
    for name in sorted(by_annotator):
        own = sorted(by_annotator[name], key=lambda lb: _time(lb["created_at"]))
        gold = _gold_results(own)
        recent = gold[-window:]
        dwell = float(statistics.median(lb.get("dwell_ms") or 0 for lb in own)) / 1000.0
        throughput = None
        if len(own) >= 2:
            times = [_time(lb["created_at"]) for lb in own]
            active = sum(min((b - a).total_seconds(), MAX_GAP_S) for a, b in itertools.pairwise(times)) + dwell
            throughput = len(own) / (active / 3600.0) if active > 0 else None
        out.append({"annotator": name, "n_labels": len(own), "n_gold": len(gold),
                    "gold_accuracy": sum(gold) / len(gold) if gold else None,
                    "rolling_gold_accuracy": sum(recent) / len(recent) if recent else None,
                    "median_dwell_s": dwell, "throughput_per_hour": throughput, "paused": name in paused})
    return out


# ------------------------------------------------------------------------------------------------
# review and the task's figures
# ------------------------------------------------------------------------------------------------
def adjudication_queue(aggregates: Iterable[Mapping], k: int = 20) -> list[dict]:
    """The ``k`` items most in need of a second look: non-gold items with 2+ labels, lowest agreement
    first, then most labels first (a split among many annotators before a split between two), then by key."""
    pool = [dict(a) for a in aggregates if not a.get("is_gold") and a["n"] >= 2]
    pool.sort(key=lambda a: (a["agreement"], -a["n"], str(a["item_key"])))
    return pool[:k]


def _distribution(labels: list[Mapping], kind: str) -> dict:
    """The label distribution: pair: how often "none fits" and a track were chosen, and the chosen track's
    position in the order shown (1 = first; a skew there is a position bias); bgm: ratings 1..5 and tags."""
    if kind == "pair":
        positions = Counter()
        for lb in labels:
            order = (lb.get("presentation") or {}).get("order") or []
            if lb["value"] is not None and lb["value"] in order:
                positions[str(order.index(lb["value"]) + 1)] += 1
        none = sum(lb["value"] is None for lb in labels)
        return {"none_fits": none, "track": len(labels) - none,
                "chosen_position": dict(sorted(positions.items(), key=lambda kv: int(kv[0])))}
    ratings = Counter(int(lb["value"]) for lb in labels)
    tags = Counter(t for lb in labels for t in lb.get("tags") or [])
    return {"ratings": {str(r): ratings.get(r, 0) for r in RATINGS},
            "tags": {t: tags.get(t, 0) for t in sorted(set(BGM_TAGS) | set(tags))}}


def task_stats(task_meta: Mapping, labels: Iterable[Mapping], items: Iterable[Mapping],
               paused: Iterable[str] = frozenset()) -> dict:
    """The figures of one task, as the admin page and the dataset card show them.

    Labels of ``paused`` annotators are counted in ``n_labels`` but left out of everything else (they are
    also left out of the export): ``n_labels_included``, completeness, ``alpha`` and the distribution.
    Completeness is over non-gold items: an item is complete with at least ``per_item`` included labels.

    Returns
    -------
    dict
        ``task, kind, n_items, n_gold_items, n_labels, n_labels_included, n_annotators, n_items_complete,
        percent_complete, alpha, alpha_level, label_distribution, excluded`` (sorted paused annotators who
        labelled or are listed) and ``annotators`` (:func:`annotator_stats`).
    """
    labels, items, paused = list(labels), list(items), set(paused)
    kind = task_meta["kind"]
    included = [lb for lb in labels if lb["annotator"] not in paused]
    per_item = int(task_meta.get("per_item") or 1)
    counts = Counter(lb["item_id"] for lb in included)
    regular = [it for it in items if not it.get("is_gold")]
    complete = sum(counts[it["item_id"]] >= per_item for it in regular)
    return {
        "task": task_meta["name"], "kind": kind, "n_items": len(items),
        "n_gold_items": sum(bool(it.get("is_gold")) for it in items),
        "n_labels": len(labels), "n_labels_included": len(included),
        "n_annotators": len({lb["annotator"] for lb in labels}),
        "n_items_complete": complete,
        "percent_complete": round(100.0 * complete / len(regular), 2) if regular else 0.0,
        "alpha": alpha(included, kind), "alpha_level": "nominal" if kind == "pair" else "ordinal",
        "label_distribution": _distribution(included, kind),
        "excluded": sorted(paused),
        "annotators": annotator_stats(labels, paused),
    }
