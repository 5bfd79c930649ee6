"""Train the lip-sync discriminator in three stages (spec 04), evaluate each stage on held-out sources.

    python -m training.make_talking_dataset ../shared/media/talking_video data/talking --exclude no_audio
    python -m training.train_syncnet data/talking --holdout-source pcavs --out runs/syncnet

Steps (every parameter is a flag):
 0. prepare: track the largest face of every clip (MediaPipe), cut 48x96 grey lower-face crops,
    compute the 16 kHz log-mel (cached in ``--cache``); clips of ``--holdout-source`` are held out.
    Both inputs are normalised per clip (models.syncnet: mean crop and mean spectrum removed).
 1. STAGE 1: binary cross-entropy on the cosine similarity of synced pairs (label 1) and pairs
    whose audio is shifted by 3..15 frames or taken from a random other time of the clip (label
    0), every video window of a batch against every audio window of its own clips (pair_loss),
    plus the auxiliary lip-motion loss that gets both encoders off the log(2) plateau on little
    data -> first discriminator.
 2. FILTER: the first discriminator runs SyncNet's offset search on every ``--segment-seconds``
    segment of every training clip; a segment is kept when its best offset is within
    +/-``--max-offset`` frames and its confidence (median - min distance) is at least
    ``--min-confidence`` -> second training set. The report lists each segment with its verdict.
 3. STAGE 2: margin curriculum. Each round measures the real/fake similarity gap on the second set,
    raises the required margin by ``--gap-step`` above the previous margin, and trains with BCE plus
    the hinge ``max(0, margin - (sim_real - sim_fake))`` on pairs that share the video window,
    until the measured gap exceeds ``--gap-threshold`` (or ``--max-rounds``) -> second discriminator.
 4. STAGE 3: fine-tuning on the second set at ``--stage3-lr-scale`` times the learning rate with
    BCE on HARDER negatives (audio shifted by only 2..6 frames) -> third discriminator. The source
    leaves this objective open; hard near-offset negatives are what offset detection within +/-1
    frame needs, and the lower learning rate keeps the stage-2 margin.
With ``--ablate-filter``, stages 2 and 3 are also trained on the unfiltered set, to measure what
the filter buys. Runs on the CPU, one GPU or several under ``accelerate launch`` (``training.accel``). Every stage's checkpoint is saved (``OUT/stage1`` ...), the last one as
``OUT/final``; ``OUT/report.json`` and ``OUT/report.png`` give, per stage, held-out pair accuracy,
real/fake similarity gap and offset-detection accuracy.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from media.errors import AVStudioError
from media.features import (
    MEL_FPS,
    SAMPLE_RATE,
    SYNC_MEL_FRAMES,
    frame_to_mel,
    log_mel,
    mel_windows,
)
from media.io import shift_audio
from models.provenance import provenance
from models.syncnet import (
    MEL_FLOOR,
    N_LIP_POINTS,
    VIDEO_FPS,
    SyncInputs,
    SyncNet,
    SyncNetConfig,
    embed_audio_windows,
    embed_video_windows,
    face_deviation,
    normalize_mel,
    offset_search,
    prepare_clip,
    shift_recovery,  # moved to models.syncnet; still importable from here
    sync_score,
    valid_windows,
    video_window_indices,
)
from training.accel import (
    LossModule,
    make_accelerator,
    mean_over_processes,
    per_process_seed,
    save_on_main,
    sync_buffers,
)

EVAL_SHIFTS = (-8, -4, 0, 4, 8)


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
def _materialise(media: dict | None, folder: Path) -> str | None:
    """Path of a decode=False media cell, writing its embedded bytes to ``folder`` if needed."""
    if media is None:
        return None
    if media.get("bytes"):
        out = folder / Path(media["path"] or "clip.mp4").name
        if not out.exists():
            out.write_bytes(media["bytes"])
        return str(out)
    return media["path"]


def load_clips(dataset_dir: Path, cache: Path, max_clips: int | None = None) -> list[dict]:
    """Prepared clips (crops, mel, ...) of a dataset built by training.make_talking_dataset."""
    from datasets import load_from_disk

    ds = load_from_disk(str(dataset_dir))
    cache.mkdir(parents=True, exist_ok=True)
    clips = []
    rows = list(range(len(ds)))[:max_clips]
    with tempfile.TemporaryDirectory() as tmp:
        for r in tqdm(rows, desc="preparing clips", unit="clip"):
            row = ds[r]
            name = Path(row["video"]["path"]).stem
            cached = cache / f"{name}.npz"
            if cached.exists():
                z = np.load(cached)
                # the mel is recomputed from the audio, so that the cache outlives changes of normalisation
                inputs = SyncInputs(z["gray"], z["found"], normalize_mel(log_mel(z["audio"], SAMPLE_RATE)), z["audio"],
                                    float(z["fps"]), z["mouth_opening"], z["lips"])
            else:
                video = _materialise(row["video"], Path(tmp))
                try:
                    inputs = prepare_clip(video, _materialise(row["audio"], Path(tmp)))
                except AVStudioError as err:  # MediaError, NoFaceError
                    tqdm.write(f"skipping {name}: {err}")
                    continue
                np.savez_compressed(cached, gray=inputs.gray, found=inputs.found,
                                    audio=inputs.audio, fps=inputs.fps, mouth_opening=inputs.mouth_opening,
                                    lips=inputs.lips)
            clips.append({"name": name, "source": row["source"], "speaker": row["speaker"], "inputs": inputs,
                          "mask": valid_windows(inputs.found, inputs.fps) & _audio_inside(inputs)})
    return clips


def _audio_inside(x: SyncInputs) -> np.ndarray:
    """Windows whose 0.2 s of audio lies inside the recording."""
    return frame_to_mel(np.arange(len(x.found)), x.fps) + SYNC_MEL_FRAMES <= x.mel.shape[1]


class PairSampler:
    """Random (video window, audio window, label) batches from clips, with augmentation."""

    def __init__(self, clips: list[dict], rng: np.random.Generator, masks: list[np.ndarray] | None = None):
        self.clips = clips
        self.rng = rng
        self.starts = [np.flatnonzero(m) for m in (masks or [c["mask"] for c in clips])]
        weights = np.array([len(s) for s in self.starts], dtype=np.float64)
        if weights.sum() == 0:
            raise ValueError("no usable training window")
        self.p = weights / weights.sum()
        self.vidx = [video_window_indices(len(c["inputs"].found), c["inputs"].fps) for c in clips]
        self.dev = [face_deviation(c["inputs"].gray, c["inputs"].found).astype(np.float16) for c in clips]
        self.lip_motion = [c["inputs"].lip_motion() for c in clips]

    def _audio(self, x: SyncInputs, t: np.ndarray) -> np.ndarray:
        starts = np.rint(t * MEL_FPS).astype(np.int64)
        return mel_windows(x.mel, starts, SYNC_MEL_FRAMES, fill=MEL_FLOOR)

    def batch(self, size: int, neg_shifts: tuple[int, int], random_neg: float = 0.0, augment: bool = True,
              group: int = 8):
        """Video (B,5,48,96) crop deviations, positive mel (B,80,16), negative mel (B,80,16), pair
        labels (B,2B) and the lip motion of the video windows (B,5,40,2).

        The batch holds ``group`` windows from each of B / group clips. Each video window's own
        negative is its audio shifted by k frames (25 fps grid), lo <= |k| <= hi, or, with
        probability ``random_neg``, from a random other time of the clip. The labels (B, 2B) say,
        for every video window against every audio window of the batch (positives then
        negatives): 1 = in sync, 0 = same clip at another time (a hard negative: same face, same
        voice, only the timing differs), 2 = another clip (an easy negative), -1 = same clip under
        3 frames apart (ambiguous: left out of the loss).
        """
        lo, hi = neg_shifts
        group = max(1, min(group, size))
        clip_ids = np.repeat(self.rng.choice(len(self.clips), size=-(-size // group), p=self.p), group)[:size]
        video = np.empty((size, 5, 48, 96), np.float32)
        pos = np.empty((size, 80, SYNC_MEL_FRAMES), np.float32)
        neg = np.empty_like(pos)
        lips = np.empty((size, 5, N_LIP_POINTS, 2), np.float32)
        t_pos, t_neg = np.empty(size), np.empty(size)
        for b, c in enumerate(clip_ids):
            x = self.clips[c]["inputs"]
            i = int(self.rng.choice(self.starts[c]))
            video[b] = self.dev[c][self.vidx[c][i]]
            lips[b] = self.lip_motion[c][self.vidx[c][i]]
            t = np.array([i / x.fps])
            duration = x.mel.shape[1] / MEL_FPS - SYNC_MEL_FRAMES / MEL_FPS
            if self.rng.random() < random_neg:
                far = self.rng.uniform(0, max(duration, 0.01))
                while abs(far - t[0]) < hi / VIDEO_FPS and duration > 2 * hi / VIDEO_FPS:
                    far = self.rng.uniform(0, duration)
                tn = np.array([far])
            else:
                k = self.rng.integers(lo, hi + 1) * self.rng.choice([-1, 1])
                tn = t + k / VIDEO_FPS
                if tn[0] < 0 or tn[0] > duration:  # reflect into the clip
                    tn = t - k / VIDEO_FPS
            tn = np.clip(tn, 0, None)
            pos[b] = self._audio(x, t)[0]
            neg[b] = self._audio(x, tn)[0]
            t_pos[b], t_neg[b] = t[0], tn[0]
        if augment:
            video, pos, neg = self._augment(video, pos, neg)
        a_clip = np.concatenate([clip_ids, clip_ids])
        dt = np.abs(t_pos[:, None] - np.concatenate([t_pos, t_neg])[None, :]) * VIDEO_FPS  # in frames
        same = clip_ids[:, None] == a_clip[None, :]
        labels = np.where(same, 0, 2).astype(np.float32)
        labels[same & (dt < 3)] = -1
        labels[same & (dt < 0.5)] = 1
        return (torch.from_numpy(video), torch.from_numpy(pos), torch.from_numpy(neg), torch.from_numpy(labels),
                torch.from_numpy(lips))

    def _augment(self, video, pos, neg):
        """Small translations, contrast jitter and noise; audio gain, noise, a shift of the mel bins
        by up to 3 (a cheap vocal-tract-length perturbation: other voices) and a frequency mask."""
        rng = self.rng
        out = np.empty_like(video)
        for b in range(len(video)):
            dy, dx = rng.integers(-3, 4), rng.integers(-5, 6)
            out[b] = np.roll(video[b], (dy, dx), axis=(1, 2)) * rng.uniform(0.7, 1.3)
        out += rng.normal(0, 0.03, out.shape).astype(np.float32)
        gain = rng.uniform(-0.15, 0.15, size=(len(pos), 1, 1)).astype(np.float32)  # +/- 3 dB
        audio = np.concatenate([pos, neg]) + np.concatenate([gain, gain])
        audio += rng.normal(0, 0.03, audio.shape).astype(np.float32)
        for b in range(len(pos)):  # the same perturbation for a window's positive and negative
            k, f0, width = int(rng.integers(-3, 4)), int(rng.integers(0, audio.shape[1] - 8)), int(rng.integers(0, 9))
            for j in (b, b + len(pos)):
                audio[j] = np.roll(audio[j], k, axis=0)
                audio[j, f0:f0 + width] = 0.0
        audio = np.clip(audio, MEL_FLOOR, -MEL_FLOOR)
        return out, audio[:len(pos)], audio[len(pos):]


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model: SyncNet, clips: list[dict], seed: int = 0, pairs_per_clip: int = 64) -> dict:
    """Held-out pair accuracy, real/fake similarity gap and offset-detection accuracy."""
    model.eval()
    rng = np.random.default_rng(seed)
    sampler = PairSampler(clips, rng)
    sims_real, sims_fake = [], []
    for _ in range(max(1, len(clips) * pairs_per_clip // 128)):
        v, p, n, _, _ = sampler.batch(128, (5, 15), random_neg=0.0, augment=False)
        sims_real.append(model(v, p))
        sims_fake.append(model(v, n))
    real, fake = torch.cat(sims_real), torch.cat(sims_fake)
    pair_acc = float(((model.sync_logit(real) > 0).sum() + (model.sync_logit(fake) <= 0).sum()) / (len(real) + len(fake)))
    real, fake = real.numpy(), fake.numpy()
    hits, cases = 0, []
    for c in clips:
        x = c["inputs"]
        v = embed_video_windows(model, x.gray, x.found, x.fps)  # the picture is the same at every shift
        for s in EVAL_SHIFTS:
            # audio s frames EARLY (leading the picture): advance it by s frames
            wave = shift_audio(x.audio, SAMPLE_RATE, -s / x.fps)
            res = sync_score(model, x.gray, x.found, normalize_mel(log_mel(wave, SAMPLE_RATE)), x.fps,
                             video_embeddings=v)
            ok = abs(res["offset_frames"] - s) <= 1
            hits += ok
            cases.append({"clip": c["name"], "true": s, "found": res["offset_frames"],
                          "confidence": round(res["confidence"], 4)})
    return {"pair_accuracy": pair_acc, "sim_real": float(real.mean()), "sim_fake": float(fake.mean()),
            "gap": float(real.mean() - fake.mean()), "offset_accuracy": hits / max(1, len(cases)),
            "shift_recovery": shift_recovery(cases), "offset_cases": cases}


# --------------------------------------------------------------------------------------------
# stages
# --------------------------------------------------------------------------------------------
def pair_loss(model: SyncNet, v, p, n, labels, lips, easy_weight: float = 0.0, aux_weight: float = 1.0):
    """Binary cross-entropy on the cosine of every (video, audio) pair of the batch.

    Each video window meets its synced audio (label 1), its shifted audio and the audio of every
    other sample (labels 0 and 2, see PairSampler.batch), as in SigLIP's pairwise sigmoid loss:
    B x 2B pairs per batch instead of 2B, which gets the discriminator off the log(2) plateau far
    sooner. Positives weigh half the loss; of the other half, hard negatives (same clip, other
    time: only the timing tells them apart) weigh ``1 - easy_weight`` and easy negatives (other
    clips, which identity alone can reject) ``easy_weight``, 0 by default: with a dozen speakers,
    any weight on them teaches the model to match voices to faces instead of timing.

    Auxiliary term (``aux_weight``): from the video features AND from the synced audio features,
    one shared linear head must predict the lip motion of the 5 frames (the MediaPipe lip
    landmarks minus their clip mean; mean squared error). With minutes of data instead of LRS2's
    hundreds of hours, the sync loss alone sits at log(2): the encoders find nothing to agree on.
    The landmarks, free from the face tracker, give both encoders the same target, the lip
    motion, so their embeddings meet in a space where timing is what matters.
    Returns (loss, cosine of the synced pairs, cosine of the shifted pairs).
    """
    feats = model.video_features(v)
    ev = F.normalize(feats, dim=1, eps=1e-6)
    b = len(v)
    afeats = model.audio_features(torch.cat([p, n]))
    ea = F.normalize(afeats, dim=1, eps=1e-6)
    sims = ev @ ea.T  # (B, 2B)
    bce = F.binary_cross_entropy_with_logits(model.sync_logit(sims), labels.clamp(min=0), reduction="none")
    hard, easy = bce[labels == 0], bce[labels == 2]
    neg = (1 - easy_weight) * hard.mean() + easy_weight * easy.mean() if len(easy) else hard.mean()
    loss = 0.5 * (bce[labels == 1].mean() + neg)
    if aux_weight:
        loss = loss + aux_weight * (F.mse_loss(model.predict_lips(feats), lips)
                                    + F.mse_loss(model.predict_lips(afeats[:b]), lips))
    return loss, sims.diagonal(), sims[:, b:].diagonal()


def train_bce(model, sampler, steps, lr, batch, neg_shifts, random_neg, device, desc, log, aux_weight=1.0,
              accelerator=None):
    """Stages 1 and 3: BCE on the cosine of synced (1) and shifted (0) pairs."""
    accelerator = accelerator or make_accelerator(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 0.1)
    loss_fn, opt = accelerator.prepare(LossModule(model, pair_loss), opt)
    model.train()
    for step in (bar := tqdm(range(steps), desc=desc, unit="step", disable=not accelerator.is_main_process)):
        loss, _, _ = loss_fn(*(t.to(device) for t in sampler.batch(batch, neg_shifts, random_neg)),
                             aux_weight=aux_weight)
        opt.zero_grad()
        accelerator.backward(loss)
        opt.step()
        sched.step()
        log.append({"stage": desc, "step": step, "loss": loss.item()})
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    sync_buffers(accelerator, model)
    accelerator.free_memory()  # drop the stage's wrapper and optimizer


@torch.no_grad()
def measured_gap(model, sampler, device, batches=4, batch=128) -> float:
    model.eval()
    gaps = []
    for _ in range(batches):
        v, p, n, _, _ = (t.to(device) for t in sampler.batch(batch, (3, 15), 0.2, augment=False))
        gaps.append(float((model(v, p) - model(v, n)).mean()))
    return float(np.mean(gaps))


def train_margin_curriculum(model, sampler, args, device, log, desc="stage2", accelerator=None):
    """Stage 2: raise the required real/fake gap step by step until it passes the threshold."""
    accelerator = accelerator or make_accelerator(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    loss_fn, opt = accelerator.prepare(LossModule(model, pair_loss), opt)
    schedule = []
    margin = None
    for rnd in range(args.max_rounds):
        gap = mean_over_processes(accelerator, measured_gap(model, sampler, device))  # every process decides alike
        if gap > args.gap_threshold:
            schedule.append({"round": rnd, "measured_gap": gap, "margin": margin, "done": True})
            break
        margin = (gap if margin is None else max(margin, gap)) + args.gap_step
        schedule.append({"round": rnd, "measured_gap": gap, "margin": margin})
        model.train()
        for step in (bar := tqdm(range(args.round_steps), desc=f"{desc} round {rnd} margin {margin:.2f}", unit="step",
                                 disable=not accelerator.is_main_process)):
            bce, sp, sn = loss_fn(*(t.to(device) for t in sampler.batch(args.batch, (3, 15), 0.2)),
                                  aux_weight=args.aux_weight)
            hinge = F.relu(margin - (sp - sn)).mean()
            loss = bce + hinge
            opt.zero_grad()
            accelerator.backward(loss)
            opt.step()
            log.append({"stage": desc, "round": rnd, "margin": margin, "loss": loss.item(), "hinge": hinge.item()})
            bar.set_postfix(loss=f"{loss.item():.3f}", hinge=f"{hinge.item():.3f}")
        model.eval()
        sync_buffers(accelerator, model)
    else:
        gap = mean_over_processes(accelerator, measured_gap(model, sampler, device))
        schedule.append({"round": args.max_rounds, "measured_gap": gap, "margin": margin, "done": False})
    accelerator.free_memory()
    return schedule


def sync_filter(model, clips, args) -> tuple[list[np.ndarray], list[dict]]:
    """Keep the segments whose best offset is near zero and whose confidence passes the threshold."""
    masks, verdicts = [], []
    for c in tqdm(clips, desc="filter", unit="clip"):
        x = c["inputs"]
        seg = max(1, round(args.segment_seconds * x.fps))
        keep = np.zeros_like(c["mask"])
        v = embed_video_windows(model, x.gray, x.found, x.fps)
        a, a_inside = embed_audio_windows(model, x.mel, len(x.gray), x.fps)
        for s0 in range(0, len(x.found), seg):
            sl = slice(s0, min(len(x.found), s0 + seg))
            m = np.zeros_like(c["mask"])
            m[sl] = c["mask"][sl]
            entry = {"clip": c["name"], "source": c["source"], "start_s": round(s0 / x.fps, 2),
                     "end_s": round(sl.stop / x.fps, 2), "windows": int(m.sum())}
            if m.sum() < args.min_windows:
                entry.update(kept=False, reason=f"only {int(m.sum())} windows with a face")
            else:
                res = offset_search(v, a, m, a_inside=a_inside)
                entry.update(offset=res["offset_frames"], confidence=round(res["confidence"], 4))
                if abs(res["offset_frames"]) > args.max_offset:
                    entry.update(kept=False, reason=f"offset {res['offset_frames']} frames")
                elif res["confidence"] < args.min_confidence:
                    entry.update(kept=False, reason=f"confidence {res['confidence']:.3f} < {args.min_confidence}")
                else:
                    entry.update(kept=True, reason="in sync")
                    keep |= m
            verdicts.append(entry)
        masks.append(keep)
    return masks, verdicts


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
def plot_report(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = list(report["evaluation"])
    metrics = [("pair_accuracy", "held-out pair accuracy"), ("gap", "real - fake similarity"),
               ("offset_accuracy", "offset found within +/-1 frame"),
               ("shift_recovery", "shift recovered (vs unshifted) +/-1")]
    fig, axes = plt.subplots(1, len(metrics) + 1, figsize=(17, 4))
    for ax, (key, title) in zip(axes, metrics):
        vals = [report["evaluation"][s][key] for s in stages]
        ax.bar(range(len(stages)), vals, color="tab:blue")
        ax.set_xticks(range(len(stages)), stages, rotation=30, ha="right", fontsize=8)
        ax.set_title(title)
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
    steps = 0
    for stage in dict.fromkeys(e["stage"] for e in report["loss_log"]):
        losses = [e["loss"] for e in report["loss_log"] if e["stage"] == stage]
        axes[-1].plot(range(steps, steps + len(losses)), losses, lw=0.5, label=stage)
        steps += len(losses)
    axes[-1].set_title("training loss")
    axes[-1].set_xlabel("step")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Three-stage training of the lip-sync discriminator (spec 04)")
    ap.add_argument("dataset", type=Path, help="dataset folder from training.make_talking_dataset")
    ap.add_argument("--out", type=Path, default=Path("runs/syncnet"))
    ap.add_argument("--cache", type=Path, default=None, help="prepared-clip cache (default OUT/../cache)")
    ap.add_argument("--holdout-source", nargs="+", default=["pcavs"], help="sources used only for evaluation")
    ap.add_argument("--device", default=None,
                    help="cpu to force the CPU; by default Accelerate chooses (the GPU if any; see training.accel)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--width", type=int, default=SyncNetConfig.width)
    ap.add_argument("--aux-weight", type=float, default=1.0, help="weight of the lip-landmark auxiliary loss")
    ap.add_argument("--stage1-steps", type=int, default=1500)
    ap.add_argument("--segment-seconds", type=float, default=4.0, help="filter: segment length")
    ap.add_argument("--max-offset", type=int, default=1, help="filter: largest |offset| (frames) kept")
    ap.add_argument("--min-confidence", type=float, default=0.01, help="filter: smallest confidence kept")
    ap.add_argument("--min-windows", type=int, default=25, help="filter: fewest face windows in a segment")
    ap.add_argument("--gap-threshold", type=float, default=0.3, help="stage 2: stop when the gap exceeds this")
    ap.add_argument("--gap-step", type=float, default=0.05, help="stage 2: margin increase per round")
    ap.add_argument("--round-steps", type=int, default=100, help="stage 2: steps per round")
    ap.add_argument("--max-rounds", type=int, default=8)
    ap.add_argument("--stage3-steps", type=int, default=500)
    ap.add_argument("--stage3-lr-scale", type=float, default=0.2)
    ap.add_argument("--ablate-filter", action="store_true", help="also train stages 2-3 without the filter")
    ap.add_argument("--max-clips", type=int, default=None, help="use only the first N clips (smoke tests)")
    ap.add_argument("--resume-stage1", type=Path, default=None,
                    help="load this stage-1 checkpoint instead of training stage 1 (to re-run the filter and stages 2-3)")
    args = ap.parse_args(argv)

    accelerator = make_accelerator(args.device)
    device = accelerator.device
    args.device = str(device)
    print = accelerator.print  # messages from the main process only
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(per_process_seed(args.seed, accelerator))
    if accelerator.is_main_process:
        args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with accelerator.main_process_first():  # the main process fills the clip cache, the others read it
        clips = load_clips(args.dataset, args.cache or args.out.parent / "cache", args.max_clips)
    train = [c for c in clips if c["source"] not in args.holdout_source]
    held = [c for c in clips if c["source"] in args.holdout_source]
    if not train or not held:
        print(f"error: need clips both in and out of --holdout-source {args.holdout_source}", file=sys.stderr)
        return 2
    shared = {c["speaker"] for c in train} & {c["speaker"] for c in held}
    if shared:
        print(f"error: speakers {sorted(shared)} are both in training and held out", file=sys.stderr)
        return 2
    print(f"training on {len(train)} clips ({sorted({c['source'] for c in train})}), "
          f"evaluating on {len(held)} held-out clips ({sorted({c['source'] for c in held})})")

    log: list[dict] = []
    evaluation: dict[str, dict] = {}
    meta = {"train_sources": sorted({c["source"] for c in train}), "holdout_sources": args.holdout_source,
            "train_clips": [c["name"] for c in train]}

    def finish_stage(name: str, model: SyncNet):
        save_on_main(accelerator, model, args.out / name, metadata={**meta, "stage": name})
        if accelerator.is_main_process:  # evaluated on the CPU, a copy: the trained model stays where it is
            evaluation[name] = evaluate(copy.deepcopy(model).cpu(), held, seed=args.seed)
            e = evaluation[name]
            print(f"[{name}] pair accuracy {e['pair_accuracy']:.3f}  gap {e['gap']:.3f}  "
                  f"offset accuracy {e['offset_accuracy']:.3f}  shift recovery {e['shift_recovery']:.3f}")
        accelerator.wait_for_everyone()

    set1 = PairSampler(train, rng)
    if args.resume_stage1:
        model = SyncNet.from_pretrained(args.resume_stage1).to(device)
    else:
        model = SyncNet(SyncNetConfig(width=args.width)).to(device)
        train_bce(model, set1, args.stage1_steps, args.lr, args.batch, (3, 15), 0.2, device, "stage1", log,
                  args.aux_weight, accelerator)
    finish_stage("stage1", model)
    stage1 = copy.deepcopy(model)

    masks, verdicts = sync_filter(copy.deepcopy(model).cpu(), train, args)  # the same on every process
    kept = sum(int(m.sum()) for m in masks)
    total = sum(int(c["mask"].sum()) for c in train)
    print(f"filter kept {kept}/{total} windows ({sum(v['kept'] for v in verdicts)}/{len(verdicts)} segments)")
    if kept == 0:
        print("error: the filter kept no segment; lower --min-confidence, raise --max-offset or train stage 1 "
              "longer (see the filter verdicts in the report)", file=sys.stderr)
        return 3
    set2 = PairSampler(train, rng, masks)

    variants = [("", set2)] + ([("nofilter_", set1)] if args.ablate_filter else [])
    schedules = {}
    for prefix, sampler in variants:
        m = model if not prefix else copy.deepcopy(stage1).to(device)
        schedules[prefix + "stage2"] = train_margin_curriculum(m, sampler, args, device, log, prefix + "stage2",
                                                               accelerator)
        finish_stage(prefix + "stage2", m)
        train_bce(m, sampler, args.stage3_steps, args.lr * args.stage3_lr_scale, args.batch, (2, 6), 0.1,
                  device, prefix + "stage3", log, args.aux_weight, accelerator)
        finish_stage(prefix + "stage3", m)
    save_on_main(accelerator, model, args.out / "final", metadata={**meta, "stage": "stage3"})
    if not accelerator.is_main_process:
        return 0

    report = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "seconds": round(time.time() - t0, 1),
        "train_clips": len(train), "holdout_clips": len(held),
        "filter": {"kept_windows": kept, "total_windows": total, "segments": verdicts},
        "stage2_schedule": schedules,
        "evaluation": evaluation,
        "loss_log": log,
    }
    report = {**provenance("training.train_syncnet", weights={"trained": args.out / "final"}), **report}  # command, commit, weights
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    plot_report(report, args.out / "report.png")
    print(f"report: {args.out / 'report.json'} and report.png ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
