"""Training samples of the soundtrack generator (spec 01): (sample audio, sample video, matching audio) as
arrays on the 16th-note grid of :mod:`media.score`.

Two kinds of sample, each marked with its ``source``:

- **Bootstrap, symbolic** (``source="pop909"``), until people have labelled: the POP909 songs
  (``AVSTUDIO_MEDIA/midi/pop909``, MIT) give the melody, the piano accompaniment, chords and beats.
  * The matching music is the accompaniment on the song's own beat grid: chord pitch classes from the
    annotated chords, the bass (the lowest piano note under MIDI ``BASS_SPLIT``), onsets, dynamics and
    register (``target``).
  * The sample audio is a hum-like rendition of the song's melody: slow tempo wander, timing jitter, wrong
    notes, dropped and slurred notes (:func:`hum_like`), the errors that a hummer and the pitch tracker make;
    its key is estimated from those notes as the pipeline estimates it from a hum.
  * The sample video stands in as its controls, as in CMT (Di et al. 2021), which trains on music alone and
    reads the same controls from the video at inference: events where the chord changes or the
    accompaniment strikes hard, energy from the accompaniment's onset density and loudness, brightness from
    its register and colourfulness from its chord size (:func:`video_proxies`).
- **More bootstrap sources** (``--sources``, :data:`SOURCES`; measured in
  ``benchmarks/soundtrack_sources.py``): ``vgmidi``, the VGMIDI video-game piano pieces, whose melody is
  taken by the skyline rule (:func:`skyline`) and whose chords are read per beat from the rest
  (:func:`beat_chords`); ``chorales``, the Bach chorales of music21's corpus: the soprano is the melody, alto,
  tenor and bass the accompaniment, a quarter note the beat at ``CHORALE_BPM``.
- **Labelled** (``source="pair"`` or the export's ``label_source``): rows of the Pair annotation task's
  export. The hum's notes come from :func:`media.melody.extract_melody`, the video's controls from
  :func:`media.video_events.video_events` and the matching track is read into the same target layout from
  its audio (:func:`target_from_audio`: chroma for chords and bass, onsets, loudness, spectral centroid); it
  has no lead part, so the lead is learned from the bootstrap only (``lead_known`` false).
"""
from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from media import score
from media.melody import estimate_key
from training.make_bgm_fit_labels import media_root

BASS_SPLIT = 55  # piano notes under G3 are the bass
N_HUMS = 3  # hum-like renditions per song
CHORD_INTERVALS = {
    "maj": (0, 4, 7), "min": (0, 3, 7), "dim": (0, 3, 6), "aug": (0, 4, 8), "sus2": (0, 2, 7), "sus4": (0, 5, 7),
    "maj7": (0, 4, 7, 11), "min7": (0, 3, 7, 10), "7": (0, 4, 7, 10), "dim7": (0, 3, 6, 9), "hdim7": (0, 3, 6, 10),
    "minmaj7": (0, 3, 7, 11), "maj6": (0, 4, 7, 9), "min6": (0, 3, 7, 9), "9": (0, 4, 7, 10, 2),
    "maj9": (0, 4, 7, 11, 2), "min9": (0, 3, 7, 10, 2), "sus4(b7)": (0, 5, 7, 10), "11": (0, 4, 7, 10, 5),
    "min11": (0, 3, 7, 10, 5), "13": (0, 4, 7, 10, 9), "maj13": (0, 4, 7, 11, 9), "min13": (0, 3, 7, 10, 9),
    "5": (0, 7), "1": (0,),
}


def chord_pcs(label: str) -> list[int]:
    """Pitch classes of a POP909 / Harte chord label such as ``"Bb:min7"``, ``"C:maj/3"`` or ``"N"``."""
    if label in ("N", "X", ""):
        return []
    root, _, quality = label.partition(":")
    quality = (quality or "maj").split("/")[0]
    intervals = CHORD_INTERVALS.get(quality)
    if intervals is None:  # an unlisted extension: its triad
        intervals = CHORD_INTERVALS["min" if quality.startswith("min") else "dim" if quality.startswith("dim")
                                    else "aug" if quality.startswith("aug") else "maj"]
    tonic = score.pitch_class(root)
    return sorted({(tonic + i) % 12 for i in intervals})


