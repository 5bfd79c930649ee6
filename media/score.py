"""The soundtrack generator's score: melody, video and music on one 16th-note grid (spec 01).

The generator (:mod:`models.soundtrack`) reads and writes fixed channel layouts over the steps of a grid of
16th notes. This module builds that grid and converts to and from it; it has no learned parts.

- **The grid** (:func:`beat_grid`). The beat follows the hum's tempo, folded into ``TEMPO_RANGE``. Like the
  timing controls of CMT (Di et al. 2021), the video's events (cuts, visual beats) are anchors: the 8th notes
  between two anchors are spaced evenly so that each anchor falls on an 8th note, as long as that keeps the
  local tempo within ``MAX_WARP`` of the hum's; otherwise the anchor is skipped, and moves only its nearest
  16th (by at most ``MAX_NUDGE`` of a step). Every beat is split into ``STEPS_PER_BEAT`` steps,
  ``STEPS_PER_BAR`` to a bar.
- **Inputs** (:func:`condition`): the hum's notes as pitch class, voicing and onset per step; the position
  in the bar; the video's event strength, energy, brightness and colourfulness per step; the hum's key;
  slow noise (a few channels, constant over a bar) that varies the arrangement between seeds.
- **Outputs** (``OUT_*``): lead pitch class or rest and its onsets; the chord's pitch classes; the bass pitch
  class or none and its onsets; the accompaniment's onsets; dynamics; the accompaniment's register.
  :func:`decode` turns them into notes for :func:`media.synth.render`.

All times are seconds; pitch classes count from C.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

__all__ = ["IN_CHANNELS", "OUT_CHANNELS", "STEPS_PER_BAR", "STEPS_PER_BEAT", "Arrangement", "beat_grid",
           "condition", "decode", "key_vector", "melody_roll", "parse_key", "video_roll"]

STEPS_PER_BEAT = 4
STEPS_PER_BAR = 16
TEMPO_RANGE = (72.0, 144.0)  # a hum's tempo is folded into this octave
DEFAULT_TEMPO = 100.0
MAX_WARP = 0.15  # at most 15 % faster or slower than the hum's tempo between two anchors
ANCHOR_STRENGTH = 0.0  # events at least this strong are anchors of the grid (every event)
ANCHOR_DIVISION = 2  # anchors fall on 8th notes: the grid bends by whole 8ths between them
# the 5th and 95th percentiles of the bootstrap's stand-ins (energy, brightness, colourfulness) over the POP909
# training data (training/soundtrack_data.py: video_proxies)
CONTROL_RANGES = ((0.16, 0.69), (0.37, 0.66), (0.6, 0.7))
EVENT_FLOOR = 0.6  # the bootstrap marks accents 0.6 and chord changes 1.0 (training/soundtrack_data.py)
MAX_NUDGE = 0.5  # a weaker event moves its nearest step by up to half the shorter neighbouring step
N_NOISE = 4

# input channels
IN_MEL = slice(0, 12)  # the hum's pitch class sounding in the step
IN_VOICED, IN_ONSET = 12, 13
IN_POS = slice(14, 30)  # position in the bar, one-hot
IN_EVENT, IN_ENERGY, IN_BRIGHT, IN_COLOUR = 30, 31, 32, 33
IN_KEY = slice(34, 46)  # tonic one-hot
IN_MAJOR = 46
IN_NOISE = slice(47, 47 + N_NOISE)
IN_CHANNELS = 47 + N_NOISE
# output channels
OUT_LEAD = slice(0, 13)  # 12 pitch classes + rest (softmax)
OUT_LEAD_ON = 13
OUT_CHORD = slice(14, 26)  # pitch classes held by the accompaniment (sigmoid each)
OUT_BASS = slice(26, 39)  # 12 pitch classes + none (softmax)
OUT_COMP_ON, OUT_BASS_ON, OUT_DYN, OUT_REG = 39, 40, 41, 42
OUT_CHANNELS = 43
# pitch-class groups that transpose together (input, output)
IN_PC_GROUPS = (IN_MEL, IN_KEY)
OUT_PC_GROUPS = (slice(0, 12), slice(14, 26), slice(26, 38))

PITCH_CLASSES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
_FLATS = {"Db": 1, "Eb": 3, "Gb": 6, "Ab": 8, "Bb": 10, "Cb": 11, "Fb": 4, "E#": 5, "B#": 0}


def pitch_class(name: str) -> int:
    """0..11 of a note name such as ``"F#"``, ``"Bb"`` or ``"c"``."""
    name = name.strip()
    name = name[0].upper() + name[1:]
    if name in _FLATS:
        return _FLATS[name]
    if name in PITCH_CLASSES:
        return PITCH_CLASSES.index(name)
    raise ValueError(f"not a pitch class: {name!r}")


def parse_key(key: str) -> tuple[int, bool]:
    """(tonic pitch class, major) of ``"C major"``, ``"A minor"``, ``"Gb:maj"`` or ``"a:min"``."""
    text = key.replace(":", " ").split()
    tonic = pitch_class(text[0])
    mode = text[1].lower() if len(text) > 1 else "major"
    return tonic, not mode.startswith("min")


def key_vector(key: str) -> np.ndarray:
    """13 values: the tonic one-hot, then 1.0 for major."""
    tonic, major = parse_key(key)
    v = np.zeros(13, np.float32)
    v[tonic] = 1.0
    v[12] = float(major)
    return v


def fold_tempo(bpm: float) -> float:
    """``bpm`` doubled or halved into ``TEMPO_RANGE``; ``DEFAULT_TEMPO`` when unknown."""
    if not np.isfinite(bpm) or bpm <= 0:
        return DEFAULT_TEMPO
    lo, hi = TEMPO_RANGE
    while bpm < lo:
        bpm *= 2
    while bpm >= hi:
        bpm /= 2
    return float(bpm)


def beat_grid(duration_s: float, tempo_bpm: float, events: np.ndarray | None = None) -> np.ndarray:
    """Step times (s) of a 16th-note grid covering ``[0, duration_s]``, with the video's events on its steps.

    ``events`` is a ``(k, 2)`` array of (time, strength); those of strength at least ``ANCHOR_STRENGTH``
    become anchors (see the module docstring). Returns the start of every step and, last, the first step
    time at or after ``duration_s``, so step ``i`` spans ``times[i] .. times[i + 1]``.
    """
    unit = 60.0 / fold_tempo(tempo_bpm) / ANCHOR_DIVISION
    anchors = [] if events is None or len(events) == 0 else sorted(
        float(t) for t, s in np.asarray(events, float).reshape(-1, 2) if s >= ANCHOR_STRENGTH and 0 < t < duration_s)
    units, accepted = [0.0], []
    for a in anchors:
        span = a - units[-1]
        n = round(span / unit)
        if n < 1 or abs(span / n / unit - 1.0) > MAX_WARP:
            continue
        units.extend(units[-1] + span * np.arange(1, n + 1) / n)
        accepted.append(a)
    while units[-1] < duration_s or (len(units) - 1) % ANCHOR_DIVISION:  # whole beats, then cut at the end
        units.append(units[-1] + unit)
    times = subdivide(np.asarray(units), STEPS_PER_BEAT // ANCHOR_DIVISION)
    last = int(np.searchsorted(times, duration_s, side="left"))  # the first time >= duration
    times = times[:last + 1]
    # every event that is not an anchor moves its nearest step onto itself (a 16th played a little early or
    # late), so that a note struck there sounds with the event, not up to half a step (75 ms at 100 BPM) away
    if events is not None and len(events) and len(times) > 2:
        anchored = {round(a, 9) for a in accepted}
        moved = set()
        for t in sorted(float(t) for t, _ in np.asarray(events, float).reshape(-1, 2) if 0 < t < times[-2]):
            if round(t, 9) in anchored:
                continue
            k = int(_nearest_step(times, np.array([t]))[0])
            if k == 0 or k in moved or round(times[k], 9) in anchored:
                continue
            if abs(t - times[k]) <= MAX_NUDGE * min(times[k] - times[k - 1], times[k + 1] - times[k]):
                times[k] = t
                moved.add(k)
    return times


def subdivide(points: np.ndarray, parts: int) -> np.ndarray:
    """Every interval between consecutive ``points`` split into ``parts`` equal steps, closed by the last point."""
    steps = points[:-1, None] + np.diff(points)[:, None] * np.arange(parts) / parts
    return np.append(steps.ravel(), points[-1])


def _nearest_step(times: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Index of the step start nearest to each time in ``t`` (over all but the closing time)."""
    starts = times[:-1]
    i = np.clip(np.searchsorted(starts, t), 1, len(starts) - 1)
    left = starts[i - 1]
    right = starts[np.minimum(i, len(starts) - 1)]
    return np.where(np.abs(t - left) <= np.abs(right - t), i - 1, i)


