"""The numbers of the lip-sync network that are fitted, not trained: the lip predictor (ridge regression of
the lip keypoints on the frozen audio vectors), its gain and smoothing, and the mean lip shape drawn for
photos. They are buffers of :class:`models.lipsync.LipSyncNet` (saved in model.safetensors);
``training/train_lipsync.py`` calls these functions, and anyone can refit a model with them.

A **clip** here is a dict of one talking-face clip's arrays (:func:`lip_clip` makes one from arrays,
:func:`track_lip_clip` from a video file; the training's prepared clips carry the same keys):

* ``name``, ``source``: the clip and the source it comes from (fits leave one source out at a time);
* ``fps``; ``found`` (n,) bool, a face in the frame; ``opening`` (n,) mouth opening (NaN without a face);
* ``keypoints`` (n, 40, 2): the lip keypoints in lower-face crop pixels (``media.face.crop_landmarks``);
* ``kp_mean`` (40, 2): their mean over the frames with a face;
* ``mfcc`` (13, T): the clip's normalised MFCC (:func:`models.lipsync.normalize_mfcc`).
"""
from __future__ import annotations

import numpy as np
import torch

from models.lipsync import (
    CROP,
    D_PIXELS,
    LIP_UNIT,
    LipSyncNet,
    inner_gap,
    mfcc_windows,
    normalize_mfcc,
    silence_windows,
    smooth_frames,
)

RIDGE_GRID = (10.0, 100.0, 1000.0, 10000.0)
SMOOTH_GRID = (0.0, 0.04, 0.08, 0.12, 0.16)  # s: Gaussian smoothing of the predictions over a clip's frames


# --------------------------------------------------------------------------------------------
# clips
# --------------------------------------------------------------------------------------------
def lip_clip(name: str, source: str, keypoints: np.ndarray, found: np.ndarray, opening: np.ndarray, fps: float,
             audio: np.ndarray) -> dict:
    """A clip for the fits (see the module docstring) from its arrays; ``audio``: float32 mono 16 kHz whose
    sample 0 is the first video frame."""
    from media.features import SAMPLE_RATE, mfcc

    found = np.asarray(found, bool)
    return {"name": name, "source": source, "fps": float(fps), "found": found, "keypoints": keypoints,
            "opening": np.asarray(opening, np.float32), "mfcc": normalize_mfcc(mfcc(audio, SAMPLE_RATE)),
            "kp_mean": np.nanmean(keypoints[found], axis=0)}


def track_lip_clip(video_path, audio=None, name: str | None = None, source: str = "") -> dict:
    """A clip for the fits from a video file: its largest face tracked, its lip keypoints in crop pixels, and
    its audio (``audio``: None for the video's own track, or a path to a side-car file)."""
    from pathlib import Path

    from media.face import LIPS, crop_landmarks, track_video
    from media.features import SAMPLE_RATE
    from media.io import read_audio

    wave = read_audio(audio or video_path, sr=SAMPLE_RATE)
    track, fps = track_video(video_path)
    keypoints = crop_landmarks(track, LIPS, "lower", CROP) if track.found.any() \
        else np.full((len(track), len(LIPS), 2), np.nan, np.float32)
    return lip_clip(name or Path(video_path).stem, source, keypoints, track.found, track.mouth_opening(), fps, wave)


def mfcc_window(clip: dict, frames: np.ndarray) -> np.ndarray:
    """(len(frames), 13, 16) normalised MFCC centred on each video frame of ``clip``."""
    return mfcc_windows(clip["mfcc"], frames, clip["fps"])


def lip_deviation(clip: dict, frames: np.ndarray) -> np.ndarray:
    """(len(frames), 40, 2) lip keypoints minus the clip's mean keypoints, in units of LIP_UNIT d (0 where missing)."""
    dev = (clip["keypoints"][frames] - clip["kp_mean"]) / (LIP_UNIT * D_PIXELS)
    return np.nan_to_num(dev).astype(np.float32)


# --------------------------------------------------------------------------------------------
# the fits
# --------------------------------------------------------------------------------------------
def mean_lip_shape(clips: list[dict]) -> np.ndarray:
    """(40, 2) crop pixels: the average over clips of each clip's mean lip keypoints (a photo's neutral shape;
    set it with ``model.mean_lip_shape = ...``), rounded to 0.001 pixel as every fit so far was."""
    return np.round(np.mean([c["kp_mean"] for c in clips], axis=0), 3)