@dataclass
class HumNote:
    start_s: float
    end_s: float
    pitch: int


def hum_like(notes: list[HumNote], rng: np.random.Generator) -> list[HumNote]:
    """A hummer's rendition of ``notes``: tempo wander (a slow sine warp of up to 0.15 s), onset jitter
    (sd 30 ms), 3 % of notes a semitone off and 1 % a tone off, 4 % dropped, repeated notes slurred into one
    half the time, and notes shortened by up to 30 % (breaths). Wrong notes are kept rare: with 8 % and 2 %
    the generator learned to "correct" a quarter of a real singer's notes (vocadito_10: the lead matched the
    hum on 59 % of its voiced frames), and the user's melody is what the music must follow."""
    amp, period, phase = rng.uniform(0, 0.15), rng.uniform(4, 12), rng.uniform(0, 2 * np.pi)

    def warp(t: float) -> float:
        return t + amp * np.sin(2 * np.pi * t / period + phase)

    out: list[HumNote] = []
    for note in notes:
        if rng.random() < 0.04:
            continue
        pitch = note.pitch
        u = rng.random()
        if u < 0.03:
            pitch += int(rng.choice([-1, 1]))
        elif u < 0.04:
            pitch += int(rng.choice([-2, 2]))
        start = warp(note.start_s) + rng.normal(0, 0.03)
        end = warp(note.end_s)
        end = start + max(0.06, (end - start) * rng.uniform(0.7, 1.0))
        if out and out[-1].pitch == pitch and start - out[-1].end_s < 0.08 and rng.random() < 0.5:
            out[-1] = HumNote(out[-1].start_s, end, pitch)
            continue
        out.append(HumNote(start, end, pitch))
    return out


def hum_key(notes: list[HumNote]) -> str:
    """The key :func:`media.melody.estimate_key` reads from ``notes``, as the pipeline reads it from a hum."""
    if not notes:
        return "C major"
    return estimate_key(np.array([n.pitch for n in notes]), np.array([n.end_s - n.start_s for n in notes]))[0]


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    return np.convolve(x, np.ones(width) / width, "same")


def video_proxies(target: np.ndarray, chord_change: np.ndarray, n_onsets: np.ndarray) -> np.ndarray:
    """CMT-style stand-ins for the video's controls, read from the music (``(steps, 4)``, as
    :func:`media.score.video_roll`): event strength 1 where the chord changes with a note struck, 0.6 where
    the accompaniment strikes three notes or more at once (so an event always comes with an onset, as the
    video's events should); energy from the onset density (per step, over 2 beats) and the dynamics;
    brightness from the register and colourfulness from the chord's size, each over a bar."""
    n = len(target)
    out = np.zeros((n, 4), np.float32)
    struck = (target[:, score.OUT_COMP_ON] > 0) | (target[:, score.OUT_BASS_ON] > 0)
    out[:, 0] = np.where(chord_change & struck, 1.0, np.where(n_onsets >= 3, 0.6, 0.0))
    density = _smooth(np.minimum(n_onsets, 4).astype(float), 2 * score.STEPS_PER_BEAT)
    out[:, 1] = np.clip(0.7 * density / 1.5 + 0.3 * _smooth(target[:, score.OUT_DYN], 8), 0, 1)
    out[:, 2] = _smooth(target[:, score.OUT_REG], score.STEPS_PER_BAR)
    out[:, 3] = np.clip(_smooth(target[:, score.OUT_CHORD].sum(1), score.STEPS_PER_BAR) / 5, 0, 1)
    return out


