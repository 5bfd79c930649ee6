"""Train the lip-sync video processing network (spec 05) on a talking-face dataset.

    python -m training.train_lipsync data/talking --holdout-source pcavs --out runs/lipsync

0. **Preparation** (spec step 2): each clip's largest face is tracked; every frame becomes its
   mouth-blur image (``media.mouth``); the lower-face crop (128 x 64, similarity-aligned) of the
   real frame and of the blur image, the gradient map of the blur crop, the 40 lip keypoints in
   crop pixels, and the clip's MFCC (13) and log-mel are cached (``--cache``).
1. **Stage A**, feature extraction (spec training step 3): the visual vector of a group of 5
   blur crops centred on frame t and the audio vector of the 0.2 s of MFCC centred on t are made
   to agree element by element (mean squared difference of the unit vectors) while vectors of
   other moments of the same clip are pushed apart (a softmax over the batch; without it
   "agreeing" is solved by a constant). Batches hold 8 moments of each of 8 clips, so the other
   moments are the same face and voice at other times: agreement has to come from the mouth.
   Repeats until held-out retrieval accuracy reaches ``--stage-a-accuracy`` or
   ``--stage-a-steps`` run out.
2. **Stage B** (spec training steps 4-5): feature extraction is frozen; the decoding-generation
   subnetwork and the discriminator are trained alternately (one discriminator step with the
   generator frozen, one generator step with the discriminator frozen). Generator loss: L1
   reconstruction of the real crop (the mouth area weighted x5) + ``--gan-weight`` x BCE on the
   discriminator + ``--sync-weight`` x the sync loss of the bundled third-stage discriminator
   (``models/weights/syncnet``) on 5 consecutive generated frames and their audio. Each step
   also carries ``--silence-frames`` closed-mouth frames paired with silence (reconstruction
   only), so that a silent track closes the mouth.
3. **Lip predictor** (``--audio-keypoints``, before stage B): the lip head is refitted by ridge
   regression on the frozen audio vectors (silence rows included; penalty chosen by leaving one
   training source out) and its gain measured (``models.lipsync_fit.fit_lip_predictor``: the fitted
   numbers are buffers of the model, saved in its model.safetensors); stage B then draws the
   target frame's own keypoints into the map, and the held-out reports draw the predictor's, as
   the pipeline does.

Runs on the CPU, one GPU or several under ``accelerate launch`` (``training.accel``).

**Copying must not pay.** Unlike a mask, the blur leaves a trace of the original mouth. During
training the generator's input is the target frame's blur crop with the mouth area (both frames'
lip hulls, widened by ``--swap-grow`` d = 0.25 d, feathered) taken from the blur crop of ANOTHER
frame of the same clip whose mouth opening differs by at least ``--min-opening-change``; the
keypoint map is that frame's too (or, with ``--neutral-keypoints``, the clip's mean lip shape at
that frame's lip position). The picture around the mouth is exact, so pose is free, but the mouth
seen through the blur is the wrong one: the only way to the right mouth is the audio. (With 0.25 d
the target's own jaw line stays in view, which could tell the opening; ``--swap-grow 0.5`` hides
everything the pipeline pastes back, 0.35 d. Measured in two runs, it did not help: README.) At inference the input
frame's own mouth is just as wrong for new speech. Held-out metrics per epoch include the
cross-audio sync (a held-out face driven by another held-out speaker) against the sync with the
face's own, unheard audio: a copying model scores the latter higher.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from media.errors import AVStudioError
from media.face import LIPS, crop_landmarks, crop_transform, track_video
from media.features import (
    SAMPLE_RATE,
    SYNC_MEL_FRAMES,
    frame_to_mel,
    log_mel,
    mel_windows,
)
from media.io import iter_video_frames, read_audio
from media.mouth import gradient_map, mouth_blur_crop
from models.lipsync import (
    CROP,
    LipSyncConfig,
    LipSyncNet,
    generator_input,
    keypoint_map,
    keypoints_for_input,
    lip_hull,
    silence_windows,
)
from models.lipsync_fit import (  # the fits moved beside the model; still importable from here
    fit_lip_predictor,
    lip_clip,
    lip_deviation,
    mean_lip_shape,
    mfcc_window,
    opening_correlation,
)
from models.provenance import provenance
from models.syncnet import (
    CROP_SIZE,
    MEL_FLOOR,
    SyncNet,
    normalize_mel,
    valid_windows,
    video_window_indices,
)
from models.syncnet import DEFAULT_WEIGHTS as SYNCNET_WEIGHTS
from training.accel import (
    LossModule,
    make_accelerator,
    per_process_seed,
    save_on_main,
    sync_buffers,
)
from training.train_syncnet import _materialise

SWAP_GROW = 0.25  # d: the mouth area swapped in from another frame (0.5 reaches past the pipeline's PASTE_GROW; measured, not better)
GRAY = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


# --------------------------------------------------------------------------------------------
# preparation
# --------------------------------------------------------------------------------------------
def prepare_clip(video_path, audio=None, progress=None) -> dict:
    """Decode, track and turn one clip into the cached training arrays (see the module docstring)."""
    wave = read_audio(audio or video_path, sr=SAMPLE_RATE) if audio is None or isinstance(audio, (str, Path)) \
        else np.asarray(audio, np.float32)
    track, fps = track_video(video_path, progress=progress)
    geo = track.geometry() if track.found.any() else None
    n = len(track)
    real = np.zeros((n, CROP[1], CROP[0], 3), np.uint8)
    blur = np.zeros_like(real)
    grad = np.zeros((n, CROP[1], CROP[0]), np.uint8)
    keypoints = np.full((n, len(LIPS), 2), np.nan, np.float32)
    if geo is not None:
        keypoints = crop_landmarks(track, LIPS, "lower", CROP)
        for i, _, frame in iter_video_frames(video_path):
            if i >= n:
                break
            m = crop_transform(geo[i], "lower", CROP)
            real[i] = cv2.warpAffine(frame, m, CROP, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
            b = mouth_blur_crop(frame, track.landmarks[i], m, CROP) if track.found[i] else real[i]
            blur[i] = b
            grad[i] = np.round(gradient_map(b) * 255).astype(np.uint8)
    return {"real": real, "blur": blur, "grad": grad, "keypoints": keypoints, "found": track.found,
            "opening": track.mouth_opening().astype(np.float32), "fps": np.float32(fps), "audio": wave}


def load_clips(dataset_dir: Path, cache: Path, max_clips: int | None = None) -> list[dict]:
    from datasets import load_from_disk

    ds = load_from_disk(str(dataset_dir))
    cache.mkdir(parents=True, exist_ok=True)
    clips = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in tqdm(list(range(len(ds)))[:max_clips], desc="preparing clips", unit="clip"):
            row = ds[r]
            name = Path(row["video"]["path"]).stem
            cached = cache / f"{name}.npz"
            if cached.exists():
                data = dict(np.load(cached))
            else:
                try:
                    data = prepare_clip(_materialise(row["video"], Path(tmp)), _materialise(row["audio"], Path(tmp)))
                except AVStudioError as err:  # MediaError, NoFaceError
                    tqdm.write(f"skipping {name}: {err}")
                    continue
                np.savez_compressed(cached, **data)
            if not data["found"].any():
                tqdm.write(f"skipping {name}: no face")
                continue
            clips.append(finish_clip(name, row["source"], data))
    return clips


def finish_clip(name: str, source: str, data: dict) -> dict:
    """Add the audio features, the sync discriminator's clip mean and the usable windows to a prepared clip."""
    fps = float(data["fps"])
    clip = dict(data, **lip_clip(name, source, data["keypoints"], data["found"], data["opening"], fps, data["audio"]))
    clip["mel"] = normalize_mel(log_mel(data["audio"], SAMPLE_RATE))
    clip["vidx"] = video_window_indices(len(data["found"]), fps)
    inside = frame_to_mel(np.arange(len(data["found"])), fps) + SYNC_MEL_FRAMES <= clip["mel"].shape[1]
    clip["starts"] = np.flatnonzero(valid_windows(data["found"], fps) & inside)
    gray = torch.from_numpy(data["real"][data["found"]]).permute(0, 3, 1, 2).float() / 255.0
    clip["sync_mean"] = to_sync_gray(gray).mean(0).numpy()  # (48, 96) in [0, 1]
    return clip


