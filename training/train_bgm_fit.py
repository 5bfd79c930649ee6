"""Train the background-music fit network (spec 02) on exported BGM-fit ratings; evaluate on held-out pairs.

    python -m training.make_bgm_fit_labels --out data/bgm_fit/labels          # bootstrap labels (rule)
    python -m training.train_bgm_fit --dataset data/bgm_fit/labels --out runs/bgm_fit
    python -m training.train_bgm_fit --dataset owner/labels --init models/weights/bgm_fit --out runs/ft

``--dataset`` is an export folder or a Hub dataset repo id holding the ``bgm_fit`` task (as the labelling
app's export writes it, ``annotation.load_labels``); give it several times to train on several. Every label
is one training example: the fused vector of its speech (mean over 10 s windows) and of one window of its
music, drawn afresh each epoch; target ``(rating - 1) / 4``.

Steps (every parameter is a flag):
 1. features: fused vectors of every speech and music file (``training.bgm_features``, cached);
 2. hold-out: whole speakers and whole tracks. A speech file's group is its speaker (EmoDB names) or its
    source; a track's group is the file. A group is held out when the MD5 of its name falls in the
    ``--holdout`` fraction (or it is listed with ``--holdout-speech`` / ``--holdout-tracks``); a source
    is the file name's first "_" part. Pairs with both sides held out are the test set; pairs with either side held out are not trained on;
 3. standardisation statistics (model buffers) from the training pairs' vectors;
 4. AdamW on BCE(head) + ``--cos-weight`` x BCE(cosine of the deep features), ``--epochs`` epochs;
 5. held-out evaluation (:func:`evaluate`): AUC of fitting (rating >= 4) vs not fitting (rating <= 2) and
    NDCG@5 of each held-out utterance's candidates, for the head, the deep-feature cosine and two
    baselines: the cosine of the standardised raw fused vectors and random scores.

Writes ``OUT/final`` (the model, with its card) and ``OUT/report.json`` + ``OUT/report.png`` (loss curves
and the held-out figures against the baselines). Runs on the CPU or a GPU (``--device``).
"""
from __future__ import annotations

import argparse
import hashlib
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from media.fused import summary
from models.bgm_fit import BGMFitNet, rating_target
from models.provenance import save_results

TASK = "bgm_fit"
_EMODB = re.compile(r"^(\d\d)[a-z]\d\d[A-Z][a-z]?$|^emodb_(\d\d)_")  # an utterance, or a joined sample


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------
def _media_path(value, spool: Path) -> str:
    """A local path for a media cell ({"path", "bytes"} with decode=False, or a plain path string): the
    file when it exists, else its bytes written once under ``spool``."""
    path, data = (value, None) if isinstance(value, str) else (value.get("path"), value.get("bytes"))
    if path and Path(path).is_file():
        return str(Path(path).resolve())
    if data:
        target = spool / (hashlib.sha1(data).hexdigest() + Path(path or "x.wav").suffix)
        if not target.is_file():
            target.write_bytes(data)
        return str(target)
    raise FileNotFoundError(f"media {path!r} is neither on disk nor embedded in the dataset")


def read_labels(datasets_: list[str], task: str = TASK) -> list[dict]:
    """One row per label: speech, bgm (local paths), rating, label_source, annotator, item_key."""
    from annotation.export import load_labels

    spool = Path(tempfile.gettempdir()) / "avstudio_bgm_media"
    spool.mkdir(exist_ok=True)
    rows = []
    for where in datasets_:
        table = load_labels(where, task)["labels"]
        for r in table:
            rows.append({"speech": _media_path(r["speech"], spool), "bgm": _media_path(r["bgm"], spool),
                         "rating": int(r["value"]), "label_source": r.get("label_source") or "human",
                         "annotator": r["annotator"], "item_key": r["item_key"], "dataset": str(where)})
    if not rows:
        raise SystemExit(f"no labels of task {task!r} in {', '.join(datasets_)}")
    return rows