def pop909_song(folder: Path, seed: int) -> dict | None:
    """One POP909 song as arrays on its beat grid: ``target`` (steps, OUT_CHANNELS), ``video`` proxies
    (steps, 4), ``hums`` (N_HUMS, steps, 14), ``keys`` (N_HUMS, 13), ``first`` (the first step's position in
    the bar), ``times``. None when it has no melody or beats."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(str(folder / f"{folder.name}.mid"))
    parts = {inst.name.upper(): inst.notes for inst in midi.instruments}
    melody, piano = parts.get("MELODY", []), parts.get("PIANO", [])
    beat_rows = np.loadtxt(folder / "beat_midi.txt", ndmin=2)
    if not melody or len(beat_rows) < 8:
        return None
    beats = beat_rows[:, 0]
    downbeat = int(np.flatnonzero(beat_rows[:, 2] > 0.5)[0]) if (beat_rows[:, 2] > 0.5).any() else 0
    chords = []
    for row in (folder / "chord_midi.txt").read_text().splitlines():
        a, b, label = row.split()[:3]
        chords.append((float(a), float(b), label, chord_pcs(label)))
    return song_arrays(melody, piano, beats[downbeat:], chords, np.random.default_rng(seed))


def song_arrays(melody: list, piano: list, beats: np.ndarray, chords: list | None,
                rng: np.random.Generator) -> dict | None:
    """A song's arrays (see :func:`pop909_song`) from its melody and accompaniment notes (objects with
    ``start``, ``end``, ``pitch``, ``velocity``, as pretty_midi's) on ``beats`` (s, the first a downbeat).
    ``chords`` are (start, end, label, pitch classes) rows; without them each beat's chord is read from the
    accompaniment (:func:`beat_chords`). None with under 8 beats or no melody."""
    if not melody or len(beats) < 8:
        return None
    times = score.subdivide(np.asarray(beats, float), score.STEPS_PER_BEAT)
    n = len(times) - 1
    mid = (times[:-1] + times[1:]) / 2
    target = np.zeros((n, score.OUT_CHANNELS), np.float32)
    # the lead
    lead = np.full(n, 12)
    for note in melody:
        lead[(mid >= note.start) & (mid < note.end)] = note.pitch % 12
    target[np.arange(n), lead] = 1.0
    on = [note.start for note in melody if times[0] <= note.start < times[-1]]
    if on:
        target[score._nearest_step(times, np.array(on)), score.OUT_LEAD_ON] = 1.0
    # the chords
    change = np.zeros(n, bool)
    prev = None
    for a, b, label, pcs in (chords if chords is not None else beat_chords(piano, beats)):
        sel = (mid >= float(a)) & (mid < float(b))
        target[np.ix_(sel, [14 + p for p in pcs])] = 1.0
        if pcs and label != prev and sel.any():
            change[np.flatnonzero(sel)[0]] = True
        prev = label
    # the bass, the accompaniment's onsets, dynamics and register
    bass = np.full(n, 12)
    low = np.full(n, 999)
    vel_sum, vel_n = np.zeros(n), np.zeros(n)
    reg_sum, reg_n = np.zeros(n), np.zeros(n)
    n_onsets = np.zeros(n, int)
    for note in piano:
        sel = (mid >= note.start) & (mid < note.end)
        vel_sum[sel] += note.velocity
        vel_n[sel] += 1
        if note.pitch < BASS_SPLIT:
            better = sel & (note.pitch < low)
            low[better], bass[better] = note.pitch, note.pitch % 12
        else:
            reg_sum[sel] += note.pitch
            reg_n[sel] += 1
        if times[0] <= note.start < times[-1]:
            k = int(score._nearest_step(times, np.array([note.start]))[0])
            if note.pitch < BASS_SPLIT:
                target[k, score.OUT_BASS_ON] = 1.0
            else:
                target[k, score.OUT_COMP_ON] = 1.0
                n_onsets[k] += 1
    target[np.arange(n), 26 + bass] = 1.0
    dyn = np.where(vel_n > 0, (vel_sum / np.maximum(vel_n, 1) - 35) / 80, 0.0)
    target[:, score.OUT_DYN] = np.clip(_smooth(dyn, score.STEPS_PER_BEAT), 0, 1)
    reg = np.where(reg_n > 0, (reg_sum / np.maximum(reg_n, 1) - 52) / 20, 0.5)
    target[:, score.OUT_REG] = np.clip(_smooth(reg, score.STEPS_PER_BEAT), 0, 1)
    video = video_proxies(target, change, n_onsets)
    clean = [HumNote(x.start, x.end, x.pitch) for x in melody]
    hums = np.zeros((N_HUMS, n, 14), np.float32)
    keys = np.zeros((N_HUMS, 13), np.float32)
    for h in range(N_HUMS):
        notes = hum_like(clean, rng)
        hums[h] = score.melody_roll(notes, times)
        keys[h] = score.key_vector(hum_key(notes))
    return {"target": target, "video": video, "hums": hums, "keys": keys, "first": 0,
            "times": times.astype(np.float64)}


def beat_chords(notes: list, beats: np.ndarray, min_share: float = 0.25) -> list[tuple]:
    """(start, end, label, pitch classes) per beat, read from ``notes`` (an accompaniment with no chord
    annotation): the pitch classes sounding for at least ``min_share`` of the beat, at most
    ``MAX_CHORD_NOTES`` (score) of the longest; the label names the set, so a repeat is no change."""
    rows = []
    for a, b in itertools.pairwise(np.asarray(beats, float)):
        held = np.zeros(12)
        for note in notes:
            held[note.pitch % 12] += max(0.0, min(note.end, b) - max(note.start, a))
        pcs = sorted(int(p) for p in np.argsort(-held)[:score.MAX_CHORD_NOTES] if held[p] >= min_share * (b - a))
        rows.append((a, b, ",".join(map(str, pcs)), pcs))
    return rows


def skyline(notes: list, lowest: int = 60) -> tuple[list, list]:
    """(melody, rest) of a piano part with no melody track, by the skyline rule (Uitdenbogerd and Zobel
    1999): a note is the melody when it is the highest sounding at its onset and at least MIDI ``lowest``;
    a melody note is cut where the next one starts."""
    notes = sorted(notes, key=lambda x: (x.start, -x.pitch))
    melody, rest, last_start = [], [], None
    for note in notes:
        top = note.pitch >= lowest and note.start != last_start and not any(
            o.start <= note.start < o.end and o.pitch > note.pitch for o in notes)
        if top:
            if melody and melody[-1].end > note.start:
                melody[-1].end = note.start
            melody.append(copy.copy(note))
            last_start = note.start
        else:
            rest.append(note)
    return [m for m in melody if m.end - m.start > 0.02], rest


def vgmidi_song(path: Path, seed: int) -> dict | None:
    """One VGMIDI piece (video-game piano, ``AVSTUDIO_MEDIA/midi/vgmidi``): the melody by :func:`skyline`
    from the right hand (or all notes), the rest as the accompaniment, the MIDI's own beats from its first
    downbeat, chords read per beat."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(str(path))
    parts = [inst for inst in midi.instruments if not inst.is_drum]
    right = [inst for inst in parts if "RIGHT" in inst.name.upper()] or parts
    melody, rest = skyline([x for inst in right for x in inst.notes])
    rest += [x for inst in parts if inst not in right for x in inst.notes]
    beats, downbeats = midi.get_beats(), midi.get_downbeats()
    first = int(np.searchsorted(beats, downbeats[0] - 1e-6)) if len(downbeats) else 0
    return song_arrays(melody, rest, beats[first:], None, np.random.default_rng(seed))