def to_sync_gray(crops: torch.Tensor) -> torch.Tensor:
    """(B, 3, 64, 128) RGB in [0, 1] -> (B, 48, 96) grey in [0, 1], the sync discriminator's crop (differentiable)."""
    g = (crops * GRAY.to(crops)).sum(1, keepdim=True)
    return F.interpolate(g, size=(CROP_SIZE[1], CROP_SIZE[0]), mode="bilinear", align_corners=False,
                         antialias=True).squeeze(1)


# --------------------------------------------------------------------------------------------
# batches
# --------------------------------------------------------------------------------------------

def group_input(clip: dict, frames: np.ndarray, group: int = 5) -> np.ndarray:
    """(len(frames), 4*group, 64, 128) float32: blur RGB + gradient of the frames t-2..t+2 around each frame."""
    n = len(clip["found"])
    half = group // 2
    idx = np.clip(np.asarray(frames)[:, None] + np.arange(-half, half + 1)[None, :], 0, n - 1)
    rgb = clip["blur"][idx].astype(np.float32) / 255.0  # (B, g, h, w, 3)
    grad = clip["grad"][idx].astype(np.float32)[..., None] / 255.0
    x = np.concatenate([rgb, grad], axis=-1)  # (B, g, h, w, 4)
    return np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3).reshape(len(frames), 4 * group, CROP[1], CROP[0]))


