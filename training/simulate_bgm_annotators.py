"""Do human ratings steer the BGM-fit model? Simulated annotators with a preference the rule lacks.

    python -m training.simulate_bgm_annotators          # -> benchmarks/results/bgm_fit_preference.json

The bootstrap rule (``training/make_bgm_fit_labels.py``) knows nothing about drums. Three simulated
annotators do: each rates a pair as the rule does, minus 2 when the track is drum-heavy (its percussive
share, librosa HPSS on 12 s, is in the top third of the tracks), plus their own noise (a normal
of sd 0.5, rounded; ratings clipped to 1..5). They label ``--pairs`` pairs (default 300, from the
training side of the bundled model's hold-out) **through the labelling suite**: a ``bgm`` task in a fresh
label store, each annotator taking items with ``next_item`` and rating them with ``submit``, three ratings
per item, then ``export_task``. ``training/train_bgm_fit.py`` fine-tunes the bundled model on that export
(``--init``), exactly as it would on real annotators' labels. A control run fine-tunes on the same pairs
with the rule's own ratings, so any shift is the preference's, not the extra training's.

Measured on the bundled model's held-out speakers and tracks (no pair of them was rated or trained on):
every held-out utterance ranks every held-out track; the drum share of the top 5, and the AUC of the
models' scores against the simulated annotators' ratings and against the rule's.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np

from models.provenance import save_results

ROOT = Path(__file__).resolve().parents[1]
DRUM_PENALTY = 2
NOISE_SD = 0.5


def percussive_share(path: str) -> float:
    """Energy of the percussive part (librosa HPSS, median filters of 17 bins / frames) over the total, of
    12 s from the middle of the first 30 s, at 16 kHz."""
    import librosa

    from media.io import read_audio

    y = read_audio(path, sr=16000, start=9.0, end=21.0)
    if len(y) < 16000:
        y = read_audio(path, sr=16000, end=12.0)
    stft = librosa.stft(y, n_fft=1024, hop_length=256)
    _, perc = librosa.decompose.hpss(np.abs(stft), kernel_size=17)
    return float((perc ** 2).sum() / ((np.abs(stft) ** 2).sum() + 1e-12))


def simulated_rating(rule: int, drummy: bool, rng) -> int:
    return int(np.clip(round(rule - DRUM_PENALTY * drummy + rng.normal(0, NOISE_SD)), 1, 5))


def label_through_store(pairs: list[dict], drummy: dict, media_root: Path, out: Path, seed: int) -> dict:
    """Create a bgm task of ``pairs`` in a fresh store, let 3 simulated annotators rate every item, export."""
    from annotation.service import export_task
    from annotation.store import Store

    rng = np.random.default_rng(seed)
    work = Path(tempfile.mkdtemp(prefix="bgm_sim_"))
    media_root = _common_root(media_root, pairs)
    store = Store(f"sqlite:///{work / 'labels.db'}", data=work)
    items, by_key = [], {}
    for n, p in enumerate(pairs):
        key = f"sim{n:04d}"
        by_key[key] = p
        items.append({"key": key, "payload": {"speech": str(Path(p["speech"]).relative_to(media_root)),
                                              "bgm": str(Path(p["bgm"]).relative_to(media_root))}})
    store.create_task("bgm_fit", "bgm", items, media_root=media_root, per_item=3, gold_rate=0.0)
    users = [store.add_user(f"simulated-{k}") for k in range(3)]
    given = 0
    for user in users:
        while (a := store.next_item(user, "bgm_fit")) is not None:
            p = by_key[a["item_key"]]
            store.submit(user, a["lease_id"], str(uuid.uuid4()), rating=simulated_rating(p["rating"], drummy[p["bgm"]], rng),
                         dwell_ms=9000, played_ms=9000)
            given += 1
    result = export_task(store, "bgm_fit", out)
    store.close()
    return {"labels": given, "export": result["path"], "alpha": result["alpha"]}


def _common_root(media_root: Path, pairs: list[dict]) -> Path:
    """One folder above the media collection and every file of ``pairs`` (the bootstrap's joined speech
    samples live outside the collection)."""
    return Path(os.path.commonpath([str(media_root), *(p["speech"] for p in pairs), *(p["bgm"] for p in pairs)]))


def write_rule_export(pairs: list[dict], media_root: Path, out: Path) -> str:
    """The same pairs with the rule's ratings, as an export (the control)."""
    from annotation.export import export
    from training.make_bgm_fit_labels import rule_label

    media_root = _common_root(media_root, pairs)
    items = [{"item_id": n + 1, "item_key": f"rule{n:04d}", "is_gold": False,
              "payload": {"speech": str(Path(p["speech"]).relative_to(media_root)),
                          "bgm": str(Path(p["bgm"]).relative_to(media_root))}} for n, p in enumerate(pairs)]
    labels = [rule_label(n + 1, f"rule{n:04d}", p["rating"], stamp="2026-01-01T00:00:00Z")
              for n, p in enumerate(pairs)]
    return export({"name": "bgm_fit", "kind": "bgm", "media_root": str(media_root), "per_item": 1}, labels, items,
                  [], out, embed_media=False)["path"]


