"""Soundtrack from a hum (spec 01): music built from the melody a user hums, fitted to their video.

    python -m pipelines.soundtrack --hum HUM --video VIDEO --out OUT.mp4 [--audio-out OUT.wav]
                                   [--seed N] [--model DIR_OR_HUB_ID] [--max-seconds S] [--json]

1. **Melody in** (:func:`media.melody.extract_melody`): pYIN pitch, a wandering tuning corrected, notes,
   key and tempo. A hum shorter than the video repeats; a longer one is cut to the video.
2. **Video in** (:func:`media.video_events.video_events`): shot cuts, motion energy, visual beats,
   brightness and colourfulness.
3. **Grid** (:func:`media.score.beat_grid`): 16th notes at the hum's tempo, bent between the video's strong
   events so that they fall on beats.
4. **Generator** (:class:`models.soundtrack.SoundtrackGenerator`, trained as the spec's GAN): the hum, the
   video's controls and the key in, an arrangement out (lead, chords, bass, accompaniment rhythm, dynamics),
   decoded into notes (:func:`media.score.decode`).
5. **Render** with the General MIDI SoundFont (:mod:`media.synth`), then the spec's preset conditions
   (:func:`media.mix.finish_soundtrack`): exactly the video's length with a fade at the end, -14 LUFS, true
   peak at most -1 dBTP, and a no-noise check (spectral flatness).
6. **Merge**: the video's picture copied, the music as its sound track (``out_path``); the music alone in
   ``audio_out`` when asked.

Every result differs with the hum and the video; ``seed`` varies the arrangement of the same pair (by
default it is derived from the two files' contents, so the same request gives the same music).
"""
from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from media import score
from media.io import MediaError, mux_audio, probe, write_audio
from pipelines.common import (
    AVStudioError,
    PipelineOutput,
    Progress,
    check_files,
    cli_model,
    load_pretrained,
    loaded,
    prepare_out_path,
    read_audio_within,
    run_cli,
    settings,
    timed,
)

if TYPE_CHECKING:
    from media.melody import Melody, Note
    from models.soundtrack import SoundtrackGenerator

# the generator (torch) and the melody module (scipy) are imported where they are used: they are most of a cold
# command's start-up
HUM_SR = 16000  # pYIN at 16 kHz: the same notes as at 22.05 kHz, in half the time
OUTPUT_SR = 44100
FADE_S = 2.0
EVENT_TOLERANCE_S = 0.07  # a video event counts as met by the music within 70 ms of a note onset
ON_STEP_S = 0.01  # a step carries a video event (and is accented) when one lies within 10 ms of its start
MIN_VIDEO_S = 1.0


class SoundtrackError(AVStudioError):
    """Bad input for the soundtrack pipeline, with a message meant for the user."""


@dataclass(kw_only=True)
class SoundtrackResult(PipelineOutput):
    """The video with its new music (``output_path``), the music alone (``audio_path``) and what was read
    and made. Per-note and per-event lists (for plots) are left out of :meth:`summary`."""

    audio_path: str | None = None
    key: str = ""
    tempo_bpm: float = 0.0
    hum_notes: int = 0
    cuts: int = 0
    visual_beats: int = 0
    notes_by_part: dict[str, int] = field(default_factory=dict)
    events_met: float = 0.0  # share of the video's events within 70 ms of a note onset of the music
    loudness_lufs: float = 0.0
    true_peak_dbtp: float = 0.0
    spectral_flatness: float = 0.0
    noise_free: bool = True
    seed: int = 0
    hum: list = field(default_factory=list, repr=False)  # (start_s, end_s, midi) of the hum's notes as used
    lead: list = field(default_factory=list, repr=False)  # (start_s, end_s, midi) of the music's lead
    onsets: list = field(default_factory=list, repr=False)  # note onsets of the music (s)
    beats: list = field(default_factory=list, repr=False)  # the music's beats (s)
    events: list = field(default_factory=list, repr=False)  # (time_s, strength) of the video's events
    energy: list = field(default_factory=list, repr=False)  # (time_s, energy) of the video
    dynamics: list = field(default_factory=list, repr=False)  # (time_s, 0..1) of the music

    def message(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in self.notes_by_part.items())
        text = (f"{self.duration_s:.1f} s of music in {self.key} at {self.tempo_bpm:.0f} BPM from {self.hum_notes} "
                f"hummed notes ({parts} notes); {self.cuts} cuts and {self.visual_beats} visual beats, "
                f"{self.events_met:.0%} of them met by a note; {self.loudness_lufs:.1f} LUFS, true peak "
                f"{self.true_peak_dbtp:.1f} dBTP.")
        return " ".join([text, *self.notes])