@torch.no_grad()
def lip_rows(model: LipSyncNet, clip: dict, silence_share: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Frozen audio vectors (n, feat_dim) and lip deviations (n, 80) of a clip's frames with a face, plus
    ``silence_share`` x n rows of silence whose target is the clip's closed mouth (its least-open tenth)."""
    frames = np.flatnonzero(clip["found"])
    device = model.lip_gain.device
    x = model.features.audio_vector(torch.from_numpy(mfcc_window(clip, frames)).to(device)).cpu().numpy()
    y = lip_deviation(clip, frames).reshape(len(frames), -1)
    opening = clip["opening"][frames]
    closed = y[np.nan_to_num(opening, nan=np.inf) <= np.nanpercentile(opening, 10)].mean(0)
    n_sil = max(5, round(silence_share * len(frames)))
    xs = model.features.audio_vector(torch.from_numpy(silence_windows(1, model.config.mfcc_frames)).to(device)).cpu().numpy()
    return np.concatenate([x, np.repeat(xs, n_sil, 0)]), np.concatenate([y, np.repeat(closed[None], n_sil, 0)])


def ridge(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression y ~ x W + b (the bias not penalised); returns (W (d, k), b (k,))."""
    mx, my = x.mean(0), y.mean(0)
    xc = x - mx
    w = np.linalg.solve(xc.T @ xc + lam * np.eye(x.shape[1]), xc.T @ (y - my))
    return w, my - mx @ w


def fit_lip_predictor(model: LipSyncNet, clips: list[dict]) -> dict:
    """Fit the lip head on the frozen audio vectors by ridge regression, choosing the penalty and the smoothing
    of the predictions over frames by leaving one training source (one clip, with a single source) out at a
    time (median per-clip correlation of the predicted and the measured inner-lip gap), and set the model's
    ``lip_gain`` to the median ratio of real to predicted gap spread on the left-out predictions (a regression
    towards the mean moves the mouth less than people do) and its ``lip_smooth_s``; turns ``audio_keypoints``
    on. Returns the fit's report."""
    from tqdm import tqdm

    rows = {c["name"]: lip_rows(model, c) for c in tqdm(clips, desc="lip predictor: audio vectors", unit="clip")}
    n_face = {c["name"]: int(c["found"].sum()) for c in clips}
    group = {c["name"]: c["source"] for c in clips}
    if len(set(group.values())) < 2:  # one source: leave one clip out at a time instead
        group = {c["name"]: c["name"] for c in clips}
    if len(set(group.values())) < 2:
        raise ValueError("the lip predictor needs at least two training clips")
    cv = {}
    for lam in RIDGE_GRID:
        preds = {}  # clip -> its left-out predictions, frames with a face
        for src in sorted(set(group.values())):
            fit = [c["name"] for c in clips if group[c["name"]] != src]
            w, b = ridge(np.concatenate([rows[k][0] for k in fit]), np.concatenate([rows[k][1] for k in fit]), lam)
            for c in clips:
                if group[c["name"]] == src:
                    preds[c["name"]] = rows[c["name"]][0][:n_face[c["name"]]] @ w + b
        for smooth in SMOOTH_GRID:
            corr, ratio = [], []
            for c in clips:
                p = inner_gap(smooth_frames(preds[c["name"]], smooth * c["fps"]))
                t = inner_gap(rows[c["name"]][1][:n_face[c["name"]]])
                if p.std() > 0 and t.std() > 0:
                    corr.append(float(np.corrcoef(p, t)[0, 1]))
                    ratio.append(float(t.std() / p.std()))
            cv[(lam, smooth)] = {"gap_corr_median": float(np.median(corr)), "gain": float(np.median(ratio))}
    lam, smooth = max(cv, key=lambda k: cv[k]["gap_corr_median"])
    w, b = ridge(np.concatenate([r[0] for r in rows.values()]), np.concatenate([r[1] for r in rows.values()]), lam)
    head = model.features.lip_head
    head.weight.data = torch.from_numpy(w.T.astype(np.float32)).to(head.weight)
    head.bias.data = torch.from_numpy(b.astype(np.float32)).to(head.bias)
    model.lip_gain.fill_(round(cv[(lam, smooth)]["gain"], 4))
    model.lip_smooth_s.fill_(smooth)
    model.config.audio_keypoints = True
    silence = float(inner_gap(rows[clips[0]["name"]][0][-1:] @ w + b)[0]) * LIP_UNIT
    return {"ridge_penalty": lam, "smooth_s": smooth,
            "leave_one_source_out": [{"penalty": k[0], "smooth_s": k[1], **v} for k, v in cv.items()],
            "lip_gain": float(model.lip_gain), "silence_gap_change_d": silence}


@torch.no_grad()
def opening_correlation(model: LipSyncNet, clips: list[dict]) -> list[float]:
    """Per clip: correlation between the mouth opening the audio vector predicts (through the lip head) and
    the opening the face mesh measured, over every frame with a face. The audio-to-mouth signal, unheld by
    identity: a vector that knows nothing of the mouth scores about 0."""
    model.features.eval()
    out = []
    for clip in clips:
        frames = np.flatnonzero(clip["found"])
        if len(frames) < 10:
            continue
        audio = torch.from_numpy(mfcc_window(clip, frames)).to(model.lip_gain.device)
        pred = model.features.predict_lips(model.features.audio_vector(audio))
        pred = pred.cpu().numpy()
        p, t = inner_gap(pred), inner_gap(lip_deviation(clip, frames))
        if p.std() > 0 and t.std() > 0:
            out.append(float(np.corrcoef(p, t)[0, 1]))
    return out
