"""The melody of a hum (spec 01, melody in): notes, key and tempo from a sung or hummed recording.

Pure functions of a mono signal and its sample rate, tolerant of the ways people hum:

1. **Pitch** by ``librosa.pyin`` (``FMIN`` 65 Hz .. ``FMAX`` 1047 Hz, 64 ms frames every ``HOP_S`` = 10 ms),
   with its voicing decision.
2. **Wandering tuning.** Hummers drift off the 440 Hz grid, slowly. The offset from the nearest semitone of
   every voiced frame is averaged (circular mean, so +0.49 and -0.49 semitones agree) over a sliding
   ``DRIFT_WINDOW_S`` = 1.5 s window, unwrapped along time (so a drift past half a semitone carries on
   instead of jumping to the neighbour), and removed before the pitch is rounded: a tune sung 35 cents sharp
   and drifting a further 40 cents still reads as the notes that were meant. ``tuning_cents`` reports the
   median offset.
3. **Notes.** The corrected pitch is rounded to semitones and smoothed by a running median over
   ``SMOOTH_FRAMES`` frames (vibrato and scoops do not split a note). A note is a run of voiced frames on
   one semitone lasting at least ``MIN_NOTE_S`` (60 ms); shorter runs join the neighbour they sit in.
   Repeated notes are split where the level dips by ``REARTICULATION_DB`` between them.
4. **Key** by the Krumhansl-Kessler profiles: the correlation of the notes' pitch-class durations with the
   24 rotated major and minor profiles; ``key_strength`` is the best correlation.
5. **Tempo** from the note onsets: ``librosa.feature.tempo`` over an onset envelope of the onsets
   (10 ms frames), with its default log-normal prior around 120 BPM.

A hum with too little pitched sound (under ``MIN_VOICED_S`` of voiced frames, or no note) raises
:class:`NoMelodyError`, a :class:`media.io.MediaError`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import librosa
import numpy as np
from scipy.ndimage import median_filter

from media.io import MediaError

__all__ = ["HOP_S", "Melody", "NoMelodyError", "Note", "estimate_key", "extract_melody"]

FMIN, FMAX = 65.0, 1047.0  # C2 .. C6: low hums to high singing
HOP_S = 0.01
FRAME_S = 0.064
DRIFT_WINDOW_S = 1.5
SMOOTH_FRAMES = 7
MIN_NOTE_S = 0.06
MIN_VOICED_S = 0.3
REARTICULATION_DB = 6.0
PITCH_CLASSES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
# Krumhansl & Kessler (1982) key profiles, C major and C minor
MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


class NoMelodyError(MediaError):
    """The recording holds no usable melody (no pitched sound)."""


@dataclass(frozen=True)
class Note:
    start_s: float
    end_s: float
    pitch: int  # MIDI note number after the tuning correction
    midi: float  # mean corrected pitch over the note, in MIDI units (fractional)


@dataclass
class Melody:
    notes: list[Note]
    key: str  # e.g. "C major", "A minor"
    key_strength: float  # correlation with the best key profile, -1..1
    tempo_bpm: float
    tuning_cents: float  # median offset of the hum from the 440 Hz grid that was corrected (may exceed 50)
    voiced_s: float  # seconds of pitched sound
    f0_hz: np.ndarray = field(repr=False)  # per HOP_S frame, NaN where unvoiced
    pitch_track: np.ndarray = field(repr=False)  # corrected, rounded pitch per frame, NaN where unvoiced


def _circular_offset(dev: np.ndarray, voiced: np.ndarray, window: int) -> np.ndarray:
    """Per frame: the circular mean of ``dev`` (semitone offsets in -0.5..0.5) over voiced frames within
    ``window`` frames; frames with no voiced neighbour take the global mean."""
    angle = 2 * np.pi * np.where(voiced, dev, 0.0)
    c, s = np.where(voiced, np.cos(angle), 0.0), np.where(voiced, np.sin(angle), 0.0)
    kernel = np.ones(window)
    c_sum, s_sum = np.convolve(c, kernel, "same"), np.convolve(s, kernel, "same")
    glob = np.arctan2(s.sum(), c.sum()) / (2 * np.pi)
    local = np.arctan2(s_sum, c_sum)
    local = np.where(np.hypot(c_sum, s_sum) > 1e-9, local, 2 * np.pi * glob)
    # unwrapped along time: a hum drifting from +35 to +75 cents stays sharp (it is not read as a flat
    # neighbour once it passes +50), as long as it drifts by less than half a semitone per window
    return np.unwrap(local) / (2 * np.pi)


def estimate_key(pitches: np.ndarray, weights: np.ndarray) -> tuple[str, float]:
    """(key name, correlation) of pitch classes ``pitches`` weighted by ``weights`` (durations)."""
    hist = np.bincount(np.asarray(pitches) % 12, weights=weights, minlength=12)
    if not hist.any():
        return "C major", 0.0
    best, name = -2.0, "C major"
    for mode, profile in (("major", MAJOR), ("minor", MINOR)):
        for tonic in range(12):
            r = float(np.corrcoef(hist, np.roll(profile, tonic))[0, 1])
            if r > best:
                best, name = r, f"{PITCH_CLASSES[tonic]} {mode}"
    return name, best


def extract_melody(y: np.ndarray, sr: int) -> Melody:
    """Notes, key, tempo and tuning of a hummed or sung melody ``y`` (mono float) at ``sr`` Hz."""
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1 or not np.isfinite(y).all():
        raise MediaError("the melody must be a finite mono signal")
    hop = max(1, round(HOP_S * sr))
    frame = int(2 ** np.ceil(np.log2(FRAME_S * sr)))
    if len(y) < frame:
        raise NoMelodyError(f"the recording is {len(y) / sr:.2f} s long: too short for a melody")
    f0, voiced, _ = librosa.pyin(y, fmin=FMIN, fmax=FMAX, sr=sr, frame_length=frame, hop_length=hop)
    voiced = voiced & np.isfinite(f0)
    if voiced.sum() * HOP_S < MIN_VOICED_S:
        raise NoMelodyError(f"no pitched sound: {voiced.sum() * HOP_S:.2f} s of the recording has a pitch "
                            f"(at least {MIN_VOICED_S} s of humming or singing is needed)")
    midi = np.where(voiced, librosa.hz_to_midi(np.where(voiced, f0, 440.0)), np.nan)
    dev = np.where(voiced, midi - np.round(np.nan_to_num(midi)), 0.0)
    offset = _circular_offset(dev, voiced, max(3, round(DRIFT_WINDOW_S / HOP_S)))
    corrected = midi - offset
    rounded = np.where(voiced, np.round(np.nan_to_num(corrected)), np.nan)
    # running median over voiced frames only (unvoiced ones keep NaN)
    smooth = median_filter(np.nan_to_num(rounded, nan=-1.0), size=SMOOTH_FRAMES, mode="nearest")
    track = np.where(voiced & (smooth >= 0), smooth, np.nan)
    level = librosa.amplitude_to_db(librosa.feature.rms(y=y, frame_length=frame, hop_length=hop)[0], ref=1.0)
    level = np.resize(level, len(track))
    notes = _notes(track, corrected, level)
    if not notes:
        raise NoMelodyError("no pitched sound long enough to be a note")
    key, strength = estimate_key(np.array([n.pitch for n in notes]),
                                 np.array([n.end_s - n.start_s for n in notes]))
    tempo = _tempo([n.start_s for n in notes], len(track))
    cents = float(np.median(offset[voiced]) * 100)
    return Melody(notes=notes, key=key, key_strength=strength, tempo_bpm=tempo, tuning_cents=cents,
                  voiced_s=float(voiced.sum() * HOP_S), f0_hz=np.where(voiced, f0, np.nan), pitch_track=track)


def _notes(track: np.ndarray, corrected: np.ndarray, level: np.ndarray) -> list[Note]:
    min_frames = max(1, round(MIN_NOTE_S / HOP_S))
    runs, start = [], None
    for i in range(len(track) + 1):
        same = i < len(track) and start is not None and track[i] == track[start]
        if start is not None and not same:
            runs.append((start, i))
            start = None
        if i < len(track) and start is None and np.isfinite(track[i]):
            start = i
    # split a run where the level dips (a repeated note, sung again)
    split = []
    for a, b in runs:
        cut = a
        for k in range(a + min_frames, b - min_frames):
            if k - cut < min_frames:  # the note just split off must be a note
                continue
            lo = level[k]
            if lo < level[cut:k].max() - REARTICULATION_DB and lo < level[k:b].max() - REARTICULATION_DB \
                    and lo <= level[max(a, k - 2):k + 3].min():
                split.append((cut, k))
                cut = k + 1
        split.append((cut, b))
    notes = []
    for a, b in split:
        if b - a < min_frames:
            continue
        notes.append(Note(start_s=round(a * HOP_S, 3), end_s=round(b * HOP_S, 3), pitch=int(track[a]),
                          midi=float(np.nanmean(corrected[a:b]))))
    return notes


def _tempo(onsets: list[float], n_frames: int) -> float:
    env = np.zeros(n_frames + 1)
    for t in onsets:
        env[min(n_frames, round(t / HOP_S))] = 1.0
    env = np.convolve(env, np.hanning(7), "same")
    if len(onsets) < 3:
        return 0.0
    sr = round(1 / HOP_S)
    return float(librosa.feature.tempo(onset_envelope=env, sr=sr, hop_length=1)[0])