def load_model(dir_or_repo: str | Path | None = None) -> SoundtrackGenerator:
    """The generator, loaded once per process (default: the bundled weights, or AVSTUDIO_SOUNDTRACK)."""
    from models.soundtrack import SoundtrackGenerator

    return load_pretrained(SoundtrackGenerator, str(dir_or_repo or settings().soundtrack), "soundtrack generator")


def _seed(*paths: Path) -> int:
    h = hashlib.sha1()
    for p in paths:
        with open(p, "rb") as f:
            h.update(f.read(1 << 20))
        h.update(str(p.stat().st_size).encode())
    return int(h.hexdigest()[:8], 16)


def video_duration(path: Path, limit: float) -> float:
    """The video's length as the muxer counts it (frames / fps), or SoundtrackError: unreadable, no
    picture, too short, or over ``limit`` seconds."""
    try:
        info = probe(path)
    except MediaError as err:
        raise SoundtrackError(f"the video could not be read: {err}") from err
    if not info.has_video or not info.n_frames:
        raise SoundtrackError(f"'{path.name}' has no video frames: upload a video")
    duration = info.n_frames / info.fps if info.fps else info.duration
    if duration > limit:
        raise SoundtrackError(f"the video is {duration:.0f} s long; the limit is {limit:.0f} s")
    if duration < MIN_VIDEO_S:
        raise SoundtrackError(f"the video is {duration:.2f} s long; it needs at least {MIN_VIDEO_S:g} s")
    return duration


def fill(notes: list[Note], duration: float, beat_s: float) -> tuple[list[Note], int]:
    """The hum's notes repeated (each pass starting a whole number of beats after the last) to cover
    ``duration``, and cut there; with the number of passes."""
    from media.melody import Note

    first, last = notes[0].start_s, max(n.end_s for n in notes)
    period = np.ceil((last - first + beat_s / 2) / beat_s) * beat_s
    out, passes = [], 0
    while True:
        shift = passes * period
        if first + shift >= duration:
            break
        out += [Note(n.start_s + shift, min(n.end_s + shift, duration), n.pitch, n.midi)
                for n in notes if n.start_s + shift < duration]
        passes += 1
    return out, passes


@dataclass
class Conditions:
    """What the generator reads for one hum and video: the grid, the hum's notes filling it, the rolls."""
    times: np.ndarray
    beat_s: float  # the median beat of the grid
    events: np.ndarray
    hum_notes: list
    passes: int
    melody_roll: np.ndarray
    video_roll: np.ndarray


def conditions(melody: Melody, ev, duration: float) -> Conditions:
    """The grid for the hum's tempo and the video's events (``ev``, :class:`media.video_events.VideoEvents`),
    the hum's notes repeated to ``duration``, and the melody and video rolls on that grid. Shared by the
    pipeline and by training on Pair exports, so both see inputs built the same way."""
    events = ev.events()
    times = score.beat_grid(duration, melody.tempo_bpm, events)
    beat_s = float(np.median(np.diff(times))) * score.STEPS_PER_BEAT
    hum_notes, passes = fill(melody.notes, duration, beat_s)
    return Conditions(times, beat_s, events, hum_notes, passes, score.melody_roll(hum_notes, times),
                      score.video_roll(times, events[:, 0], events[:, 1], ev.times, ev.energy, ev.brightness,
                                       ev.colourfulness))