def reference_input(clip: dict, frame: int, ref: int, neutral_keypoints: bool = False,
                    swap_grow: float = SWAP_GROW, true_keypoints: bool = False) -> np.ndarray:
    """(5, 64, 128) generator input for ``frame`` whose mouth area comes from frame ``ref``'s blur crop
    (and whose keypoint map is ``ref``'s, or with ``neutral_keypoints`` the clip's mean lip shape there,
    or with ``true_keypoints`` ``frame``'s own keypoints: the mouth the generator must draw, as the lip
    predictor gives it at inference).

    The mouth area is the union of both frames' lip hulls widened by ``swap_grow`` d (0.5 d reaches past
    what the pipeline pastes back, so no part of ``frame``'s jaw or lip corners is left to read)."""
    area = np.maximum(lip_hull(clip["keypoints"][frame], swap_grow), lip_hull(clip["keypoints"][ref], swap_grow))[..., None]
    blur = (area * clip["blur"][ref] + (1 - area) * clip["blur"][frame]).astype(np.float32) / 255.0
    if true_keypoints:
        kp = clip["keypoints"][frame]
    else:
        kp = keypoints_for_input(clip["keypoints"][ref], clip["kp_mean"] if neutral_keypoints else None)
    return generator_input(np.round(blur * 255).astype(np.uint8), kp)


def pick_reference(clip: dict, frame: int, rng: np.random.Generator, min_change: float) -> int:
    """Another frame with a face whose mouth opening differs by at least ``min_change`` (else the most different)."""
    found = np.flatnonzero(clip["found"])
    opening = clip["opening"]
    diff = np.abs(np.nan_to_num(opening[found] - opening[frame]))
    ok = found[(diff >= min_change) & (np.abs(found - frame) >= 3)]
    if len(ok):
        return int(rng.choice(ok))
    return int(found[np.argmax(diff)])