def speech_group(path: str) -> str:
    """EmoDB: the speaker; any other recording: its source (the file name up to the first "_", as the media
    collection names files), so that one speaker's several files never sit on both sides."""
    stem = Path(path).stem
    m = _EMODB.match(stem)
    return f"emodb:{m.group(1) or m.group(2)}" if m else stem.split("_")[0]


def track_group(path: str) -> str:
    return f"{Path(path).parent.name}/{Path(path).stem}"


def source_name(path: str) -> str:
    """The data source of a media file, for the model card's licences: the dataset folder of the emotion
    collections, else the file name's prefix (models.cards.SOURCE_LICENCES)."""
    parts = Path(path).parts
    for name in ("emodb", "panda4q", "emotify"):
        if name in parts:
            return name
    return Path(path).stem.split("_")[0]


def held_out(group: str, fraction: float) -> bool:
    return int(hashlib.md5(group.encode()).hexdigest(), 16) % 1000 < fraction * 1000


def split(rows: list[dict], fraction: float, speech_out=(), tracks_out=()) -> tuple[list[dict], list[dict], dict]:
    s_out = {g for g in {speech_group(r["speech"]) for r in rows} if held_out(g, fraction)} | set(speech_out)
    t_out = {g for g in {track_group(r["bgm"]) for r in rows} if held_out(g, fraction)} | set(tracks_out)
    train, test = [], []
    for r in rows:
        a, b = speech_group(r["speech"]) in s_out, track_group(r["bgm"]) in t_out
        if a and b:
            test.append(r)
        elif not (a or b):
            train.append(r)
    return train, test, {"speech_groups": sorted(s_out), "track_groups": sorted(t_out)}


# ------------------------------------------------------------------------------------------------
# evaluation
# ------------------------------------------------------------------------------------------------
def auc(scores: np.ndarray, ratings: np.ndarray) -> float | None:
    """P(score of a fitting pair (rating >= 4) > score of a non-fitting one (<= 2)); ties count half."""
    pos, neg = scores[ratings >= 4], scores[ratings <= 2]
    if not len(pos) or not len(neg):
        return None
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    allv = np.concatenate([pos, neg])
    for v in np.unique(allv):  # average ranks of ties
        m = allv == v
        ranks[m] = ranks[m].mean()
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def ndcg_at(scores: np.ndarray, gains: np.ndarray, groups: np.ndarray, k: int = 5, min_size: int = 6) -> float | None:
    """Mean NDCG@k over groups (utterances) with at least ``min_size`` candidates."""
    values = []
    for g in np.unique(groups):
        m = groups == g
        if m.sum() < min_size:
            continue
        s, y = scores[m], gains[m]
        disc = 1.0 / np.log2(np.arange(2, k + 2))
        top = y[np.argsort(-s, kind="stable")[:k]]
        ideal = np.sort(y)[::-1][:k]
        if ideal.sum() > 0:
            values.append(float((top * disc[:len(top)]).sum() / (ideal * disc[:len(ideal)]).sum()))
    return float(np.mean(values)) if values else None


