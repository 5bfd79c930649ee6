"""Train the soundtrack generator (spec 01) the way the spec claims: a GAN whose discriminator measures the
DIFFERENCE between the generated music and the sample's matching music (variant b), trained alternately.

    python -m training.train_soundtrack                         # the POP909 bootstrap
    python -m training.train_soundtrack --dataset exports/      # plus Pair annotation exports (repeatable)
    python -m training.train_soundtrack --augment 0.97          # the claimed augmentation at a threshold
    python -m training.train_soundtrack --sources pop909 vgmidi chorales   # more bootstrap sources

Each iteration: the discriminator learns (generator frozen) to regress the measured difference
(``models.soundtrack.difference``) of (generated, matching), (a faithful variant of the matching music,
matching) and (another sample's music, matching); then the generator learns (discriminator frozen) to
reconstruct the matching music and to bring the predicted difference down. Training stops when the generator's
difference loss (the difference the discriminator predicts for its output, averaged over the last ``--stop-window``
iterations) has stayed under ``--stop-threshold`` for ``--stop-patience`` consecutive iterations after
``--min-iters``; else at ``--max-iters`` or ``--time-budget`` seconds. The report (JSON + plot) logs the
stop condition, the curves and held-out figures beside baselines, on whole songs no model saw.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from media import score
from models.soundtrack import (
    DifferenceDiscriminator,
    SoundtrackGenerator,
    difference,
    reconstruction_losses,
)
from training import soundtrack_data as data

ROOT = Path(__file__).resolve().parents[1]
WINDOW = 128  # steps: 8 bars of 4/4
HELD_OUT = 0.1


def held_out(song: str) -> bool:
    return int(hashlib.md5(song.encode()).hexdigest(), 16) % 1000 < HELD_OUT * 1000


class Samples:
    """Fixed windows of ``WINDOW`` steps over the songs' stacked arrays, and the augmented ones (the same
    hum and controls with another song's accompaniment as the matching music, lead masked)."""

    def __init__(self, arrays: dict, rows: list[dict]):
        self.target = arrays["target"].astype(np.float32)
        self.video = arrays["video"].astype(np.float32)
        self.hums = arrays["hums"].astype(np.float32)
        self.keys = arrays["keys"]
        self.rows = rows
        self.windows = []  # (song index, start step in the stacked arrays, position of that step in the bar)
        for i, r in enumerate(rows):  # a song shorter than a window is one window, looped
            for a in range(0, max(1, r["steps"] - WINDOW + 1), WINDOW):
                self.windows.append((i, r["offset"] + a, (r["first"] + a) % score.STEPS_PER_BAR))
        self.matches: list[tuple[int, int, float]] = []  # (window, window whose music is the match, similarity)

    def _steps(self, song: int, start: int) -> np.ndarray:
        """The stacked-array indices of the window from ``start``, looped within its song."""
        r = self.rows[song]
        return r["offset"] + (start - r["offset"] + np.arange(WINDOW)) % r["steps"]

    def subset(self, keep) -> list[int]:
        return [w for w, (i, _, _) in enumerate(self.windows) if keep(self.rows[i]["song"])]

    def batch(self, items: list[tuple[int, int]], rng: np.random.Generator, train: bool = True):
        """(cond, target, faithful variant, lead_known) tensors for (window, music window) pairs."""
        cond, target, lead_known = [], [], []
        for w, m in items:
            i, a, pos = self.windows[w]
            j, b, _ = self.windows[m]
            sa, sb = self._steps(i, a), self._steps(j, b)
            h = rng.integers(self.hums.shape[0]) if train else 0
            x = score.condition(self.hums[h, sa], self.video[sa], self.keys[i, h], rng, pos)
            y = self.target[sb].copy()
            if train:
                if rng.random() < 0.1:
                    x[:, score.IN_EVENT] = 0  # no video events
                if rng.random() < 0.1:
                    x[:, :14] = 0  # no hum
                k = int(rng.integers(12))  # transpose everything that is a pitch class
                for group in score.IN_PC_GROUPS:
                    x[:, group] = np.roll(x[:, group], k, axis=1)
                for group in score.OUT_PC_GROUPS:
                    y[:, group] = np.roll(y[:, group], k, axis=1)
            cond.append(x)
            target.append(y)
            lead_known.append(w == m)
        y = torch.as_tensor(np.stack(target))
        return torch.as_tensor(np.stack(cond)), y, faithful_variant(y, rng), torch.tensor(lead_known)


