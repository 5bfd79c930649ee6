"""Visual events of a video (Soundtrack from a hum): cuts, visual beats and energy for music to follow.

The video is streamed once by :func:`media.io.iter_video_frames`, downscaled so its longer side is ``size``
(160) px; every frame is analysed, or every ``step``-th one above ``MAX_ANALYSIS_FPS`` (30) frames/s. Per
analysis frame:

1. **Motion**: the mean absolute difference of the grey (BT.601 luma) frame from the previous analysis frame,
   in grey levels (0..255) per 1/30 s (scaled by the frame interval, so 10, 25 and 60 fps videos compare).
   Where the difference is not motion the previous frame's value is held: at a detected cut (a change of
   scene), at the first frame, and at repeated frames (frame-rate conversions repeat every 2nd..6th frame; a
   frame changing by less than ``DUPLICATE_RATIO`` (0.2) of the motion both before and after it), which
   would otherwise make a regular flicker of false beats.
2. **Energy**: motion smoothed over ``ENERGY_SMOOTH_S`` (0.5 s) and divided by the FIXED scale
   ``ENERGY_FULL_SCALE`` (12 grey levels per 1/30 s: a hand-held walk or a sports shot; a talking head is
   about 1..2, a static shot with compression noise under 0.5), clipped to 0..1. No per-video min/max, so
   a calm video stays low and a busy one high.
3. **Brightness**: mean luma / 255. **Colourfulness**: Hasler & Suesstrunk (2003),
   ``sqrt(sd_rg^2 + sd_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2)`` with ``rg = R - G``, ``yb = (R + G)/2 - B``,
   divided by 109 (their "extremely colourful") and clipped to 0..1.
4. **Cuts**, in the style of PySceneDetect's ContentDetector / AdaptiveDetector: the content score of a frame
   is the mean absolute HSV difference from the previous frame (mean of the H, S and V channel differences,
   OpenCV's 0..179 / 0..255 scales, as ContentDetector). A frame starts a new shot when its score is at least
   ``CUT_MIN_SCORE`` (15) and ``CUT_RATIO`` (3) times the mean score of the ``CUT_WINDOW`` (2) frames on
   each side (AdaptiveDetector's rule: steady fast motion or a pan raises the neighbours too, so it is not a
   cut), and at least ``MIN_SHOT_S`` (0.5 s) after the start and the previous cut. PySceneDetect itself is
   not used: it requires ``opencv-python``, which clashes with the ``opencv-contrib-python`` that mediapipe
   needs in this environment.
5. **Visual beats**, in the spirit of Davis & Agrawala, "Visual Rhythm and Beat" (2018): the frame is split
   into a ``GRID`` x ``GRID`` grid; the impact envelope is the mean over the cells of the positive change of
   the cell's motion (a spectral flux of motion, so motion starting in one place counts even while it stops
   in another). Beats are its local maxima above an adaptive threshold (the mean plus ``BEAT_K`` (1.5)
   standard deviations over ``BEAT_WINDOW_S`` (2 s) centred on the frame, at least ``BEAT_MIN_FLUX`` (0.3)
   grey levels and ``BEAT_REL`` (0.2) of the smoothed motion: a steady pan of a textured scene flickers by
   0.05..0.13 of its motion, real impacts jump by 0.2..1.5), at least ``BEAT_MIN_GAP_S`` (0.25 s) apart (the strongest win), and not within
   ``BEAT_CUT_GAP_S`` (0.25 s) of a cut. ``beat_strength`` is the peak divided by the largest peak of the
   video, or by ``BEAT_FULL_SCALE`` if that is larger (so the beats of a calm video stay weak).

Speed (2-core development machine, shared with other jobs, load 3..4): the 6 s 1280x720 30 fps
``liveportrait_s32_noaudio.mp4`` takes 0.75 s and a 30 s 1280x720 30 fps H.264 video (it, looped) 3.0..3.5 s
wall, 3.6..3.9 s CPU; decoding and downscaling in PyAV are ~90 % of it, the analysis ~0.2 ms per frame.

A file without a video stream or without decodable frames raises :class:`NoFramesError`, a
:class:`media.io.MediaError`; unreadable files raise :class:`media.io.MediaError` from :mod:`media.io`.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import maximum_filter1d, uniform_filter1d

from media.io import MediaError, fitted_size, iter_video_frames, probe

__all__ = ["NoFramesError", "VideoEvents", "video_events"]

MAX_ANALYSIS_FPS = 30.0
ENERGY_SMOOTH_S = 0.5
ENERGY_FULL_SCALE = 12.0  # grey levels per 1/30 s
COLOURFUL_SCALE = 109.0  # Hasler & Suesstrunk's "extremely colourful"
CUT_MIN_SCORE = 15.0
CUT_RATIO = 3.0
CUT_WINDOW = 2  # frames on each side
MIN_SHOT_S = 0.5
GRID = 4
BEAT_WINDOW_S = 2.0
BEAT_K = 1.5
BEAT_MIN_FLUX = 0.3  # grey levels per 1/30 s
BEAT_REL = 0.2  # and at least this fraction of the smoothed motion: a steady pan's flicker is not a beat
BEAT_MIN_GAP_S = 0.25
BEAT_CUT_GAP_S = 0.25
BEAT_FULL_SCALE = 4.0  # grey levels per 1/30 s
DUPLICATE_RATIO = 0.2  # a frame that changes less than this fraction of the motion around it is a repeat


class NoFramesError(MediaError):
    """The file has no video stream, or none of its video frames can be decoded."""


@dataclass
class VideoEvents:
    duration_s: float  # first frame to the end of the last decoded frame (last time + 1/fps)
    fps: float  # the stream's frame rate (the analysis rate is fps / step)
    times: np.ndarray = field(repr=False)  # analysis frame times (s), float64
    motion: np.ndarray = field(repr=False)  # grey levels per 1/30 s, >= 0 (see the module docstring)
    energy: np.ndarray = field(repr=False)  # 0..1, smoothed motion / ENERGY_FULL_SCALE
    brightness: np.ndarray = field(repr=False)  # mean luma 0..1
    colourfulness: np.ndarray = field(repr=False)  # Hasler-Suesstrunk / 109, 0..1
    cuts: np.ndarray = field(repr=False)  # times (s) of the first frame of each new shot
    beats: np.ndarray = field(repr=False)  # visual beat times (s)
    beat_strength: np.ndarray = field(repr=False)  # 0..1 per beat

    def events(self) -> np.ndarray:
        """(k, 2) float64 array of (time_s, strength): cuts (strength 1.0) and visual beats, sorted by time."""
        ev = np.concatenate([np.column_stack([self.cuts, np.ones(len(self.cuts))]),
                             np.column_stack([self.beats, self.beat_strength])]).astype(np.float64)
        return ev[np.argsort(ev[:, 0], kind="stable")].reshape(-1, 2)

    def summary(self) -> dict:
        """Plain JSON-able numbers: duration, frame rates, counts and means."""
        span = max(self.duration_s, 1e-9)
        return {
            "duration_s": round(float(self.duration_s), 3),
            "fps": round(float(self.fps), 3),
            "analysis_frames": len(self.times),
            "cuts": len(self.cuts),
            "beats": len(self.beats),
            "beats_per_min": round(60.0 * len(self.beats) / span, 1),
            "mean_energy": round(float(self.energy.mean()), 3) if len(self.energy) else 0.0,
            "max_energy": round(float(self.energy.max()), 3) if len(self.energy) else 0.0,
            "mean_brightness": round(float(self.brightness.mean()), 3) if len(self.brightness) else 0.0,
            "mean_colourfulness": round(float(self.colourfulness.mean()), 3) if len(self.colourfulness) else 0.0,
        }


def _colourfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk colourfulness of an RGB uint8 frame (0 for grey, ~109 'extremely colourful')."""
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    (m_rg,), (s_rg,) = cv2.meanStdDev(rg)
    (m_yb,), (s_yb,) = cv2.meanStdDev(yb)
    return float(math.hypot(s_rg[0], s_yb[0]) + 0.3 * math.hypot(m_rg[0], m_yb[0]))