CHORALE_BPM = 80.0  # the chorales carry no tempo: a quarter note is a beat at this tempo


def chorale_song(path: Path, seed: int) -> dict | None:
    """One Bach chorale of music21's corpus: the soprano as the melody, alto, tenor and bass as the
    accompaniment (velocity 70), a quarter-note beat at ``CHORALE_BPM`` from the first downbeat, chords
    read per beat. None unless it has four parts."""
    import pretty_midi
    from music21 import corpus

    piece = corpus.parse(str(path))
    if len(piece.parts) != 4:
        return None
    spq = 60.0 / CHORALE_BPM
    voices = []
    for part in piece.parts:
        voices.append([pretty_midi.Note(70, int(p.midi), float(el.offset) * spq,
                                        float(el.offset + el.duration.quarterLength) * spq)
                       for el in part.flatten().notes for p in el.pitches if el.duration.quarterLength > 0])
    end = max((x.end for v in voices for x in v), default=0.0)
    # the first downbeat: the first whole measure (a pickup is measure 0)
    first = next((float(m.offset) for m in piece.parts[0].getElementsByClass("Measure") if m.number >= 1), 0.0) * spq
    beats = np.arange(first, end + 1e-6, spq)
    return song_arrays(voices[0], [x for v in voices[1:] for x in v], beats, None, np.random.default_rng(seed))