class Sampler:
    def __init__(self, clips: list[dict], rng: np.random.Generator, neutral_keypoints: bool = False,
                 swap_grow: float = SWAP_GROW, true_keypoints: bool = False):
        self.neutral_keypoints = neutral_keypoints
        self.true_keypoints = true_keypoints
        self.swap_grow = swap_grow
        self.clips = [c for c in clips if len(c["starts"])]
        if not self.clips:
            raise ValueError("no usable training window (clips too short or without a face)")
        self.rng = rng
        w = np.array([len(c["starts"]) for c in self.clips], np.float64)
        self.p = w / w.sum()

    def clips_for_batch(self, n: int) -> list[dict]:
        return [self.clips[i] for i in self.rng.choice(len(self.clips), size=n, p=self.p)]

    def stage_a(self, n_clips: int = 8, per_clip: int = 8):
        """Groups and MFCC windows of per_clip moments of each of n_clips clips, plus the clip index of each."""
        groups, audio, owner, lips = [], [], [], []
        for k, clip in enumerate(self.clips_for_batch(n_clips)):
            starts = self.rng.choice(clip["starts"], size=min(per_clip, len(clip["starts"])), replace=False)
            frames = clip["vidx"][starts, 2]  # the centre frame of each 5-frame window
            groups.append(group_input(clip, frames))
            audio.append(mfcc_window(clip, frames))
            lips.append(lip_deviation(clip, frames))
            owner += [k] * len(frames)
        return (torch.from_numpy(np.concatenate(groups)), torch.from_numpy(np.concatenate(audio)),
                torch.tensor(owner), torch.from_numpy(np.concatenate(lips)))

    def stage_b(self, n: int, min_change: float):
        """n windows of 5 frames: generator inputs, MFCC, real crops, mouth weights, sync mel, clip means and
        each frame's base lip shape (the clip's mean shape at the frame's lip position, crop pixels)."""
        ref_in, audio, real, weight, mel, means, base = [], [], [], [], [], [], []
        for clip in self.clips_for_batch(n):
            s = int(self.rng.choice(clip["starts"]))
            frames = clip["vidx"][s]
            for f in frames:
                r = pick_reference(clip, int(f), self.rng, min_change)
                ref_in.append(reference_input(clip, int(f), r, self.neutral_keypoints, self.swap_grow, self.true_keypoints))
                base.append(keypoints_for_input(clip["keypoints"][f], clip["kp_mean"]))
                weight.append(1.0 + 4.0 * lip_hull(clip["keypoints"][f], 0.25))
            audio.append(mfcc_window(clip, frames))
            real.append(clip["real"][frames])
            mel.append(mel_windows(clip["mel"], [frame_to_mel(s, clip["fps"])], SYNC_MEL_FRAMES, fill=MEL_FLOOR)[0])
            means.append(clip["sync_mean"])
        real = torch.from_numpy(np.concatenate(real)).permute(0, 3, 1, 2).float() / 255.0
        return (torch.from_numpy(np.stack(ref_in)), torch.from_numpy(np.concatenate(audio)), real,
                torch.from_numpy(np.stack(weight))[:, None], torch.from_numpy(np.stack(mel)),
                torch.from_numpy(np.stack(means)), np.stack(base))

    def silence(self, n: int, min_change: float):
        """n single frames whose mouth is closed (the clip's least-open tenth), paired with silence.

        Real speech has pauses, but a silent track is cleaner than any of them; without these
        pairs the mouth stays half open on silence. Returns generator inputs, MFCC, real crops, weights.
        """
        ref_in, real, weight = [], [], []
        for clip in self.clips_for_batch(n):
            found = np.flatnonzero(clip["found"] & np.isfinite(clip["opening"]))
            opening = clip["opening"][found]
            f = int(self.rng.choice(found[opening <= np.percentile(opening, 10)]))
            r = pick_reference(clip, f, self.rng, min_change)
            ref_in.append(reference_input(clip, f, r, self.neutral_keypoints, self.swap_grow, self.true_keypoints))
            real.append(clip["real"][f])
            weight.append(1.0 + 4.0 * lip_hull(clip["keypoints"][f], 0.25))
        audio = silence_windows(n, SYNC_MEL_FRAMES)
        real = torch.from_numpy(np.stack(real)).permute(0, 3, 1, 2).float() / 255.0
        return (torch.from_numpy(np.stack(ref_in)), torch.from_numpy(audio.astype(np.float32)), real,
                torch.from_numpy(np.stack(weight))[:, None])


# --------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------
def agreement_loss(v: torch.Tensor, a: torch.Tensor, owner: torch.Tensor, temperature: float = 0.1):
    """Stage A: matched visual/audio vectors agree element by element; other moments of the same clip are pushed away.

    Returns (loss, retrieval accuracy within clip).
    """
    v, a = F.normalize(v, dim=1), F.normalize(a, dim=1)
    agree = ((v - a) ** 2).sum(1).mean()
    logits = v @ a.T / temperature
    same_clip = owner[:, None] == owner[None, :]
    logits = logits.masked_fill(~same_clip, float("-inf"))
    target = torch.arange(len(v))
    nce = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    acc = (logits.argmax(1) == target).float().mean()
    return agree + nce, acc


def sync_loss(syncnet: SyncNet, fake: torch.Tensor, mel: torch.Tensor, means: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """BCE towards "in sync" of the bundled discriminator on windows of 5 generated crops; returns (loss, cosine)."""
    b = len(mel)
    gray = to_sync_gray(fake).view(b, 5, CROP_SIZE[1], CROP_SIZE[0])
    dev = (gray - means[:, None]) * (255.0 / 64.0)  # models.syncnet.face_deviation's scale
    cos = (syncnet.embed_video(dev) * syncnet.embed_audio(mel)).sum(1)
    logit = syncnet.sync_logit(cos)
    return F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit)), cos


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
def features_loss(features, batch, args):
    """Agreement loss + aux_weight x the shared lip head's error from both vectors; (loss, retrieval acc, lip error
    from audio). ``features``: the model's FeatureExtractor."""
    g, a, owner, lips = (t.to(args.device) for t in batch)
    v, au = features.visual_vector(g), features.audio_vector(a)
    loss, acc = agreement_loss(v, au, owner)
    lip_v = F.mse_loss(features.predict_lips(v), lips)
    lip_a = F.mse_loss(features.predict_lips(au), lips)
    return loss + args.aux_weight * (lip_v + lip_a), acc, lip_a