@torch.no_grad()
def pair_scores(model: BGMFitNet, s_vec: np.ndarray, m_windows: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per pair: the head's fit averaged over the track's windows, the deep-feature cosine (mean over
    windows), and the raw baseline: cosine of the standardised fused vectors (speech vs the track's mean)."""
    model.eval()
    a = model.speech_features(s_vec)
    head, cos, raw = [], [], []
    s_z = ((torch.as_tensor(s_vec) - model.speech_mean) / model.speech_std).numpy()
    for i, w in enumerate(m_windows):
        b = model.music_features(w)
        head.append(float(model.fit(a[i][None], b).mean()))
        cos.append(float((b @ a[i]).mean()))
        m_z = ((torch.as_tensor(summary(w)) - model.music_mean) / model.music_std).numpy()
        raw.append(float(s_z[i] @ m_z / (np.linalg.norm(s_z[i]) * np.linalg.norm(m_z) + 1e-9)))
    return {"head": np.array(head), "cosine": np.array(cos), "raw_feature_cosine": np.array(raw)}


def evaluate(model: BGMFitNet, rows: list[dict], feats: dict, seed: int = 0) -> dict:
    """Held-out figures of the model's head and deep-feature cosine beside the baselines (see the docstring)."""
    if not rows:
        return {}
    s_vec = np.stack([summary(feats["speech"][r["speech"]]) for r in rows])
    windows = [feats["music"][r["bgm"]] for r in rows]
    scores = pair_scores(model, s_vec, windows)
    scores["random"] = np.random.default_rng(seed).random(len(rows))
    ratings = np.array([r["rating"] for r in rows])
    groups = np.array([r["speech"] for r in rows])
    gains = rating_target(ratings)
    out = {"n_pairs": len(rows), "n_utterances": len(np.unique(groups))}
    for name, s in scores.items():
        out[name] = {"auc": auc(s, ratings), "ndcg@5": ndcg_at(s, gains, groups),
                     "mae": float(np.abs(s - gains).mean()) if name == "head" else None}
    return out


# ------------------------------------------------------------------------------------------------
# the speech detector
# ------------------------------------------------------------------------------------------------
def fit_detector(model: BGMFitNet, train_rows: list[dict], test_rows: list[dict], s_feats: dict, cache,
                 workers: int, extra_speech=(), extra_other=()) -> dict:
    """Fit the model's speech detector on the training pairs' speech windows (plus the files
    ``extra_speech``) against their music windows (plus ``extra_other``), all computed with
    ``speech=True``; accuracy on the held-out speakers' and tracks' windows, beside the hand-written rule
    of ``pipelines.bgm_fit`` (SPEECH_RULE) as baseline."""
    from pipelines.bgm_fit import rule_speech_like
    from training.bgm_features import window_features

    def windows(rows, key):
        return sorted({r[key] for r in rows})

    m_train, _ = window_features(windows(train_rows, "bgm"), speech=True, cache=cache, workers=workers,
                                 desc="music as speech")
    m_test, _ = window_features(windows(test_rows, "bgm"), speech=True, cache=cache, workers=workers,
                                desc="music as speech")
    speech_train = np.concatenate([s_feats[p] for p in windows(train_rows, "speech")])
    other_train = np.concatenate(list(m_train.values()))
    extra = {}
    for name, files in (("speech", extra_speech), ("other", extra_other)):
        found, _ = window_features(sorted(files), speech=True, cache=cache, workers=workers, desc=f"extra {name}")
        extra[name] = np.concatenate(list(found.values())) if found else np.zeros((0, speech_train.shape[1]), np.float32)
    model.fit_detector(np.concatenate([speech_train, extra["speech"]]), np.concatenate([other_train, extra["other"]]))
    out = {"train_windows": {"speech": len(speech_train), "music": len(other_train),
                             "extra_speech": len(extra["speech"]), "extra_other": len(extra["other"])},
           "extra_files": {"speech": len(extra_speech), "other": len(extra_other)}}
    if test_rows and m_test:
        sp = np.concatenate([s_feats[p] for p in windows(test_rows, "speech")])
        mu = np.concatenate(list(m_test.values()))
        for name, fn in (("model", lambda x: model.speech_probability(x) >= 0.5), ("rule_baseline", rule_speech_like)):
            out[name] = {"speech_recall": float(fn(sp).mean()), "music_rejected": float(1 - fn(mu).mean())}
        out["heldout_windows"] = {"speech": len(sp), "music": len(mu)}
    return out


# ------------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------------
def train(model: BGMFitNet, rows: list[dict], feats: dict, *, epochs: int, lr: float, batch: int, cos_weight: float,
          weight_decay: float, device: str, seed: int, test_rows: list[dict] | None = None) -> list[dict]:
    """Train in place; returns one dict per epoch (train loss, held-out loss)."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    s_vec = torch.as_tensor(np.stack([summary(feats["speech"][r["speech"]]) for r in rows]))
    windows = [feats["music"][r["bgm"]] for r in rows]
    target = torch.as_tensor(rating_target([r["rating"] for r in rows]))
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    test = None
    if test_rows:
        test = (torch.as_tensor(np.stack([summary(feats["speech"][r["speech"]]) for r in test_rows])),
                torch.as_tensor(np.stack([summary(feats["music"][r["bgm"]]) for r in test_rows])),
                torch.as_tensor(rating_target([r["rating"] for r in test_rows])))
    history = []
    for epoch in tqdm(range(epochs), desc="bgm fit", file=sys.stderr):
        model.train()
        m_vec = torch.as_tensor(np.stack([w[rng.integers(len(w))] for w in windows]))  # one window per pair
        order = torch.as_tensor(rng.permutation(len(rows)))
        total = 0.0
        for k in range(0, len(rows), batch):
            idx = order[k:k + batch]
            xs, xm, y = s_vec[idx].to(device), m_vec[idx].to(device), target[idx].to(device)
            head, cos = model(xs, xm)
            loss = F.binary_cross_entropy_with_logits(head, y) + cos_weight * F.binary_cross_entropy_with_logits(cos, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        sched.step()
        entry = {"epoch": epoch + 1, "train_loss": total / len(rows)}
        if test is not None:
            model.eval()
            with torch.no_grad():
                head, _ = model(test[0].to(device), test[1].to(device))
                entry["heldout_bce"] = float(F.binary_cross_entropy_with_logits(head, test[2].to(device)))
        history.append(entry)
    return history


def plot(history: list[dict], evaluation: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.4))
    a, b = fig.subplots(1, 2)
    ep = [h["epoch"] for h in history]
    a.plot(ep, [h["train_loss"] for h in history], label="train (head + cosine BCE)")
    if history and "heldout_bce" in history[0]:
        a.plot(ep, [h["heldout_bce"] for h in history], label="held-out head BCE")
    a.set_xlabel("epoch")
    a.set_ylabel("loss")
    a.legend(fontsize=8)
    names = [n for n in ("head", "cosine", "raw_feature_cosine", "random") if n in evaluation]
    x = np.arange(len(names))
    for off, metric in ((-0.2, "auc"), (0.2, "ndcg@5")):
        b.bar(x + off, [evaluation[n][metric] or 0 for n in names], width=0.4, label=metric)
    b.set_xticks(x, [n.replace("_", "\n") for n in names], fontsize=8)
    b.set_ylim(0, 1)
    b.legend(fontsize=8)
    b.set_title("held-out pairs (unseen speakers and tracks)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.train_bgm_fit", description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", action="append", required=True, help="export folder or Hub dataset id (repeatable)")
    ap.add_argument("--task", default=TASK)
    ap.add_argument("--out", default="runs/bgm_fit")
    ap.add_argument("--init", default=None, help="start from this model folder or Hub id (fine-tuning)")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--weight-decay", type=float, default=5e-2)
    ap.add_argument("--cos-weight", type=float, default=0.5, help="weight of the deep-feature cosine BCE")
    ap.add_argument("--embed-dim", type=int, default=32)
    ap.add_argument("--dropout", type=float, default=0.3)
    ap.add_argument("--holdout", type=float, default=0.2, help="fraction of speech and track groups held out")
    ap.add_argument("--holdout-speech", default="", help="comma-separated speech groups to hold out as well")
    ap.add_argument("--holdout-tracks", default="", help="comma-separated track groups to hold out as well")
    ap.add_argument("--detector-speech", action="append", default=[],
                    help="glob of more speech files (audio or video) for the speech detector (repeatable)")
    ap.add_argument("--detector-other", action="append", default=[],
                    help="glob of more non-speech files (music, singing) for the speech detector (repeatable)")
    ap.add_argument("--cache", default=None, help="feature cache folder (default data/bgm_fit/features)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from training.bgm_features import DEFAULT_CACHE, window_features

    t0 = time.time()
    rows = read_labels(args.dataset, args.task)
    cache = args.cache or DEFAULT_CACHE
    s_feats, s_err = window_features(sorted({r["speech"] for r in rows}), speech=True, cache=cache,
                                     workers=args.workers, desc="speech features")
    m_feats, m_err = window_features(sorted({r["bgm"] for r in rows}), speech=False, cache=cache,
                                     workers=args.workers, desc="music features")
    for path, err in {**s_err, **m_err}.items():
        print(f"skipped {path}: {err}", file=sys.stderr)
    rows = [r for r in rows if r["speech"] in s_feats and r["bgm"] in m_feats]
    feats = {"speech": s_feats, "music": m_feats}
    train_rows, test_rows, holdout = split(rows, args.holdout, [g for g in args.holdout_speech.split(",") if g],
                                           [g for g in args.holdout_tracks.split(",") if g])
    if not train_rows:
        raise SystemExit("no training pairs left after the hold-out")
    print(f"{len(rows)} labels: {len(train_rows)} train, {len(test_rows)} held-out pairs "
          f"({len(holdout['speech_groups'])} speech and {len(holdout['track_groups'])} track groups held out)",
          file=sys.stderr)

    if args.init:  # fine-tuning keeps the standardisation and the speech detector
        model = BGMFitNet.from_pretrained(args.init)
        detector = model.training_metadata.get("speech_detector")
    else:
        model = BGMFitNet(embed_dim=args.embed_dim, dropout=args.dropout)
        model.fit_statistics(np.stack([summary(s_feats[p]) for p in sorted({r["speech"] for r in train_rows})]),
                             np.concatenate([m_feats[p] for p in sorted({r["bgm"] for r in train_rows})]))
        import glob

        detector = fit_detector(model, train_rows, test_rows, s_feats, cache, args.workers,
                                [f for g in args.detector_speech for f in glob.glob(g, recursive=True)],
                                [f for g in args.detector_other for f in glob.glob(g, recursive=True)])
    before = evaluate(model, test_rows, feats, args.seed) if args.init else None
    history = train(model, train_rows, feats, epochs=args.epochs, lr=args.lr, batch=args.batch,
                    cos_weight=args.cos_weight, weight_decay=args.weight_decay, device=args.device,
                    seed=args.seed, test_rows=test_rows)
    model.cpu().eval()
    evaluation = evaluate(model, test_rows, feats, args.seed)

    out = Path(args.out)
    sources: dict[str, int] = {}
    for r in train_rows:
        sources[r["label_source"]] = sources.get(r["label_source"], 0) + 1
    names = sorted({source_name(r["speech"]) for r in rows} | {source_name(r["bgm"]) for r in rows})
    metadata = {
        "dataset": ", ".join(args.dataset), "task": args.task, "init": args.init,
        "label_sources": sources,
        "data": {"train_pairs": len(train_rows), "test_pairs": len(test_rows),
                 "holdout": f"{len(holdout['speech_groups'])} speech groups, {len(holdout['track_groups'])} tracks"},
        "holdout": holdout,
        "hyperparameters": {k: getattr(args, k) for k in ("epochs", "lr", "batch", "weight_decay", "cos_weight",
                                                          "embed_dim", "dropout", "holdout", "seed")},
        "heldout": evaluation,
        "speech_detector": detector,
        "data_names": names,
    }
    model.save_pretrained(out / "final", metadata=metadata)
    report = {"evaluation": evaluation, "speech_detector": detector, "before_training": before, "history": history, "holdout": holdout,
              "n_labels": len(rows), "label_sources": sources, "seconds": round(time.time() - t0, 1),
              "plot": str(out / "report.png")}
    save_results(out / "report.json", report, module="training.train_bgm_fit", argv=argv,
                 weights={"bgm_fit": out / "final"})
    plot(history, evaluation, out / "report.png")
    head, base = evaluation.get("head", {}), evaluation.get("raw_feature_cosine", {})
    print(f"held-out AUC {head.get('auc')} (raw-feature cosine {base.get('auc')}, random "
          f"{evaluation.get('random', {}).get('auc')}); NDCG@5 {head.get('ndcg@5')}; written {out / 'final'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