def rankings(model, utterances: list[str], tracks: list[str], feats: dict) -> np.ndarray:
    """(U, T) fit of every held-out utterance with every held-out track (mean over the track's windows)."""
    from media.fused import summary

    a = model.speech_features(np.stack([summary(feats["speech"][u]) for u in utterances]))
    out = np.zeros((len(utterances), len(tracks)), np.float32)
    for j, t in enumerate(tracks):
        b = model.music_features(feats["music"][t])
        out[:, j] = model.fit(a[:, None], b[None]).mean(axis=1)
    return out


def measure(model, test_rows, utterances, tracks, feats, share, drummy, sim_rating) -> dict:
    from training.train_bgm_fit import auc

    fit = rankings(model, utterances, tracks, feats)
    top = np.argsort(-fit, axis=1)[:, :5]
    drums = np.array([share[t] for t in tracks])
    is_drummy = np.array([drummy[t] for t in tracks])
    u_idx = {u: i for i, u in enumerate(utterances)}
    t_idx = {t: j for j, t in enumerate(tracks)}
    scores = np.array([fit[u_idx[r["speech"]], t_idx[r["bgm"]]] for r in test_rows])
    return {"top5_mean_percussive_share": float(drums[top].mean()),
            "top5_share_drummy": float(is_drummy[top].mean()),
            "auc_vs_simulated_annotators": auc(scores, np.array([sim_rating[id(r)] for r in test_rows])),
            "auc_vs_rule": auc(scores, np.array([r["rating"] for r in test_rows]))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.simulate_bgm_annotators", description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default=str(ROOT / "data" / "bgm_fit" / "labels"), help="the bootstrap export")
    ap.add_argument("--model", default=str(ROOT / "models" / "weights" / "bgm_fit"))
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--work", default=str(ROOT / "runs" / "bgm_preference"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bgm_fit_preference.json"))
    args = ap.parse_args(argv)
    from models.bgm_fit import BGMFitNet
    from training import train_bgm_fit
    from training.bgm_features import window_features
    from training.make_bgm_fit_labels import media_root as get_media_root

    media_root = get_media_root()
    work = Path(args.work)
    base = BGMFitNet.from_pretrained(args.model)
    holdout = base.training_metadata["holdout"]
    rows = train_bgm_fit.read_labels([args.dataset])
    train_rows, test_rows, _ = train_bgm_fit.split(rows, 0.0, holdout["speech_groups"], holdout["track_groups"])
    rng = np.random.default_rng(args.seed)
    picked = [train_rows[i] for i in rng.choice(len(train_rows), args.pairs, replace=False)]
    utterances = sorted({r["speech"] for r in test_rows})
    tracks = sorted({r["bgm"] for r in test_rows})
    all_tracks = sorted({r["bgm"] for r in picked} | set(tracks))
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    cached = work / "percussive_share.json"
    share = json.loads(cached.read_text()) if cached.is_file() else {}
    todo = [t for t in all_tracks if t not in share]
    with ProcessPoolExecutor(2) as pool:
        values = list(tqdm(pool.map(percussive_share, todo, chunksize=8), total=len(todo),
                           desc="percussive share", file=sys.stderr))
    share.update(zip(todo, values))
    work.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(share))
    cut = float(np.quantile(list(share.values()), 2 / 3))
    drummy = {t: s > cut for t, s in share.items()}
    sim_rng = np.random.default_rng(args.seed + 1)
    sim_rating = {id(r): int(np.median([simulated_rating(r["rating"], drummy[r["bgm"]], sim_rng) for _ in range(3)]))
                  for r in test_rows}

    labelled = label_through_store(picked, drummy, media_root, work / "simulated_export", args.seed)
    control = write_rule_export(picked, media_root, work / "rule_export")
    common = ["--init", args.model, "--epochs", str(args.epochs), "--lr", str(args.lr), "--holdout", "0"]
    train_bgm_fit.main(["--dataset", labelled["export"], "--out", str(work / "simulated"), *common])
    train_bgm_fit.main(["--dataset", control, "--out", str(work / "control"), *common])

    s_feats, _ = window_features(utterances, speech=True)
    m_feats, _ = window_features(tracks, speech=False)
    feats = {"speech": s_feats, "music": m_feats}
    models = {"bundled (rule only)": base,
              "fine-tuned on simulated annotators": BGMFitNet.from_pretrained(work / "simulated" / "final"),
              "control: fine-tuned on the rule's ratings of the same pairs": BGMFitNet.from_pretrained(work / "control" / "final")}
    results = {name: measure(m, test_rows, utterances, tracks, feats, share, drummy, sim_rating) for name, m in models.items()}
    report = {
        "preference": f"rule rating - {DRUM_PENALTY} when the track's percussive share is in the top third "
                      f"(> {cut:.3f}), + normal noise sd {NOISE_SD}, rounded, clipped to 1..5",
        "labelling": labelled, "pairs": args.pairs, "held_out": {"utterances": len(utterances), "tracks": len(tracks),
                                                                  "pairs_scored_for_auc": len(test_rows)},
        "results": results,
        "held_out_tracks_drummy_share": float(np.mean([drummy[t] for t in tracks])),
    }
    save_results(args.out, report, module="training.simulate_bgm_annotators", argv=argv,
                 weights={"bundled": args.model, "simulated": work / "simulated" / "final", "control": work / "control" / "final"})
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