SOURCES = ("pop909", "vgmidi", "chorales")  # the symbolic bootstrap sources, see :func:`source_items`
SONG_READERS = {"pop909": pop909_song, "vgmidi": vgmidi_song, "chorales": chorale_song}


def source_items(source: str) -> list[tuple[str, Path, int]]:
    """(song name, path, seed) of every song of a bootstrap ``source``: ``pop909`` (the media collection's
    POP909 folders), ``vgmidi`` (its VGMIDI pieces, ``midi/vgmidi/labelled/midi``) or ``chorales`` (the Bach
    chorales in music21's corpus)."""
    if source == "pop909":
        root = media_root() / "midi" / "pop909"
        return [(p.name, p, int(p.name)) for p in sorted(root.iterdir()) if p.is_dir()]
    if source == "vgmidi":
        files = sorted((media_root() / "midi" / "vgmidi" / "labelled" / "midi").glob("*.mid"))
        return [(p.stem, p, i) for i, p in enumerate(files)]
    if source == "chorales":
        from music21 import corpus

        files = sorted(p for p in corpus.getComposer("bach") if p.name.startswith("bwv"))
        return [(p.name.split(".mxl")[0], p, i) for i, p in enumerate(files)]
    raise ValueError(f"unknown bootstrap source {source!r}; one of {', '.join(SOURCES)}")


def _song_job(args):
    source, name, path, seed = args
    try:
        return name, SONG_READERS[source](path, seed)
    except Exception as err:  # noqa: BLE001 (a broken file of any kind is skipped, and said)
        return name, f"{type(err).__name__}: {err}"