def stage_a_loss(model: LipSyncNet, batch, args):
    """:func:`features_loss` of the model's feature extraction."""
    return features_loss(model.features, batch, args)


def train_stage_a(model: LipSyncNet, train: Sampler, held: Sampler | None, args, log: list, accelerator=None) -> dict:
    accelerator = accelerator or make_accelerator(args.device)
    opt = torch.optim.Adam(model.features.parameters(), lr=args.lr)
    loss_fn, opt = accelerator.prepare(LossModule(model.features, features_loss), opt)
    model.features.train()
    acc_held, lip_held = float("nan"), float("nan")
    bar = tqdm(range(args.stage_a_steps), desc="stage A", unit="step", disable=not accelerator.is_main_process)
    for step in bar:
        loss, acc, lip_a = loss_fn(train.stage_a(), args)
        opt.zero_grad()
        accelerator.backward(loss)
        opt.step()
        log.append({"stage": "A", "step": step, "loss": loss.item(), "train_acc": acc.item(), "lip_from_audio": lip_a.item()})
        if held is not None and (step + 1) % args.eval_every == 0:
            sync_buffers(accelerator, model.features)  # the same model on every process: the same decision to stop
            acc_held, lip_held = evaluate_stage_a(model, held, args)
            log[-1].update(held_acc=acc_held, held_lip_from_audio=lip_held)
            model.features.train()
            if acc_held >= args.stage_a_accuracy:
                break
        bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{acc.item():.2f}", held=f"{acc_held:.2f}", lip=f"{lip_held:.2f}")
    model.features.eval()
    sync_buffers(accelerator, model.features)  # the lip predictor's fit then runs alike everywhere
    accelerator.free_memory()
    result = {"steps": step + 1, "held_retrieval_accuracy": acc_held, "held_lip_error_from_audio": lip_held,
              "lip_error_if_constant": 1.0 if held is None else held_lip_variance(held)}
    if held is not None:
        corr = opening_correlation(model, held.clips)
        result["held_opening_correlation_median"] = float(np.median(corr)) if corr else float("nan")
        result["held_opening_correlation_per_clip"] = corr
    return result


@torch.no_grad()
def evaluate_stage_a(model: LipSyncNet, held: Sampler, args, batches: int = 4) -> tuple[float, float]:
    """Held-out retrieval accuracy (chance 1/8) and the lip-keypoint error predicted from the audio vector."""
    model.features.eval()
    accs, lips = [], []
    rng_state = held.rng.bit_generator.state
    for _ in range(batches):
        _, acc, lip_a = stage_a_loss(model, held.stage_a(), args)
        accs.append(acc.item())
        lips.append(lip_a.item())
    held.rng.bit_generator.state = rng_state  # the same held-out batches every time
    return float(np.mean(accs)), float(np.mean(lips))




def held_lip_variance(held: Sampler, batches: int = 4) -> float:
    """The lip error of always predicting the clip's mean mouth, on the same held-out batches (the bar to beat)."""
    rng_state = held.rng.bit_generator.state
    out = float(np.mean([float((held.stage_a()[3] ** 2).mean()) for _ in range(batches)]))
    held.rng.bit_generator.state = rng_state
    return out