def faithful_variant(y: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """The matching music played a little differently: a tenth of the accompaniment's and bass onsets
    dropped, dynamics and register moved by up to 0.05. The discriminator's real pairs."""
    v = y.clone()
    keep = torch.as_tensor(rng.random(v[..., 39:41].shape) > 0.1, dtype=v.dtype)
    v[..., 39:41] *= keep
    v[..., 41:] = (v[..., 41:] + torch.as_tensor(rng.uniform(-0.05, 0.05, v[..., 41:].shape), dtype=v.dtype)).clamp(0, 1)
    return v


# ------------------------------------------------------------------------------------------------
# the claimed augmentation
# ------------------------------------------------------------------------------------------------
EMBEDDING_NAMES = [f"pc_{p}" for p in score.PITCH_CLASSES] + ["onset_density", "dynamics", "register"]


def embedding(target: np.ndarray) -> np.ndarray:
    """An inspectable embedding of a window of matching music, one named number each
    (``EMBEDDING_NAMES``): the share of each pitch class in the chords and bass, the accompaniment's onsets
    per step, its mean dynamics and register."""
    pcs = target[:, score.OUT_CHORD].sum(0) + target[:, 26:38].sum(0)
    pcs = pcs / max(pcs.sum(), 1e-9)
    return np.concatenate([pcs, [target[:, score.OUT_COMP_ON].mean(), target[:, score.OUT_DYN].mean(),
                                 target[:, score.OUT_REG].mean()]]).astype(np.float32)


def embeddings(samples: Samples, windows: list[int]) -> np.ndarray:
    """:func:`embedding` of each window's matching music, each name standardised over ``windows`` (z-scores,
    so the pitch-class shares weigh as much as the scalars), then scaled to unit length for the cosine."""
    emb = np.stack([embedding(samples.target[samples._steps(i, a)]) for i, a, _ in (samples.windows[w] for w in windows)])
    emb = (emb - emb.mean(0)) / (emb.std(0) + 1e-9)
    return emb / (np.linalg.norm(emb, axis=1, keepdims=True) + 1e-9)


def augment(samples: Samples, train: list[int], threshold: float) -> list[dict]:
    """The spec's augmentation: for every training window, every other training song's window whose
    embedding's cosine similarity (:func:`embeddings`) to this window's matching music is at least
    ``threshold`` becomes a new sample (same hum, same controls, that music). Returns one record per new
    sample, its similarity included."""
    emb = embeddings(samples, train)
    song = np.array([samples.windows[w][0] for w in train])
    added = []
    for j in range(0, len(train), 512):
        sim = emb[j:j + 512] @ emb.T
        for r, row in enumerate(sim):
            hits = np.flatnonzero((row >= threshold) & (song != song[j + r]))
            added += [{"window": train[j + r], "match": train[h], "similarity": float(row[h])} for h in hits]
    return added


# ------------------------------------------------------------------------------------------------
# held-out evaluation
# ------------------------------------------------------------------------------------------------
def evaluate(model: SoundtrackGenerator, disc: DifferenceDiscriminator, samples: Samples, test: list[int],
             rng: np.random.Generator) -> dict:
    """Held-out figures on whole-song windows, each beside a baseline:
    lead pitch-class accuracy (baseline: copy the hum), chord pitch-class F1 (baseline: the hum key's tonic
    triad throughout), bass accuracy (baseline: the tonic), accompaniment onsets on the steps with a video
    event (baseline: the share of all steps the generator strikes; ``struck_*``: accompaniment or bass), and
    the discriminator's difference."""
    if not test:
        return {}
    model.eval()
    res = {k: [] for k in ("lead_acc", "lead_copy_acc", "chord_f1", "chord_tonic_f1", "bass_acc", "bass_tonic_acc",
                           "comp_on_event", "comp_on_any", "struck_on_event", "struck_any", "difference")}
    with torch.no_grad():
        for j in range(0, len(test), 64):
            items = [(w, w) for w in test[j:j + 64]]
            cond, y, _, _ = samples.batch(items, rng, train=False)
            probs = model.probabilities(model(cond))
            res["difference"].append(disc(model.hard(probs), y, cond).numpy())
            p, y, c = probs.numpy(), y.numpy(), cond.numpy()
            sung = y[..., 12] < 0.5
            res["lead_acc"].append((p[..., :13].argmax(-1) == y[..., :13].argmax(-1))[sung])
            copy = np.where(c[..., 12] > 0.5, c[..., :12].argmax(-1), 12)
            res["lead_copy_acc"].append((copy == y[..., :13].argmax(-1))[sung])
            tonic = c[:, 0, 34:46].argmax(-1)
            major = c[:, 0, 46] > 0.5
            triad = np.zeros((len(c), 12))
            for b in range(len(c)):
                for iv in ((0, 4, 7) if major[b] else (0, 3, 7)):
                    triad[b, (tonic[b] + iv) % 12] = 1
            has = y[..., 14:26].sum(-1) > 0
            res["chord_f1"].append(_f1(score.chord_sets(p[..., 14:26]), y[..., 14:26] > 0.5, has))
            res["chord_tonic_f1"].append(_f1(np.broadcast_to(triad[:, None] > 0.5, y[..., 14:26].shape),
                                             y[..., 14:26] > 0.5, has))
            bass = y[..., 26:39].argmax(-1)
            with_bass = bass < 12
            res["bass_acc"].append((p[..., 26:39].argmax(-1) == bass)[with_bass])
            res["bass_tonic_acc"].append((np.broadcast_to(tonic[:, None], bass.shape) == bass)[with_bass])
            event = c[..., score.IN_EVENT] > 0.5
            struck = p[..., score.OUT_COMP_ON] > 0.5
            res["comp_on_event"].append(struck[event])
            res["comp_on_any"].append(struck.ravel())
            either = struck | (p[..., score.OUT_BASS_ON] > 0.5)
            res["struck_on_event"].append(either[event])
            res["struck_any"].append(either.ravel())
    model.train()
    return {k: float(np.mean(np.concatenate([np.ravel(v) for v in vals]))) for k, vals in res.items()}


def evaluate_by_source(model: SoundtrackGenerator, disc: DifferenceDiscriminator, samples: Samples,
                       test: list[int], sources) -> dict:
    """:func:`evaluate` on the windows of ``test`` from each of ``sources`` apart, with their count."""
    out = {}
    for name in sources:
        mine = [w for w in test if samples.rows[samples.windows[w][0]]["source"] == name]
        out[name] = evaluate(model, disc, samples, mine, np.random.default_rng(0)) | {"windows": len(mine)}
    return out


def _f1(pred: np.ndarray, true: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per-step F1 of pitch-class sets, over ``rows``."""
    tp = (pred & true).sum(-1)
    f1 = 2 * tp / np.maximum(pred.sum(-1) + true.sum(-1), 1)
    return f1[rows]


# ------------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------------
def train(args) -> dict:
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    arrays, rows = data.load_samples(Path(args.cache), args.dataset, bootstrap=not args.no_bootstrap,
                                     sources=tuple(args.sources))
    samples = Samples(arrays, rows)
    train_w = samples.subset(lambda s: not held_out(s))
    test_w = samples.subset(held_out)
    if not train_w:
        raise SystemExit("no training samples: every sample fell in the held-out songs")
    added = augment(samples, train_w, args.augment) if args.augment else []
    items = [(w, w) for w in train_w] + [(a["window"], a["match"]) for a in added]
    model, disc = SoundtrackGenerator(), DifferenceDiscriminator()
    opt_g = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    opt_d = torch.optim.AdamW(disc.parameters(), lr=args.lr, weight_decay=1e-4)
    curves = {k: [] for k in ("iteration", "d_loss", "g_difference", "measured_difference", "variant_difference",
                              "other_music_difference", "reconstruction", "lead", "chord", "bass",
                              "comp", "dynamics")}
    evals = []
    start, under, stop = time.time(), 0, None
    window: list[float] = []
    bar = tqdm(range(1, args.max_iters + 1), desc="soundtrack GAN", file=sys.stderr)
    for it in bar:
        batch = [items[i] for i in rng.integers(len(items), size=args.batch)]
        cond, y, y_var, lead_known = samples.batch(batch, rng)
        # discriminator step, generator frozen
        with torch.no_grad():
            fake = model.hard(model.probabilities(model(cond)))
        other = y.roll(1, 0)  # another sample's music
        targets = [difference(c, y, lead_known) for c in (fake, y_var, other)]
        d_loss = sum(((disc(c, y, cond) - t) ** 2).mean() for c, t in zip((fake, y_var, other), targets))
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        # generator step, discriminator frozen
        disc.requires_grad_(False)
        logits = model(cond)
        parts = reconstruction_losses(logits, y, lead_known, cond[..., score.IN_EVENT])
        rec = sum(parts.values())
        hard = model.hard(model.probabilities(logits))
        g_diff = disc(hard, y, cond).mean()
        true_diff = difference(hard, y, lead_known).mean()
        loss = rec + args.adv_weight * g_diff
        opt_g.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt_g.step()
        disc.requires_grad_(True)
        for k, v in (("iteration", it), ("d_loss", d_loss.item()), ("g_difference", g_diff.item()),
                     ("measured_difference", true_diff.item()), ("variant_difference", targets[1].mean().item()),
                     ("other_music_difference", targets[2].mean().item()),
                     ("reconstruction", rec.item()), *((k, v.item()) for k, v in parts.items())):
            curves[k].append(v)
        window = (window + [g_diff.item()])[-args.stop_window:]
        running = float(np.mean(window))
        under = under + 1 if it > args.min_iters and running < args.stop_threshold else 0
        bar.set_postfix(d=f"{d_loss.item():.3f}", diff=f"{running:.3f}", rec=f"{rec.item():.3f}", under=under)
        if it % args.eval_every == 0:
            evals.append({"iteration": it, **evaluate(model, disc, samples, test_w[::4], np.random.default_rng(0))})
            tqdm.write(json.dumps({k: round(v, 3) for k, v in evals[-1].items()}), file=sys.stderr)
        if under >= args.stop_patience:
            stop = {"reason": f"difference loss under {args.stop_threshold} for {args.stop_patience} consecutive "
                              "iterations", "iterations": it, "met": True}
            break
        if time.time() - start > args.time_budget:
            stop = {"reason": f"time budget of {args.time_budget} s", "iterations": it, "met": False}
            break
    if stop is None:
        stop = {"reason": f"iteration limit {args.max_iters}", "iterations": args.max_iters, "met": False}
    stop.update(seconds=round(time.time() - start, 1), running_difference=running,
                threshold=args.stop_threshold, patience=args.stop_patience, window=args.stop_window)
    final = evaluate(model, disc, samples, test_w, np.random.default_rng(0))
    by_source = evaluate_by_source(model, disc, samples, test_w, sorted({r["source"] for r in rows}))
    sources: dict[str, int] = {}
    for w, m in items:
        name = samples.rows[samples.windows[w][0]]["source"] + ("+augmented" if w != m else "")
        sources[name] = sources.get(name, 0) + 1
    meta = {"dataset": ", ".join([f"{s} bootstrap" for s in args.sources if not args.no_bootstrap] + list(args.dataset)),
            "data": {"sources": sources, "augmented": len(added),
                     "train_songs": len({samples.windows[w][0] for w in train_w}),
                     "test_songs": len({samples.windows[w][0] for w in test_w}),
                     "train_windows": len(train_w), "test_windows": len(test_w)},
            "augment_threshold": args.augment, "stop": stop, "held_out": final, "held_out_by_source": by_source,
            "data_names": sorted({r["source"] for r in rows})}
    return {"model": model, "meta": meta, "curves": curves, "evals": evals, "added": added}


def plot(curves: dict, evals: list[dict], stop: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    it = np.array(curves["iteration"])

    def smooth(v):
        v = np.asarray(v)
        k = min(50, len(v))
        return np.convolve(v, np.ones(k) / k, "valid"), it[k - 1:]

    for name in ("d_loss", "g_difference", "measured_difference", "variant_difference", "other_music_difference"):
        s, x = smooth(curves[name])
        ax[0].plot(x, s, label=name)
    ax[0].axhline(stop["threshold"], color="k", ls=":", label="stop threshold")
    ax[0].set_title(f"GAN losses; stopped: {stop['reason']} (it {stop['iterations']})", fontsize=8)
    for name in ("lead", "chord", "bass", "comp", "dynamics"):
        s, x = smooth(curves[name])
        ax[1].plot(x, s, label=name)
    ax[1].set_title("reconstruction losses (training batches)")
    if evals:
        e = {k: [d[k] for d in evals] for k in evals[0]}
        for name, style in (("lead_acc", "-"), ("lead_copy_acc", ":"), ("chord_f1", "-"), ("chord_tonic_f1", ":"),
                            ("comp_on_event", "-"), ("comp_on_any", ":")):
            ax[2].plot(e["iteration"], e[name], style, label=name)
        ax[2].set_title("held-out songs (dotted: baselines)")
    for a in ax:
        a.set_xlabel("iteration")
        a.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", action="append", default=[], help="a Pair annotation export (folder or Hub id)")
    p.add_argument("--no-bootstrap", action="store_true", help="train on the --dataset exports only")
    p.add_argument("--sources", nargs="+", default=["pop909"], choices=data.SOURCES,
                   help="the symbolic bootstrap sources (default: pop909; see training/soundtrack_data.py)")
    p.add_argument("--augment", type=float, default=None, help="similarity threshold of the claimed augmentation")
    p.add_argument("--cache", default=str(ROOT / "data" / "soundtrack"))
    p.add_argument("--out", default=str(ROOT / "models" / "weights" / "soundtrack"))
    p.add_argument("--report", default=str(ROOT / "benchmarks" / "results" / "soundtrack_train.json"))
    p.add_argument("--plot", default=str(ROOT / "docs" / "soundtrack_training.png"))
    p.add_argument("--batch", type=int, default=24)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--adv-weight", type=float, default=0.1)
    p.add_argument("--max-iters", type=int, default=6000)
    p.add_argument("--min-iters", type=int, default=300)
    p.add_argument("--time-budget", type=float, default=1800.0)
    p.add_argument("--stop-threshold", type=float, default=0.30)
    p.add_argument("--stop-patience", type=int, default=200)
    p.add_argument("--stop-window", type=int, default=50)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    out = train(args)
    model, meta = out["model"], out["meta"]
    model.save_pretrained(args.out, meta)
    from models.provenance import save_results

    plot(out["curves"], out["evals"], meta["stop"], Path(args.plot))
    results = {**meta, "evals": out["evals"], "curves": {k: v[::10] for k, v in out["curves"].items()},
               "augmented_examples": out["added"][:20], "plot": str(Path(args.plot).resolve().relative_to(ROOT))
               if Path(args.plot).resolve().is_relative_to(ROOT) else args.plot}
    save_results(Path(args.report), results, module="training.train_soundtrack", argv=argv,
                 weights={"soundtrack": args.out})
    print(json.dumps({"stop": meta["stop"], "held_out": meta["held_out"]}, indent=1))


if __name__ == "__main__":
    main()