def melody_roll(notes, times: np.ndarray) -> np.ndarray:
    """``(steps, 14)``: per step the pitch class sounding longest (one-hot), voiced (over half the step sung),
    and onset (a note begins nearest to this step). ``notes`` have ``start_s``, ``end_s`` and ``pitch``."""
    n = len(times) - 1
    roll = np.zeros((n, 14), np.float32)
    cover = np.zeros((n, 12))
    a, b = times[:-1], times[1:]
    for note in notes:
        overlap = np.clip(np.minimum(b, note.end_s) - np.maximum(a, note.start_s), 0, None)
        cover[:, note.pitch % 12] += overlap
    length = np.maximum(b - a, 1e-9)
    sung = cover.sum(1) / length
    best = cover.argmax(1)
    voiced = sung > 0.5
    roll[np.flatnonzero(voiced), best[voiced]] = 1.0
    roll[:, 12] = voiced
    starts = np.array([note.start_s for note in notes if times[0] <= note.start_s < times[-1]])
    if len(starts):
        roll[_nearest_step(times, starts), 13] = 1.0
    return roll


def video_roll(times: np.ndarray, event_times: np.ndarray, event_strength: np.ndarray,
               frame_times: np.ndarray, energy: np.ndarray, brightness: np.ndarray,
               colourfulness: np.ndarray) -> np.ndarray:
    """``(steps, 4)``: event strength (the strongest event nearest to the step, mapped to
    ``EVENT_FLOOR`` .. 1: every detected event is at least an accent, as the bootstrap's stand-ins are), then
    energy, brightness and colourfulness at the step's middle (frame values interpolated), each mapped from
    0..1 onto ``CONTROL_RANGES``: the range its music-derived stand-in covers in training, as CMT maps video
    features onto its music attributes. Without it a calm video (energy 0.08) sat far under anything the
    generator had seen, and it played almost nothing, not even at the video's events."""
    n = len(times) - 1
    roll = np.zeros((n, 4), np.float32)
    event_times = np.asarray(event_times, float)
    if len(event_times):
        idx = _nearest_step(times, event_times)
        strength = EVENT_FLOOR + (1 - EVENT_FLOOR) * np.clip(np.asarray(event_strength, np.float32), 0, 1)
        np.maximum.at(roll[:, 0], idx, strength)
    mid = (times[:-1] + times[1:]) / 2
    for c, values, (low, high) in zip((1, 2, 3), (energy, brightness, colourfulness), CONTROL_RANGES):
        if len(frame_times):
            roll[:, c] = low + (high - low) * np.clip(np.interp(mid, frame_times, values), 0, 1)
    return roll