def train_stage_b(model: LipSyncNet, syncnet: SyncNet, train: Sampler, held: Sampler | None, args, log: list,
                  accelerator=None) -> list:
    """Generator and discriminator trained alternately. Under several processes both are data parallel: the
    discriminator's own step goes through its wrapper; the generator's step reads the raw, frozen discriminator."""
    accelerator = accelerator or make_accelerator(args.device)
    for p in model.features.parameters():
        p.requires_grad_(False)
    for p in syncnet.parameters():
        p.requires_grad_(False)
    g_opt = torch.optim.Adam(model.generator.parameters(), lr=args.lr, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(model.discriminator.parameters(), lr=args.lr, betas=(0.5, 0.999))
    generator, discriminator, g_opt, d_opt = accelerator.prepare(model.generator, model.discriminator, g_opt, d_opt)
    epochs = []
    for epoch in range(args.epochs):
        model.generator.train()
        model.discriminator.train()
        bar = tqdm(range(args.steps_per_epoch), desc=f"stage B epoch {epoch + 1}/{args.epochs}", unit="step",
                   disable=not accelerator.is_main_process)
        for step in bar:
            ref, audio, real, weight, mel, means = (t.to(args.device) for t in train.stage_b(args.batch, args.min_opening_change)[:6])
            n_speech = len(ref)
            if args.silence_frames:
                extra = (t.to(args.device) for t in train.silence(args.silence_frames, args.min_opening_change))
                ref, audio, real, weight = (torch.cat([a, b]) for a, b in zip((ref, audio, real, weight), extra))
            with torch.no_grad():
                vector = model.features.audio_vector(audio)
            fake = generator(ref, vector)
            # discriminator step, generator frozen
            d_real, d_fake = discriminator(real), discriminator(fake.detach())
            d_loss = 0.5 * (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                            + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
            d_opt.zero_grad()
            accelerator.backward(d_loss)
            d_opt.step()
            # generator step, discriminator frozen
            for p in model.discriminator.parameters():
                p.requires_grad_(False)
            recon = (weight * (fake - real).abs()).mean() / weight.mean()
            g_fake = model.discriminator(fake)
            gan = F.binary_cross_entropy_with_logits(g_fake, torch.ones_like(g_fake))
            sync, cos = sync_loss(syncnet, fake[:n_speech], mel, means)
            g_loss = recon + args.gan_weight * gan + args.sync_weight * sync
            g_opt.zero_grad()
            accelerator.backward(g_loss)
            g_opt.step()
            for p in model.discriminator.parameters():
                p.requires_grad_(True)
            log.append({"stage": "B", "epoch": epoch, "step": step, "recon": recon.item(), "gan": gan.item(),
                        "sync": sync.item(), "sync_cos": cos.mean().item(), "d_loss": d_loss.item()})
            bar.set_postfix(recon=f"{recon.item():.3f}", sync=f"{cos.mean().item():.2f}", d=f"{d_loss.item():.2f}")
        row = {"epoch": epoch + 1, **{k: float(np.mean([r[k] for r in log if r.get("epoch") == epoch and r["stage"] == "B"]))
                                      for k in ("recon", "gan", "sync", "sync_cos", "d_loss")}}
        sync_buffers(accelerator, model.generator)
        sync_buffers(accelerator, model.discriminator)
        if held is not None:
            row.update(evaluate_stage_b(model, syncnet, held, args))
        epochs.append(row)
        tqdm.write(json.dumps(row))
        if args.out:
            save_on_main(accelerator, model, Path(args.out) / f"epoch{epoch + 1}", metadata={"epoch": epoch + 1},
                         with_discriminator=True)
    accelerator.free_memory()
    return epochs


@torch.no_grad()
def evaluate_stage_b(model: LipSyncNet, syncnet: SyncNet, held: Sampler, args, windows: int = 48) -> dict:
    """Held-out: mouth-weighted L1 (own audio) and sync cosine with own audio, and cross-audio sync.

    Cross-audio: the same held-out windows are generated from another held-out clip's audio; the
    sync discriminator scores the result against the DRIVING audio and against the face's own
    original audio (which the generator did not hear). A model that copies the mouth seen through
    the blur scores the original audio higher.
    """
    model.generator.eval()
    rng_state = held.rng.bit_generator.state
    ref, audio, real, weight, mel, means, base = held.stage_b(windows, args.min_opening_change)
    ref, audio, real, weight, mel, means = (t.to(args.device) for t in (ref, audio, real, weight, mel, means))
    held.rng.bit_generator.state = rng_state
    if model.config.audio_keypoints:  # as at inference: the keypoint map is the lip predictor's, from the audio heard
        ref = with_predicted_keypoints(model, ref, base, audio)
    fake = model.generator(ref, model.features.audio_vector(audio))
    recon = float((weight * (fake - real).abs()).mean() / weight.mean())
    _, cos_own = sync_loss(syncnet, fake, mel, means)
    perm = torch.roll(torch.arange(windows), 1)  # window i driven by the audio of window i-1 (another moment/clip)
    audio_x = audio.view(windows, 5, *audio.shape[1:])[perm].reshape(audio.shape)
    if model.config.audio_keypoints:
        ref = with_predicted_keypoints(model, ref, base, audio_x)
    fake_x = model.generator(ref, model.features.audio_vector(audio_x))
    _, cos_driving = sync_loss(syncnet, fake_x, mel[perm], means)
    _, cos_original = sync_loss(syncnet, fake_x, mel, means)
    _, cos_real = sync_loss(syncnet, real, mel, means)
    return {"held_recon": recon, "held_sync_cos_own": float(cos_own.mean()), "held_sync_cos_real": float(cos_real.mean()),
            "held_cross_sync_driving": float(cos_driving.mean()), "held_cross_sync_original": float(cos_original.mean())}


def with_predicted_keypoints(model: LipSyncNet, ref: torch.Tensor, base: np.ndarray, audio: torch.Tensor,
                             fps: float = 25.0) -> torch.Tensor:
    """``ref`` with its keypoint channel redrawn as at inference: each frame's base lip shape plus the lip
    predictor's deviation, predicted (and smoothed) within each window of 5 consecutive frames."""
    dev = np.concatenate([model.predict_lip_deviation(audio[s:s + 5], fps) for s in range(0, len(audio), 5)])
    out = ref.clone()
    out[:, 4] = torch.from_numpy(np.stack([keypoint_map(p, CROP) for p in base + dev])).to(ref)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path, help="dataset folder from training.make_talking_dataset")
    ap.add_argument("--out", type=Path, default=Path("runs/lipsync"))
    ap.add_argument("--cache", type=Path, default=None, help="prepared-clip cache (default OUT/../cache_lipsync)")
    ap.add_argument("--holdout-source", nargs="+", default=["pcavs"])
    ap.add_argument("--syncnet", default=str(SYNCNET_WEIGHTS), help="the sync discriminator for the sync loss")
    ap.add_argument("--device", default=None,
                    help="cpu to force the CPU; by default Accelerate chooses (the GPU if any; see training.accel)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--batch", type=int, default=8, help="stage B: windows of 5 frames per step")
    ap.add_argument("--stage-a-steps", type=int, default=800)
    ap.add_argument("--stage-a-accuracy", type=float, default=0.5, help="stop stage A at this held-out retrieval accuracy")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--aux-weight", type=float, default=0.1, help="stage A: weight of the shared lip-keypoint head")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--steps-per-epoch", type=int, default=300)
    ap.add_argument("--gan-weight", type=float, default=0.01)
    ap.add_argument("--sync-weight", type=float, default=0.03)
    ap.add_argument("--min-opening-change", type=float, default=0.05,
                    help="reference mouth opening must differ from the target's by this much (of the eye-mouth distance)")
    ap.add_argument("--silence-frames", type=int, default=4,
                    help="stage B: closed-mouth frames paired with silence added to each step")
    ap.add_argument("--swap-grow", type=float, default=SWAP_GROW,
                    help="the reference's mouth area (taken from another frame): both lip hulls widened by this many d")
    ap.add_argument("--neutral-keypoints", action="store_true",
                    help="draw the clip's mean lip shape (at the frame's lip position) instead of the frame's keypoints")
    ap.add_argument("--audio-keypoints", action="store_true",
                    help="fit the lip predictor (ridge on the frozen audio vectors) and train the generator with the target "
                         "frame's true keypoints; at inference the map is the mean lip shape plus the predicted deviation")
    ap.add_argument("--max-clips", type=int, default=None)
    ap.add_argument("--resume", type=Path, default=None,
                    help="a checkpoint folder of an earlier run (e.g. OUT/epoch3): skip stage A, go on with stage B")
    args = ap.parse_args(argv)

    accelerator = make_accelerator(args.device)
    args.device = accelerator.device
    print = accelerator.print  # messages from the main process only
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(per_process_seed(args.seed, accelerator))
    t0 = time.time()
    with accelerator.main_process_first():  # the main process fills the clip cache, the others read it
        clips = load_clips(args.dataset, args.cache or args.out.parent / "cache_lipsync", args.max_clips)
    train_clips = [c for c in clips if c["source"] not in args.holdout_source]
    held_clips = [c for c in clips if c["source"] in args.holdout_source]
    if not train_clips:
        print("error: no training clip left after holding out " + ", ".join(args.holdout_source), file=sys.stderr)
        return 2
    print(f"training on {len(train_clips)} clips, holding out {len(held_clips)} ({args.holdout_source})")
    model = (LipSyncNet.from_pretrained(args.resume) if args.resume else LipSyncNet(LipSyncConfig())).to(args.device)
    if args.neutral_keypoints or args.audio_keypoints:
        model.config.neutral_keypoints = True
        model.mean_lip_shape = mean_lip_shape(train_clips)
    true_kp = args.audio_keypoints
    train = Sampler(train_clips, rng, model.config.neutral_keypoints, args.swap_grow, true_kp)
    held = (Sampler(held_clips, np.random.default_rng(args.seed + 1), model.config.neutral_keypoints, args.swap_grow, true_kp)
            if held_clips else None)
    syncnet = SyncNet.from_pretrained(args.syncnet).to(args.device).eval()
    log: list = []
    report = {"args": {k: str(v) for k, v in vars(args).items()},
              "train_clips": [c["name"] for c in train_clips], "holdout_clips": [c["name"] for c in held_clips]}
    if args.resume:
        report["stage_a"] = {"resumed_from": str(args.resume), **model.training_metadata}
    else:
        report["stage_a"] = train_stage_a(model, train, held, args, log, accelerator)
        save_on_main(accelerator, model, args.out / "stage_a", metadata={"stage": "A", **report["stage_a"]})
    if args.audio_keypoints:
        report["lip_predictor"] = fit_lip_predictor(model, train_clips)
        if held_clips:
            corr = opening_correlation(model, held_clips)
            report["lip_predictor"]["held_gap_corr_median"] = float(np.median(corr)) if corr else float("nan")
        tqdm.write(json.dumps(report["lip_predictor"]))
    report["stage_b"] = train_stage_b(model, syncnet, train, held, args, log, accelerator)
    report["seconds"] = round(time.time() - t0, 1)
    save_on_main(accelerator, model, args.out / "final", metadata={
        "stages": ["A", "B"], "epochs": args.epochs, "holdout_sources": args.holdout_source,
        "train_sources": sorted({c["source"] for c in train_clips}), "train_clips": [c["name"] for c in train_clips]})
    if not accelerator.is_main_process:
        return 0
    report["log"] = log
    report = {**provenance("training.train_lipsync", weights={"trained": args.out / "final"}), **report}  # command, commit, weights
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    plot_report(report, args.out / "report.png")
    print(f"done in {report['seconds']} s -> {args.out}")
    return 0


