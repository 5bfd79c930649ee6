"""Train the audio feature network of spec 03 (music-driven face) as an MFCC autoencoder, without labels.

    python -m training.train_audio_encoder [--media ../shared/media] --out runs/audio_encoder

1. Every track in ``MEDIA/music`` is decoded at 16 kHz mono and turned into MFCC points (13 coefficients,
   one per 100 ms; ``models.audio_encoder.mfcc_points``). Whole tracks are held out (``--holdout``:
   three calm and three intense ones by default, the set the music-face evaluation uses).
2. The per-coefficient bounds that map MFCC into [0, 1] are the 1st and 99th percentiles over the
   training tracks (``models.audio_encoder.calibrate_mfcc``): fixed for every input, so loudness
   differences between tracks survive.
3. The autoencoder (8 Conv2d+BN+ReLU blocks, 8 ConvTranspose2d+BN+ReLU blocks) is trained on random
   16-point segments of the training tracks to reconstruct its input (mean squared error), for ``--steps``
   iterations. The held-out tracks' reconstruction error is logged beside the trivial baseline that
   predicts the mean training MFCC frame everywhere.

   Reconstruction alone leaves the MEAN of a code vector free: measured, it followed nothing the spec
   claims (pooled correlation with loudness -0.17 over the training points, and the three calm held-out
   tracks got higher weights than the three intense ones). So a second term, also without labels, ties
   each time point's mean activation to the music's **activity** computed from the same audio: the onset
   strength (spectral flux of the log-mel spectrogram, librosa), averaged over the second around the
   point and mapped into [0, 1] by its corpus percentiles (``--activity-weight`` x mean squared error; 0 turns it
   off). Onset strength is the standard cue of arousal in music, and, read from a log spectrogram, it
   does not depend on how loud the file was mastered.
4. The weight bounds: each training point's encoder vector averaged over its elements (spec step 2); its
   5th and 95th percentiles over the corpus become weight 0 and 1 (``models.audio_encoder.calibrate_weights``).
   Both pairs of bounds are buffers of the model, saved in its model.safetensors.

Writes ``OUT/final`` (encoder only, the bundled form), ``OUT/report.json`` and ``OUT/report.png``. Runs on the
CPU, one GPU or several under ``accelerate launch`` (``training.accel``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from media.io import read_audio
from models.audio_encoder import (  # CALM, INTENSE: moved to models.audio_encoder, still importable here
    CALM,
    INTENSE,
    SAMPLE_RATE,
    AudioAutoencoder,
    AudioEncoderConfig,
    calibrate_mfcc,
    calibrate_weights,
    initial_parameters,
    map_to_weight,
    mfcc_points,
    point_vectors,
)
from models.provenance import provenance
from training.accel import (
    LossModule,
    make_accelerator,
    per_process_seed,
    save_on_main,
    sync_buffers,
)

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a", ".aac"}


ACTIVITY_SMOOTH_POINTS = 10  # activity is a rate: onset strength averaged over the second around each point


def activity(audio: np.ndarray, n_points: int, sr: int = SAMPLE_RATE) -> np.ndarray:
    """(n_points,) onset strength (spectral flux of the log-mel spectrogram, 10 ms hop) averaged over the
    second centred on each 100 ms time point: how much is happening, independent of the recording level.
    (Per 100 ms, onsets are spikes; the face should follow the music's energy, not flicker with each note.)"""
    import librosa
    from scipy.ndimage import uniform_filter1d

    hop = sr // 100
    onset = librosa.onset.onset_strength(y=np.asarray(audio, np.float32), sr=sr, hop_length=hop)
    onset = np.pad(onset, (0, max(0, 10 * n_points - len(onset))))[:10 * n_points]
    return uniform_filter1d(onset.reshape(n_points, 10).mean(axis=1), ACTIVITY_SMOOTH_POINTS, mode="nearest")


def load_tracks(folder: Path, max_tracks: int | None = None, holdout=()) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{stem: ((13, T) MFCC points, (T,) activity)} of every audio file in ``folder`` (with ``max_tracks``, only
    the first that many of the ``holdout`` tracks and of the others: smoke runs)."""
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    if max_tracks:
        paths = [p for p in paths if p.stem in holdout][:max_tracks] + [p for p in paths if p.stem not in holdout][:max_tracks]
    tracks = {}
    for path in tqdm(paths, desc="tracks", unit="track"):
        audio = read_audio(path, sr=SAMPLE_RATE)
        m = mfcc_points(audio, SAMPLE_RATE)
        if m.shape[1] >= 16:
            tracks[path.stem] = (m, activity(audio, m.shape[1]))
    return tracks


def random_segments(train: dict[str, tuple], n: int, model: AudioAutoencoder, rng: np.random.Generator,
                    bounds: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """n random 16-point segments (tracks drawn in proportion to their length) and their (n, 16) activity in [0, 1]."""
    config = model.config
    names = list(train)
    lengths = np.array([train[k][0].shape[1] - config.points + 1 for k in names], np.float64)
    picks = rng.choice(len(names), size=n, p=lengths / lengths.sum())
    segs, acts = [], []
    for i in picks:
        m, act = train[names[i]]
        s = int(rng.integers(0, m.shape[1] - config.points + 1))
        segs.append(model.input_for(m[:, s:s + config.points]))
        acts.append(scale_activity(act[s:s + config.points], bounds))
    return torch.from_numpy(np.concatenate(segs)), torch.from_numpy(np.stack(acts)).float()


def scale_activity(act: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    return np.clip((act - bounds[0]) / max(bounds[1] - bounds[0], 1e-9), 0.0, 1.0)


def held_track_weights(model: AudioAutoencoder, m: np.ndarray) -> np.ndarray:
    """The weight of every time point of a track's MFCC (what the pipeline computes, before interpolation)."""
    return map_to_weight(initial_parameters(point_vectors(model, m)), *model.weight_bounds())


def reconstruction(model: AudioAutoencoder, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(code (B, 512, 1, 16), reconstruction of x): the training forward pass."""
    code = model.encoder(x)
    return code, model.decoder(code)


@torch.no_grad()
def held_out_errors(model: AudioAutoencoder, held: dict[str, tuple], mean_frame: np.ndarray) -> dict:
    """Reconstruction MSE over all non-overlapping segments of the held-out tracks, and the mean-frame baseline."""
    model.eval()
    x = torch.from_numpy(np.concatenate([model.input_for(m) for m, _ in held.values()])).to(model.mfcc_low.device)
    rec = F.mse_loss(model(x), x).item()
    base = torch.from_numpy(mean_frame).float().to(x.device)
    baseline = F.mse_loss(base.expand_as(x), x).item()
    model.train()
    return {"held_recon_mse": rec, "held_mean_frame_mse": baseline}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--media", type=Path, default=Path(os.environ.get("AVSTUDIO_MEDIA", "../shared/media")))
    ap.add_argument("--holdout", nargs="*", default=CALM + INTENSE, help="track stems held out of training")
    ap.add_argument("--out", type=Path, default=Path("runs/audio_encoder"))
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--activity-weight", type=float, default=1.0,
                    help="weight of the self-supervised term tying each vector's mean to the music's activity (0: off)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None,
                    help="cpu to force the CPU; by default Accelerate chooses (the GPU if any; see training.accel)")
    ap.add_argument("--max-tracks", type=int, default=None, help="use only the first N tracks (smoke tests)")
    ap.add_argument("--calibrate-only", type=Path, default=None,
                    help="a trained encoder folder: only recompute its weight bounds on the training tracks, in place")
    args = ap.parse_args(argv)
    accelerator = make_accelerator(args.device)
    args.device = str(accelerator.device)
    print = accelerator.print  # messages from the main process only

    folder = args.media / "music"
    if not folder.is_dir():
        print(f"error: no music folder at {folder} (set AVSTUDIO_MEDIA or --media)", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(per_process_seed(args.seed, accelerator))
    t0 = time.time()
    tracks = load_tracks(folder, args.max_tracks, args.holdout)
    held = {k: v for k, v in tracks.items() if k in args.holdout}
    train = {k: v for k, v in tracks.items() if k not in args.holdout}
    if not train or not held:
        print("error: need both training and held-out tracks", file=sys.stderr)
        return 2
    print(f"training on {len(train)} tracks ({sum(m.shape[1] for m, _ in train.values()) / 600:.1f} min), "
          f"holding out {len(held)}")
    if args.calibrate_only:
        model = AudioAutoencoder.from_pretrained(args.calibrate_only)
        meta = dict(model.training_metadata)
        calibrate_weights(model, [m for m, _ in train.values()])
        meta["weight_bounds"] = list(model.weight_bounds())
        meta["held_mean_weight"] = {k: float(held_track_weights(model, m).mean()) for k, (m, _) in held.items()}
        save_on_main(accelerator, model, args.calibrate_only, metadata=meta)
        print(json.dumps({k: meta[k] for k in ("weight_bounds", "held_mean_weight")}, indent=1))
        return 0

    config = AudioEncoderConfig()
    model = AudioAutoencoder(config)
    calibrate_mfcc(model, [m for m, _ in train.values()])
    model.to(accelerator.device)
    all_train = np.concatenate([model.input_for(m) for m, _ in train.values()])
    pooled_activity = np.concatenate([a for _, a in train.values()])
    act_bounds = tuple(float(v) for v in np.percentile(pooled_activity, [5, 95]))
    mean_frame = all_train.mean(axis=(0, 3), keepdims=True)[0]  # (3, 16, 1): the mean MFCC frame, every point
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    forward, opt = accelerator.prepare(LossModule(model, reconstruction), opt)
    log = []
    bar = tqdm(range(args.steps), desc="autoencoder", unit="step", disable=not accelerator.is_main_process)
    for step in bar:
        x, act = random_segments(train, args.batch, model, rng, act_bounds)
        x, act = x.to(accelerator.device), act.to(accelerator.device)
        code, out = forward(x)  # code (B, 512, 1, 16)
        recon = F.mse_loss(out, x)
        tie = F.mse_loss(code.mean(dim=1).squeeze(1), act)
        loss = recon + args.activity_weight * tie
        opt.zero_grad()
        accelerator.backward(loss)
        opt.step()
        sched.step()
        entry = {"step": step, "train_mse": recon.item(), "activity_mse": tie.item()}
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            entry.update(held_out_errors(model, held, mean_frame))
            bar.set_postfix(train=f"{recon.item():.4f}", act=f"{tie.item():.4f}", held=f"{entry['held_recon_mse']:.4f}",
                            baseline=f"{entry['held_mean_frame_mse']:.4f}")
        log.append(entry)

    sync_buffers(accelerator, model)  # the main process's BatchNorm statistics everywhere
    model.eval().cpu()
    pooled = calibrate_weights(model, [m for m, _ in train.values()])
    final = log[-1]
    held_weights, held_corr = {}, {}
    for k, (m, act) in held.items():
        w = held_track_weights(model, m)
        held_weights[k] = float(w.mean())
        held_corr[k] = float(np.corrcoef(w, act)[0, 1]) if np.std(w) > 0 else float("nan")
    train_corr = float(np.corrcoef(pooled, pooled_activity)[0, 1])
    report = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "train_tracks": sorted(train), "holdout_tracks": sorted(held),
        "train_minutes": sum(m.shape[1] for m, _ in train.values()) / 600,
        "activity_bounds": list(act_bounds),
        "train_weight_activity_corr": train_corr, "held_weight_activity_corr": held_corr,
        "held_recon_mse": final["held_recon_mse"], "held_mean_frame_mse": final["held_mean_frame_mse"],
        "weight_bounds": list(model.weight_bounds()),
        "held_mean_weight": held_weights,
        "seconds": round(time.time() - t0, 1),
        "log": log,
    }
    save_on_main(accelerator, model, args.out / "final", metadata={k: report[k] for k in (
        "train_tracks", "holdout_tracks", "held_recon_mse", "held_mean_frame_mse", "weight_bounds",
        "train_weight_activity_corr", "held_mean_weight")})
    if not accelerator.is_main_process:
        return 0
    report = {**provenance("training.train_audio_encoder", weights={"trained": args.out / "final"}), **report}  # command, commit, weights
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    plot_report(report, args.out / "report.png")
    print(json.dumps({k: report[k] for k in ("held_recon_mse", "held_mean_frame_mse", "weight_bounds", "held_mean_weight",
                                             "train_weight_activity_corr", "held_weight_activity_corr", "seconds")}, indent=1))
    return 0


def plot_report(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [e["step"] for e in report["log"]]
    a.plot(steps, [e["train_mse"] for e in report["log"]], lw=0.5, alpha=0.6, label="train")
    ev = [e for e in report["log"] if "held_recon_mse" in e]
    a.plot([e["step"] for e in ev], [e["held_recon_mse"] for e in ev], "o-", label="held-out tracks")
    a.axhline(ev[-1]["held_mean_frame_mse"], color="k", ls="--", label="baseline: mean MFCC frame")
    a.set_yscale("log")
    a.set_xlabel("step")
    a.set_ylabel("reconstruction MSE")
    a.legend()
    names = list(report["held_mean_weight"])
    b.barh(range(len(names)), [report["held_mean_weight"][k] for k in names])
    b.set_yticks(range(len(names)), [n[:28] for n in names], fontsize=7)
    b.set_xlabel("mean weight (held-out track)")
    b.set_xlim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