def soundtrack(hum, video, *, out_path, audio_out=None, seed: int | None = None,
               model: SoundtrackGenerator | None = None, max_seconds: float | None = None,
               progress: Progress | None = None) -> SoundtrackResult:
    """Make ``out_path`` (mp4): ``video`` with music generated from the melody hummed in ``hum``."""
    from media.mix import finish_soundtrack
    from media.synth import render
    from media.video_events import NoFramesError, video_events

    t_start = time.perf_counter()
    say = progress or (lambda f, m: None)
    timings: dict[str, float] = {}
    hum, video = Path(hum), Path(video)
    check_files((hum, video), SoundtrackError)
    out_path = prepare_out_path(out_path, SoundtrackError)
    if audio_out is not None:
        audio_out = prepare_out_path(audio_out, SoundtrackError, suffixes=(".wav", ".flac"))
    limit = float(max_seconds) if max_seconds is not None else settings().soundtrack_max_seconds
    if not limit > 0:
        raise SoundtrackError(f"max_seconds must be positive, got {max_seconds!r}")
    model = loaded(model, load_model, say)
    notes: list[str] = []
    # 1. the video: its length, then its events
    say(0.0, "reading the video")
    duration = video_duration(video, limit)
    with timed(timings, "video"):
        try:
            ev = video_events(video, max_seconds=duration)
        except NoFramesError as err:
            raise SoundtrackError(f"'{video.name}' has no video frames: upload a video") from err
        except MediaError as err:
            raise SoundtrackError(f"the video could not be read: {err}") from err
    # 2. the hum: its notes, key and tempo (only as much as the video lasts)
    say(0.25, "listening to the hum")
    with timed(timings, "melody"):
        y = read_audio_within(hum, HUM_SR, limit, SoundtrackError, what="hum")
        if len(y) > duration * HUM_SR:
            notes.append(f"The {len(y) / HUM_SR:.1f} s hum was cut to the video's {duration:.1f} s.")
            y = y[:round(duration * HUM_SR)]
        from media.melody import NoMelodyError, extract_melody

        try:
            melody: Melody = extract_melody(y, HUM_SR)
        except NoMelodyError as err:
            raise SoundtrackError(f"no pitched sound in the hum: hum or sing a melody ({err})") from err
    # 3. the grid, the conditions, the generator
    say(0.55, "writing the music")
    with timed(timings, "generate"):
        c = conditions(melody, ev, duration)
        times, events, hum_notes = c.times, c.events, c.hum_notes
        if c.passes > 1:
            notes.append(f"The {melody.notes[-1].end_s:.1f} s melody repeats {c.passes} times to fill the video.")
        seed = _seed(hum, video) if seed is None else int(seed)
        probs = model.generate(score.condition(c.melody_roll, c.video_roll, melody.key, np.random.default_rng(seed)))
        centre = float(np.median([n.pitch for n in melody.notes]))
        accents = near_marks(times[:-1], events[:, 0], ON_STEP_S)
        arrangement = score.decode(probs, times, lead_centre=centre + 12 * (centre < 60), accents=accents)
    # 4. render, preset conditions, merge
    say(0.7, "playing it")
    with timed(timings, "render"):
        music = render(arrangement.all(), OUTPUT_SR, duration)
        music, info = finish_soundtrack(music, OUTPUT_SR, duration, fade_s=FADE_S)
    if not info["noise_free"]:
        notes.append(f"The music's spectral flatness {info['spectral_flatness']:.3f} is above the no-noise limit.")
    say(0.85, "merging with the video")
    with timed(timings, "write"):
        try:
            if audio_out is not None:
                write_audio(audio_out, music, OUTPUT_SR)
            mux_audio(video, out_path, music, sr=OUTPUT_SR)
        except MediaError as err:
            raise SoundtrackError(f"could not write the result: {err}") from err
    onsets = np.unique(np.round([n.start_s for n in arrangement.all()], 4))
    met = _events_met(events[:, 0], onsets)
    timings["total"] = time.perf_counter() - t_start
    say(1.0, "done")
    beats = times[::score.STEPS_PER_BEAT]
    mid = (times[:-1] + times[1:]) / 2
    return SoundtrackResult(
        output_path=str(out_path), audio_path=str(audio_out) if audio_out else None, duration_s=info["duration_s"],
        timings=timings, notes=notes, key=melody.key, tempo_bpm=60.0 / c.beat_s, hum_notes=len(melody.notes),
        cuts=len(ev.cuts), visual_beats=len(ev.beats),
        notes_by_part={k: len(getattr(arrangement, k)) for k in ("lead", "comp", "bass", "pad")},
        events_met=met, loudness_lufs=info["lufs"], true_peak_dbtp=info["true_peak_dbtp"],
        spectral_flatness=info["spectral_flatness"], noise_free=bool(info["noise_free"]), seed=seed,
        hum=[(n.start_s, n.end_s, n.pitch) for n in hum_notes],
        lead=[(n.start_s, n.end_s, n.midi) for n in arrangement.lead], onsets=onsets.tolist(),
        beats=beats[beats < duration].tolist(), events=events.tolist(),
        energy=list(zip(ev.times.tolist(), ev.energy.tolist())),
        dynamics=list(zip(mid.tolist(), probs[:, score.OUT_DYN].tolist())))