def build_source(source: str, out: Path, limit: int | None = None, workers: int = 2) -> Path:
    """Write every song of a bootstrap ``source`` as arrays to ``out/SOURCE.npz`` and its manifest
    ``out/SOURCE.jsonl`` (one row per song: ``song``, ``source``, ``steps``, offset into the stacked
    arrays). Returns the npz path."""
    from multiprocessing import Pool

    jobs = [(source, name, path, seed) for name, path, seed in source_items(source)[:limit]]
    rows, arrays = [], {"target": [], "video": [], "hums": [], "keys": []}
    with Pool(workers) as pool:
        for name, song in tqdm(pool.imap(_song_job, jobs), total=len(jobs), desc=f"{source} songs"):
            if not isinstance(song, dict):
                if song:
                    tqdm.write(f"skipped {source} {name}: {song}")
                continue
            offset = sum(len(t) for t in arrays["target"])
            rows.append({"song": f"{source}/{name}", "source": source, "steps": len(song["target"]),
                         "offset": offset, "first": song["first"]})
            for key, stack in arrays.items():
                stack.append(song[key])
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{source}.npz"
    np.savez_compressed(path, target=np.concatenate(arrays["target"]).astype(np.float16),
                        video=np.concatenate(arrays["video"]).astype(np.float16),
                        hums=np.concatenate(arrays["hums"], axis=1).astype(np.float16),
                        keys=np.stack(arrays["keys"]))
    (out / f"{source}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------------------------------
# labelled samples: the Pair annotation task's export
# ------------------------------------------------------------------------------------------------
def target_from_audio(y: np.ndarray, sr: int, times: np.ndarray) -> np.ndarray:
    """A matching track's audio in the generator's output layout on the grid ``times``: the chord as the
    pitch classes whose CQT chroma is at least 0.6 of the step's strongest (at most four), the bass as the
    strongest pitch class under 260 Hz (none when that band is 30 dB under the loudest), accompaniment and
    bass onsets from librosa's onset detection on the whole and the low band, dynamics from the RMS level
    (-40..0 dB of the loudest as 0..1), register from the spectral centroid. No lead: the rest class."""
    import librosa

    hop = 512
    n = len(times) - 1
    out = np.zeros((n, score.OUT_CHANNELS), np.float32)
    out[:, 12] = 1.0
    frames = librosa.time_to_frames((times[:-1] + times[1:]) / 2, sr=sr, hop_length=hop)
    chroma = librosa.feature.chroma_cqt(y=y, sr=sr, hop_length=hop)
    low = np.abs(librosa.stft(librosa.effects.preemphasis(y, coef=-0.9), hop_length=hop))
    freqs = librosa.fft_frequencies(sr=sr)
    band = (freqs > 40) & (freqs < 260)
    low_pc = np.zeros((12, low.shape[1]))
    np.add.at(low_pc, np.round(librosa.hz_to_midi(freqs[band])).astype(int) % 12, low[band])
    low_db = librosa.amplitude_to_db(low[band].sum(0), ref=np.max)
    rms_db = librosa.amplitude_to_db(librosa.feature.rms(y=y, hop_length=hop)[0], ref=np.max)
    centroid = librosa.feature.spectral_centroid(y=y, sr=sr, hop_length=hop)[0]
    f = np.clip(frames, 0, chroma.shape[1] - 1)
    for k in range(n):
        c = chroma[:, f[k]]
        pcs = [p for p in np.argsort(-c)[:4] if c[p] >= 0.6 * c.max()]
        out[k, [14 + p for p in pcs]] = 1.0
        fl = min(f[k], low.shape[1] - 1)
        out[k, 26 + (int(low_pc[:, fl].argmax()) if low_db[fl] > -30 else 12)] = 1.0
    out[:, score.OUT_DYN] = np.clip(1 + rms_db[np.clip(f, 0, len(rms_db) - 1)] / 40, 0, 1)
    out[:, score.OUT_REG] = np.clip((librosa.hz_to_midi(np.maximum(centroid[np.clip(f, 0, len(centroid) - 1)], 30))
                                     - 60) / 36, 0, 1)
    for channel, signal in ((score.OUT_COMP_ON, y), (score.OUT_BASS_ON, None)):
        env = (librosa.onset.onset_strength(y=y, sr=sr, hop_length=hop) if signal is not None
               else librosa.onset.onset_strength(S=librosa.amplitude_to_db(low[band] + 1e-9), sr=sr, hop_length=hop))
        on = librosa.onset.onset_detect(onset_envelope=env, sr=sr, hop_length=hop, units="time")
        on = on[(on >= times[0]) & (on < times[-1])]
        if len(on):
            out[score._nearest_step(times, on), channel] = 1.0
    return out


def pair_song(hum: str, video: str, matching: str, seed: int = 0) -> dict:
    """One labelled Pair sample in the arrays of :func:`pop909_song`: the hum's notes and key (pYIN), the
    video's controls on the grid the pipeline builds for them, the matching track read from its audio."""
    from media.io import read_audio
    from media.melody import extract_melody
    from media.video_events import video_events
    from pipelines.soundtrack import HUM_SR, conditions

    sr = 22050
    melody = extract_melody(read_audio(hum, sr=HUM_SR), HUM_SR)
    ev = video_events(video)
    c = conditions(melody, ev, ev.duration_s)
    times = c.times
    target = target_from_audio(read_audio(matching, sr=sr, end=float(times[-1])), sr, times)
    return {"target": target, "video": c.video_roll, "hums": np.repeat(c.melody_roll[None], N_HUMS, 0),
            "keys": np.repeat(score.key_vector(melody.key)[None], N_HUMS, 0), "first": 0, "times": times}


def pair_tasks(where: str) -> list[str]:
    """The Pair tasks exported in ``where``: the task of a task's own export folder, every task folder of an
    export root whose summary says ``kind: pair``, or ``["pair"]`` (a Hub dataset's config name)."""
    folder = Path(where)
    summaries = [folder / "summary.json"] if (folder / "summary.json").is_file() else sorted(folder.glob("*/summary.json"))
    tasks = [json.loads(p.read_text()) for p in summaries]
    found = [t["task"] for t in tasks if t.get("kind", "pair") == "pair"]
    return found or ["pair"]


def pair_rows(where: str) -> list[dict]:
    """(hum, video, matching, label_source) paths of the labels of the Pair exports in ``where``
    (``annotation.load_labels``); labels that chose no track, or carry no hum, are left out."""
    import tempfile

    from annotation.export import load_labels
    from training.train_bgm_fit import _media_path

    spool = Path(tempfile.gettempdir()) / "avstudio_pair_media"
    spool.mkdir(exist_ok=True)
    table = [r for task in pair_tasks(where) for r in load_labels(where, task)["labels"]]
    rows = []
    for r in table:
        if not r["value"] or not r.get("matching_audio") or not r.get("sample_audio"):
            continue
        rows.append({"hum": _media_path(r["sample_audio"], spool), "video": _media_path(r["sample_video"], spool),
                     "matching": _media_path(r["matching_audio"], spool),
                     "source": r.get("label_source") or "pair", "item": r["item_key"]})
    return rows


def load_samples(cache: Path, datasets: list[str], bootstrap: bool = True,
                 sources: tuple[str, ...] = ("pop909",)) -> tuple[dict, list[dict]]:
    """The stacked arrays and per-song manifest of the bootstrap ``sources`` (each built into ``cache`` on
    first use) and of every Pair export in ``datasets``; each row names its ``source``."""
    parts, rows = [], []
    for source in sources if bootstrap else ():
        path = cache / f"{source}.npz"
        if not path.is_file():
            build_source(source, cache)
        z = np.load(path)
        offset = sum(len(p["target"]) for p in parts)
        parts.append({k: z[k] for k in ("target", "video", "hums", "keys")})
        rows += [r | {"offset": r["offset"] + offset}
                 for r in map(json.loads, (cache / f"{source}.jsonl").read_text().splitlines())]
    for where in datasets:
        for r in tqdm(pair_rows(where), desc=f"Pair samples of {where}"):
            song = pair_song(r["hum"], r["video"], r["matching"])
            offset = sum(len(p["target"]) for p in parts)
            rows.append({"song": f"pair/{r['item']}/{Path(r['matching']).stem}", "source": r["source"],
                         "steps": len(song["target"]), "offset": offset, "first": 0})
            parts.append({"target": song["target"], "video": song["video"], "hums": song["hums"],
                          "keys": song["keys"][None]})
    if not parts:
        raise SystemExit("no training samples: give --dataset, or keep the POP909 bootstrap")
    arrays = {"target": np.concatenate([p["target"] for p in parts]),
              "video": np.concatenate([p["video"] for p in parts]),
              "hums": np.concatenate([p["hums"] for p in parts], axis=1),
              "keys": np.concatenate([p["keys"] for p in parts])}
    return arrays, rows