def position_roll(n: int, first: int = 0) -> np.ndarray:
    """``(n, 16)`` one-hot position in the bar, step ``i`` at position ``(first + i) % 16``."""
    roll = np.zeros((n, STEPS_PER_BAR), np.float32)
    roll[np.arange(n), (first + np.arange(n)) % STEPS_PER_BAR] = 1.0
    return roll


def noise_roll(n: int, rng: np.random.Generator, first: int = 0) -> np.ndarray:
    """``(n, N_NOISE)`` standard normal noise, constant over each bar."""
    bars = (first + np.arange(n)) // STEPS_PER_BAR
    z = rng.standard_normal((int(bars.max()) + 1 if n else 1, N_NOISE)).astype(np.float32)
    return z[bars - bars.min()] if n else z[:0]


def condition(mel: np.ndarray, video: np.ndarray, key: str | np.ndarray, rng: np.random.Generator,
              first: int = 0) -> np.ndarray:
    """The generator's ``(steps, IN_CHANNELS)`` input from :func:`melody_roll`, :func:`video_roll` and the key
    (a name, or its :func:`key_vector`); step 0 sits at position ``first`` in the bar."""
    n = len(mel)
    x = np.zeros((n, IN_CHANNELS), np.float32)
    x[:, :14] = mel
    x[:, IN_POS] = position_roll(n, first)
    x[:, IN_EVENT:IN_COLOUR + 1] = video
    x[:, 34:47] = key_vector(key) if isinstance(key, str) else key
    x[:, IN_NOISE] = noise_roll(n, rng, first)
    return x


@dataclass
class Arrangement:
    """Notes decoded from the generator's output, per part, as ``media.synth.NoteEvent`` lists."""
    lead: list
    comp: list
    bass: list
    pad: list

    def all(self) -> list:
        return self.lead + self.comp + self.bass + self.pad


# General MIDI programmes of the parts (0-based)
LEAD_PROGRAM, COMP_PROGRAM, BASS_PROGRAM, PAD_PROGRAM = 73, 0, 33, 48  # flute, piano, fingered bass, strings
MAX_CHORD_NOTES = 4
LEAD_LOUDER, PAD_SOFTER = 25, 45  # velocity offsets from the predicted dynamics: the melody carries the music
# accents (spec 01: the music's accents land on the video's cuts and motion peaks): every note struck on a step
# that carries a video event is played ACCENT louder, every other note UNACCENTED_SOFTER softer. Chosen on the
# real-media benchmark's follows-the-video measure (benchmarks/soundtrack.py; docs/soundtrack.md, "Accents")
ACCENT, UNACCENTED_SOFTER = 30, 25