def plot_report(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.5))
    a = [r for r in report["log"] if r["stage"] == "A"]
    ax = fig.add_subplot(1, 3, 1)
    if a or "lip_predictor" not in report:
        ax.plot([r["loss"] for r in a], lw=0.5, label="loss")
        held = [(r["step"], r["held_acc"]) for r in a if "held_acc" in r]
        if held:
            ax.plot(*zip(*held), "o-", label="held-out retrieval acc")
        ax.set_title("stage A: feature agreement")
    else:  # a resumed run: show the lip predictor's penalty choice instead
        cv = report["lip_predictor"]["leave_one_source_out"]
        if isinstance(cv, dict):  # reports before the smoothing choice: {penalty: scores}
            cv = [{"penalty": float(k), "smooth_s": 0.0, **v} for k, v in cv.items()]
        for smooth in sorted({r["smooth_s"] for r in cv}):
            pts = sorted((r["penalty"], r["gap_corr_median"]) for r in cv if r["smooth_s"] == smooth)
            ax.semilogx(*zip(*pts), "o-", label=f"smoothing {smooth:g} s")
        chosen = report["lip_predictor"]
        ax.set_title(f"lip predictor, left-out gap corr. (chosen {chosen['ridge_penalty']:g}, "
                     f"{chosen.get('smooth_s', 0.0):g} s)", fontsize=9)
        ax.set_xlabel("penalty")
    ax.legend(fontsize=7)
    ep = report["stage_b"]
    ax = fig.add_subplot(1, 3, 2)
    for k in ("recon", "held_recon"):
        if ep and k in ep[0]:
            ax.plot([e["epoch"] for e in ep], [e[k] for e in ep], "o-", label=k)
    ax.set_title("stage B: reconstruction (L1)")
    ax.set_xlabel("epoch")
    ax.legend(fontsize=7)
    ax = fig.add_subplot(1, 3, 3)
    for k in ("sync_cos", "held_sync_cos_own", "held_sync_cos_real", "held_cross_sync_driving", "held_cross_sync_original"):
        if ep and k in ep[0]:
            ax.plot([e["epoch"] for e in ep], [e[k] for e in ep], "o-", label=k)
    ax.set_title("stage B: sync cosine (bundled discriminator)")
    ax.set_xlabel("epoch")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    sys.exit(main())