def _motion_around(diffs: np.ndarray) -> np.ndarray:
    """Per frame: the smaller of the largest difference of the 3 frames before and of the 3 after.

    High on both sides for a repeated frame in the middle of motion (frame-rate conversion, 1 or 2 repeats in
    a row); low where motion really stops or starts, so a stop is not mistaken for a repeat."""
    if len(diffs) < 2:
        return np.zeros(len(diffs))
    windows = sliding_window_view(np.pad(diffs, 3, mode="reflect" if len(diffs) > 3 else "edge"), 7)
    return np.minimum(windows[:, :3].max(axis=1), windows[:, 4:].max(axis=1))


def _detect_cuts(score: np.ndarray, frame_s: float) -> np.ndarray:
    """Indices of frames that start a new shot (AdaptiveDetector-style rule, see the module docstring)."""
    n = len(score)
    min_gap = max(1, round(MIN_SHOT_S / frame_s))
    cuts: list[int] = []
    for i in range(1, n):
        if score[i] < CUT_MIN_SCORE or i < min_gap or (cuts and i - cuts[-1] < min_gap):
            continue
        lo, hi = max(1, i - CUT_WINDOW), min(n, i + CUT_WINDOW + 1)
        neighbours = np.concatenate([score[lo:i], score[i + 1:hi]])
        average = float(neighbours.mean()) if len(neighbours) else 0.0
        if score[i] >= CUT_RATIO * max(average, 1e-6) and score[i] >= score[lo:hi].max():
            cuts.append(i)
    return np.array(cuts, dtype=int)