def _runs(values: np.ndarray, onsets: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, end, value) of runs of equal non-negative ``values``, split where ``onsets`` is set."""
    runs, start = [], None
    for i, v in enumerate(values):
        if start is not None and (v != values[start] or onsets[i]):
            if values[start] >= 0:
                runs.append((start, i, int(values[start])))
            start = None
        if start is None:
            start = i
    if start is not None and values[start] >= 0:
        runs.append((start, len(values), int(values[start])))
    return runs


def _place(pc: int, centre: float) -> int:
    """The MIDI note of pitch class ``pc`` nearest to ``centre``."""
    return int(pc + 12 * round((centre - pc) / 12))


def decode(out: np.ndarray, times: np.ndarray, lead_centre: float = 72.0,
           accents: np.ndarray | None = None) -> Arrangement:
    """Notes of the generator's probabilities ``out`` (``(steps, OUT_CHANNELS)``, softmax and sigmoid applied)
    on the grid ``times``. The lead sits nearest to ``lead_centre`` (the hum's register, raised to at least
    C4), the accompaniment around its predicted register, the bass (struck at its onsets only) in the octave
    from E1, a pad holding each beat's chord; velocities follow the predicted dynamics. ``accents`` (booleans
    per step, e.g. the steps that carry a video event) makes notes struck on those steps ``ACCENT`` louder and
    all others ``UNACCENTED_SOFTER`` softer."""
    from media.synth import NoteEvent

    n = len(out)
    start, end = times[:-1], times[1:]
    vel = np.round(35 + 80 * out[:, OUT_DYN])
    if accents is not None:
        vel = np.where(np.asarray(accents, bool), vel + ACCENT, vel - UNACCENTED_SOFTER)
    vel = np.clip(vel, 1, 127).astype(int)
    lead_pc = out[:, OUT_LEAD].argmax(1)
    lead_pc = np.where(lead_pc == 12, -1, lead_pc)
    lead = [NoteEvent(start[a], end[b - 1], _place(pc, max(lead_centre, 60.0)), int(min(127, vel[a] + LEAD_LOUDER)),
                      LEAD_PROGRAM) for a, b, pc in _runs(lead_pc, out[:, OUT_LEAD_ON] > 0.5)]
    # the bass is struck only at its onsets (a pitch-class flicker between them does not re-strike it): each
    # note takes the pitch class most probable over its span, or none
    bass = []
    strikes = list(np.flatnonzero(out[:, OUT_BASS_ON] > 0.5)) + [n]
    for a, b in itertools.pairwise(strikes):
        pc = int(out[a:b, OUT_BASS].mean(0).argmax())
        if pc < 12:
            bass.append(NoteEvent(start[a], end[b - 1], 28 + (pc - 4) % 12, int(vel[a]), BASS_PROGRAM))
    chord = out[:, OUT_CHORD]
    chosen = chord_sets(chord)
    comp, pad = [], []
    on = np.flatnonzero(out[:, OUT_COMP_ON] > 0.5)
    for j, a in enumerate(on):
        b = min(on[j + 1] if j + 1 < len(on) else n, a + STEPS_PER_BAR)
        pcs = np.flatnonzero(chosen[a])
        centre = 52 + 20 * float(out[a, OUT_REG])
        for pc in pcs:
            comp.append(NoteEvent(start[a], end[b - 1], _place(pc, centre), int(vel[a]), COMP_PROGRAM))
    # the pad holds the chord of each beat (the step probabilities averaged over the beat), re-struck only
    # when it changes
    beat = np.arange(n) // STEPS_PER_BEAT
    per_beat = np.stack([chord[beat == k].mean(0) for k in range(int(beat[-1]) + 1)]) if n else chord
    per_beat_sets = chord_sets(per_beat)
    held = [tuple(np.flatnonzero(per_beat_sets[k])) for k in beat]
    ids = {h: i for i, h in enumerate(dict.fromkeys(held))}
    for a, b, _ in _runs(np.array([ids[h] for h in held]), np.zeros(n, bool)):
        for pc in held[a]:
            pad.append(NoteEvent(start[a], end[b - 1], _place(pc, 60), int(max(1, vel[a] - PAD_SOFTER)),
                                 PAD_PROGRAM))
    return Arrangement(lead, comp, bass, pad)


def chord_sets(p: np.ndarray) -> np.ndarray:
    """The pitch classes played for chord probabilities ``p`` (``(..., 12)``), as booleans: those above one
    half, at most the ``MAX_CHORD_NOTES`` strongest; when none is, the strongest three."""
    rank = np.argsort(np.argsort(-p, -1), -1)
    chosen = (p > 0.5) & (rank < MAX_CHORD_NOTES)
    return np.where(chosen.any(-1, keepdims=True), chosen, rank < 3)