def near_marks(event_times, marks, tolerance: float = EVENT_TOLERANCE_S) -> np.ndarray:
    """Per event time, whether one of ``marks`` (note onsets, beats; any order) lies within ``tolerance``."""
    event_times, marks = np.asarray(event_times, float), np.sort(np.asarray(marks, float))
    if not len(marks):
        return np.zeros(len(event_times), bool)
    i = np.searchsorted(marks, event_times)
    left = np.abs(event_times - marks[np.maximum(i - 1, 0)])
    right = np.abs(marks[np.minimum(i, len(marks) - 1)] - event_times)
    return np.minimum(left, right) <= tolerance


def _events_met(event_times: np.ndarray, onsets: np.ndarray, tolerance: float = EVENT_TOLERANCE_S) -> float:
    """The share of ``event_times`` within ``tolerance`` of one of ``onsets`` (0 when there is no event)."""
    return float(np.mean(near_marks(event_times, onsets, tolerance))) if len(event_times) else 0.0


def plot_result(result: SoundtrackResult):
    """A bare matplotlib Figure, two rows: the hum's notes beside the music's lead; the video's events and
    energy beside the music's beats, note onsets and dynamics."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2))
    top, bottom = fig.subplots(2, 1, sharex=True)
    for (a, b, m), colour, label in [*((n, "C0", "hum") for n in result.hum[:1]), *((n, "C0", None) for n in result.hum[1:]),
                                     *((n, "C3", "music's lead") for n in result.lead[:1]),
                                     *((n, "C3", None) for n in result.lead[1:])]:
        top.plot([a, b], [m, m], color=colour, lw=4 if colour == "C0" else 2, alpha=0.5 if colour == "C0" else 0.9,
                 solid_capstyle="butt", label=label)
    top.set_ylabel("pitch (MIDI)")
    top.set_title(f"the hum's notes and the music's lead ({result.key}, {result.tempo_bpm:.0f} BPM)", fontsize=9)
    top.legend(fontsize=7, loc="upper right")
    if result.energy:
        t, e = zip(*result.energy)
        bottom.fill_between(t, 0, e, color="C2", alpha=0.3, label="video energy")
    if result.dynamics:
        t, d = zip(*result.dynamics)
        bottom.plot(t, d, color="C1", lw=1, label="music dynamics")
    for i, b in enumerate(result.beats):
        bottom.axvline(b, color="0.8", lw=0.6, zorder=0, label="music beats" if i == 0 else None)
    if result.onsets:
        bottom.plot(result.onsets, np.full(len(result.onsets), 1.04), "|", color="C3", ms=6, label="note onsets")
    for i, (t, strength) in enumerate(result.events):
        bottom.plot([t, t], [0, 1], color="k", lw=1.5 if strength >= 1 else 0.8,
                    label="video events (cuts bold)" if i == 0 else None)
    bottom.set_ylim(0, 1.1)
    bottom.set_xlim(0, max(result.duration_s, 1e-3))
    bottom.set_xlabel("time (s)")
    bottom.set_title(f"the video's events and energy, the music's beats and onsets ({result.events_met:.0%} of the "
                     "events within 70 ms of a note)", fontsize=9)
    bottom.legend(fontsize=7, loc="upper right", ncol=3)
    fig.tight_layout()
    return fig


def _add_arguments(ap) -> None:
    ap.add_argument("--hum", required=True, help="the hummed or sung melody (any audio or video file)")
    ap.add_argument("--video", required=True, help="the video to score")
    ap.add_argument("--audio-out", default=None, help="also write the music alone (.wav or .flac)")
    ap.add_argument("--seed", type=int, default=None, help="another arrangement of the same hum and video")


def _run(args, progress: Progress) -> SoundtrackResult:
    return soundtrack(args.hum, args.video, out_path=args.out, audio_out=args.audio_out, seed=args.seed,
                      model=cli_model(args, progress, load_model),
                      max_seconds=args.max_seconds, progress=progress)


def main(argv=None) -> int:
    return run_cli(argv, name="soundtrack", description="Music from a hummed melody, fitted to a video.",
                   add_arguments=_add_arguments, run=_run, out_help="the output video (.mp4)")


if __name__ == "__main__":
    sys.exit(main())