def _detect_beats(flux: np.ndarray, level: np.ndarray, frame_s: float,
                  cut_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices, strengths) of visual beats: adaptive-threshold peaks of the motion flux ``flux``, where the
    smoothed motion is ``level``."""
    if len(flux) < 3:
        return np.zeros(0, int), np.zeros(0)
    win = max(3, round(BEAT_WINDOW_S / frame_s) | 1)
    mean = uniform_filter1d(flux, win, mode="nearest")
    std = np.sqrt(np.maximum(uniform_filter1d(flux ** 2, win, mode="nearest") - mean ** 2, 0.0))
    is_max = flux >= maximum_filter1d(flux, 3, mode="nearest")
    above = (flux > mean + BEAT_K * std) & (flux >= np.maximum(BEAT_MIN_FLUX, BEAT_REL * level))
    cand = np.flatnonzero(is_max & above)
    near_cut = max(1, round(BEAT_CUT_GAP_S / frame_s))
    if len(cut_idx):
        dist = np.abs(cand[:, None] - cut_idx[None, :]).min(axis=1)
        cand = cand[dist > near_cut]
    gap = max(1, round(BEAT_MIN_GAP_S / frame_s))
    kept: list[int] = []
    for i in cand[np.argsort(-flux[cand], kind="stable")]:  # strongest first
        if all(abs(i - k) >= gap for k in kept):
            kept.append(int(i))
    idx = np.array(sorted(kept), dtype=int)
    peak = flux[idx]
    strength = np.clip(peak / max(float(peak.max(initial=0.0)), BEAT_FULL_SCALE), 0.0, 1.0)
    return idx, strength


def video_events(path: str | os.PathLike, *, max_seconds: float | None = None, size: int = 160) -> VideoEvents:
    """Cuts, visual beats, energy, brightness and colourfulness of the video ``path`` (see the module docstring).

    Decodes at most ``max_seconds`` seconds (None: all) with frames downscaled so the longer side is ``size``
    px (smaller videos are not upscaled).
    """
    info = probe(path)
    name = Path(path).name or str(path)
    if not info.has_video:
        raise NoFramesError(f"'{name}' has no video frames (no video stream)")
    fps = info.fps if info.fps > 0 else MAX_ANALYSIS_FPS
    step = max(1, math.ceil(fps / MAX_ANALYSIS_FPS - 1e-6))
    frame_s = step / fps  # nominal analysis interval
    per_30 = 1.0 / (30.0 * frame_s)  # frame difference -> grey levels per 1/30 s
    times, grey_diff, cells, hsv_diff, bright, colour = [], [], [], [], [], []
    prev_grey = prev_hsv = None
    last_time = None
    frames = iter_video_frames(path, 0.0, max_seconds, size=fitted_size(info.width, info.height, size))
    for index, (_, t, rgb) in enumerate(frames):
        last_time = t
        if index % step:
            continue
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
        if prev_grey is None or prev_grey.shape != grey.shape:
            diff = np.zeros_like(grey)
            hsv_diff.append(0.0)
        else:
            diff = cv2.absdiff(grey, prev_grey)
            hsv_diff.append(float(np.mean(cv2.mean(cv2.absdiff(hsv, prev_hsv))[:3])))
        grid = cv2.resize(diff.astype(np.float32), (GRID, GRID), interpolation=cv2.INTER_AREA)
        times.append(t)
        grey_diff.append(cv2.mean(diff)[0])
        cells.append(grid.ravel())
        bright.append(cv2.mean(grey)[0] / 255.0)
        colour.append(_colourfulness(rgb))
        prev_grey, prev_hsv = grey, hsv
    if last_time is None:
        raise NoFramesError(f"'{name}' has no video frames (none could be decoded)")

    cut_idx = _detect_cuts(np.array(hsv_diff), frame_s)
    # Hold the motion over frames whose difference is not motion: the first frame, cuts, and repeated frames
    # (frame-rate conversions repeat frames, e.g. every 6th frame of 25 fps shown at 30 fps)
    diffs = np.array(grey_diff)
    if len(diffs) > 1:
        diffs[0] = diffs[1]  # frame 0 has no previous frame
    hold = diffs < DUPLICATE_RATIO * _motion_around(diffs)
    hold[0], hold[cut_idx] = True, True
    source = np.maximum.accumulate(np.where(hold, 0, np.arange(len(hold))))
    if (~hold).any():  # leading held frames take the first real value
        source[: np.argmin(hold)] = np.argmin(hold)
    motion = diffs[source] * per_30
    cell_motion = np.array(cells)[source] * per_30
    smooth = uniform_filter1d(motion, max(1, round(ENERGY_SMOOTH_S / frame_s)), mode="nearest")
    energy = np.clip(smooth / ENERGY_FULL_SCALE, 0.0, 1.0)
    flux = np.zeros(len(motion))
    flux[1:] = np.maximum(np.diff(cell_motion, axis=0), 0.0).mean(axis=1)
    beat_idx, strength = _detect_beats(flux, smooth, frame_s, cut_idx)
    t_arr = np.array(times, dtype=np.float64)
    return VideoEvents(
        duration_s=float(last_time + 1.0 / fps), fps=float(fps), times=t_arr, motion=motion, energy=energy,
        brightness=np.array(bright), colourfulness=np.clip(np.array(colour) / COLOURFUL_SCALE, 0.0, 1.0),
        cuts=t_arr[cut_idx], beats=t_arr[beat_idx], beat_strength=strength)
