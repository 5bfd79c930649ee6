"""Notes to audio with a General MIDI SoundFont (the "Soundtrack from a hum" pipeline's renderer).

The learned generator outputs notes (:class:`NoteEvent`: start and end in seconds, MIDI key, velocity, General
MIDI programme, drum or not); :func:`render` plays them with TinySoundFont (``tinysoundfont``, a SoundFont 2
sample player; no reverb or chorus) through :data:`SOUNDFONT`:

* **One MIDI channel per distinct (programme, drum) pair**, in order of first appearance: the first drum kit
  on channel 9 (General MIDI's percussion channel), melodic parts on 0-8 and 10-15, further drum kits on the
  channels left (TinySoundFont plays bank 128 on any channel set to drums). At most 16 pairs.
* **Sample-exact events.** Each note-on and note-off is sent at sample ``round(t * sr)``: the synthesiser
  renders up to it, straight into the output buffer, then takes the event. At one instant, note-offs go
  before note-ons, so a note repeated on the same key restarts. Overlapping notes on one key and channel end
  first in, first out.
* **Release.** After a note-off the SoundFont's own release plays (a sustained string may ring for seconds).
  Once ``release_s`` (default 1 s) has passed after the last note of a channel ended and no note started on
  it meanwhile, the channel's sounds are stopped with TinySoundFont's fast release (10 ms, no click): so
  everything is silent ``release_s + 0.01`` s after the last note. ``release_s=inf`` lets tails ring on.
* **Length.** The output is exactly ``round(duration_s * sr)`` samples: notes starting at or after the end are
  left out, notes and tails reaching past it are cut there (no fade: the caller's finishing adds one,
  see :func:`media.mix.finish_soundtrack`).
* Output: mono float32, the mean of TinySoundFont's left and right (the presets' pan spreads the parts),
  at the synthesiser's gain of 0 dB: not normalised, and a dense arrangement may go over 1.0.

**A fresh synthesiser per call.** The SoundFont file is read once (its bytes are cached); each call makes
its own ``tinysoundfont.Synth`` and loads it from those bytes: 11-17 ms measured, against some 300 ms of
synthesis for 30 s of music, and no held notes, ringing tails, channel settings or thread sharing can leak
from one render into the next (a cached synthesiser would need ``notes_off`` / ``sounds_off`` and a lock).

**Speed** (measured on the 2-core development machine, CPU time, 30 s at 44100 Hz): 4 parts of 585 notes
(piano melody in 8ths, string chords every 2 s, bass, drums) 0.28-0.33 s; a dense worst case, 4
parts of 150 notes each with 150 overlapping string notes (this SoundFont's strings ring 2.4 s after their
note-off) 0.58-0.67 s. Nearly all of it is TinySoundFont's C renderer (its cost grows with the voices
sounding; it holds the GIL); the event stepping (about 1200 calls) and the mono mix add about 25 ms.

**The SoundFont and its licence.** :data:`SOUNDFONT` is ``TimGM6mb.sf2`` (6 MB, General MIDI: 128 melodic
presets and 8 drum kits), the file pretty_midi ships in its package folder. Neither pretty_midi's metadata
(its MIT licence covers its code) nor the file's INFO chunk (name "TimGM6mb", saved by Awave Studio 8.5; no
copyright field) states its licence. It is Tim Brechbill's TimGM6mb, the GM SoundFont of MuseScore 1.x;
Debian packages it (``timgm6mb-soundfont`` 1.3-5, in main) with ``Copyright: 2004 Tim Brechbill, 2010 David
Bolton; License: GPL-2`` (the author: "I created some of the samples myself and all others are either
public domain or fall under the terms of the GNU General Public License", musescore.org/en/node/1463).
Debian's file is a slightly different version (5 969 788 bytes, INAM "TimGM6mb1.sf2"; pretty_midi's:
5 994 284 bytes), from the same source. So: **GPL-2**, with no font exception; whether audio rendered with
it is covered is unsettled. An app that redistributes the file must carry the GPL-2 text with it.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pretty_midi
import tinysoundfont

__all__ = ["DRUM_CHANNEL", "SOUNDFONT", "NoteEvent", "render"]

SOUNDFONT = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
# General MIDI's percussion channel (10, numbered from 1).
DRUM_CHANNEL = 9
_N_CHANNELS = 16
# Voices TinySoundFont may play at once (its default): far above what the pipeline's 4 parts hold.
_MAX_VOICES = 256
# Event kinds, in the order they are taken at one sample: ends of notes, channel stops, starts of notes.
_OFF, _STOP, _ON = 0, 1, 2


@dataclass(frozen=True)
class NoteEvent:
    """One note: from ``start_s`` to ``end_s`` (seconds, ``0 <= start_s < end_s``), MIDI key ``midi`` (0-127,
    69 = A4 = 440 Hz), ``velocity`` 1-127, General MIDI ``program`` 0-127 (0 = acoustic grand piano; for
    drums, the kit: 0 standard, 8 room, 16 power, 24 electronic, 25 TR-808, 32 jazz, 40 brush, 48 orchestra)
    and ``drum`` (``midi`` then picks the percussion sound, e.g. 36 bass drum, 38 snare, 42 closed hi-hat).

    Raises ValueError for values out of range.
    """

    start_s: float
    end_s: float
    midi: int
    velocity: int
    program: int
    drum: bool = False

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem:
            raise ValueError(f"bad note {self!r}: {problem}")


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _problem(note: NoteEvent) -> str | None:
    """What is wrong with ``note``, or None."""
    for name in ("midi", "velocity", "program"):
        if not _is_int(getattr(note, name)):
            return f"{name} must be a whole number, got {getattr(note, name)!r}"
    if not 0 <= note.midi <= 127:
        return f"midi must be 0-127, got {note.midi}"
    if not 1 <= note.velocity <= 127:
        return f"velocity must be 1-127, got {note.velocity}"
    if not 0 <= note.program <= 127:
        return f"program must be 0-127, got {note.program}"
    if not isinstance(note.drum, (bool, np.bool_)):
        return f"drum must be True or False, got {note.drum!r}"
    try:
        start, end = float(note.start_s), float(note.end_s)
    except (TypeError, ValueError):
        return f"start_s and end_s must be numbers, got {note.start_s!r} and {note.end_s!r}"
    if not (math.isfinite(start) and math.isfinite(end)):
        return f"start_s and end_s must be finite, got {start} and {end}"
    if start < 0:
        return f"start_s must be >= 0, got {start}"
    if not start < end:
        return f"start_s must be before end_s, got {start} and {end}"
    return None


@functools.cache
def _soundfont_bytes() -> bytes:
    return SOUNDFONT.read_bytes()


def _synth(sr: int) -> tuple[tinysoundfont.Synth, int]:
    """A fresh synthesiser at ``sr`` Hz with :data:`SOUNDFONT` loaded, and the SoundFont's id."""
    synth = tinysoundfont.Synth(gain=0, samplerate=sr)
    return synth, synth.sfload(_soundfont_bytes(), max_voices=_MAX_VOICES)


def _channels(notes: Sequence[NoteEvent]) -> dict[tuple[int, bool], int]:
    """A MIDI channel for each distinct ``(program, drum)``: see the module's notes."""
    pairs = list(dict.fromkeys((int(n.program), bool(n.drum)) for n in notes))
    if len(pairs) > _N_CHANNELS:
        raise ValueError(f"{len(pairs)} distinct (program, drum) parts; at most {_N_CHANNELS} (one per MIDI "
                         "channel)")
    channels: dict[tuple[int, bool], int] = {}
    first_drums = next((p for p in pairs if p[1]), None)
    if first_drums is not None:
        channels[first_drums] = DRUM_CHANNEL
    # channel 9 goes last to a melodic part, only when there are no drums
    free = iter([c for c in range(_N_CHANNELS) if c != DRUM_CHANNEL] + [DRUM_CHANNEL] * (first_drums is None))
    for pair in pairs:
        if pair not in channels:
            channels[pair] = next(free)
    return channels


def render(notes: Sequence[NoteEvent], sr: int, duration_s: float, *, release_s: float = 1.0) -> np.ndarray:
    """Render ``notes`` with :data:`SOUNDFONT` to a mono float32 signal of exactly ``round(duration_s * sr)``
    samples at ``sr`` Hz (see the module's notes: channels, sample-exact events, ``release_s``, cutting at the
    end). No notes: silence.

    Raises ValueError for a note that is not a valid :class:`NoteEvent` (naming its index), more than 16
    distinct (program, drum) parts, a sample rate that is not a positive whole number, a duration that is
    not a finite number > 0 (or rounds to no sample) or a ``release_s`` that is not >= 0.
    """
    if not (_is_int(sr) and sr > 0):
        raise ValueError(f"the sample rate must be a positive whole number of Hz, got {sr!r}")
    sr = int(sr)
    if not (isinstance(duration_s, (int, float, np.number)) and math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be a finite number of seconds > 0, got {duration_s!r}")
    if not (isinstance(release_s, (int, float, np.number)) and release_s >= 0):
        raise ValueError(f"release_s must be a number of seconds >= 0, got {release_s!r}")
    notes = list(notes)
    for i, note in enumerate(notes):
        problem = _problem(note) if isinstance(note, NoteEvent) else f"a {type(note).__name__}, not a NoteEvent"
        if problem:
            raise ValueError(f"note {i + 1} of {len(notes)}: {problem}")
    n = round(duration_s * sr)
    if n < 1:
        raise ValueError(f"duration_s={duration_s} is shorter than one sample at {sr} Hz")

    channels = _channels(notes)
    release = math.inf if math.isinf(release_s) else round(release_s * sr)
    # (sample, kind, channel, key, velocity); notes from the end on are left out, note-offs from it on too
    events: list[tuple[int, int, int, int, int]] = []
    spans: dict[int, list[tuple[int, int]]] = {}
    for note in notes:
        a, b = round(note.start_s * sr), max(round(note.start_s * sr) + 1, round(note.end_s * sr))
        if a >= n:
            continue
        chan = channels[(int(note.program), bool(note.drum))]
        events.append((a, _ON, chan, int(note.midi), int(note.velocity)))
        if b < n:
            events.append((b, _OFF, chan, int(note.midi), 0))
        spans.setdefault(chan, []).append((a, b))
    if math.isfinite(release):
        for chan, chan_spans in spans.items():  # a stop release_s after each end not followed by a start in time
            chan_spans.sort()
            reach = -1
            for k, (a, b) in enumerate(chan_spans):
                reach = max(reach, b)
                following = chan_spans[k + 1][0] if k + 1 < len(chan_spans) else math.inf
                if following > reach + release and reach + release < n:
                    events.append((reach + release, _STOP, chan, 0, 0))
    events.sort(key=lambda e: (e[0], e[1]))

    out = np.zeros(2 * n, np.float32)
    if events:
        synth, sfid = _synth(sr)
        for (program, drum), chan in channels.items():
            synth.program_select(chan, sfid, 0, program, is_drums=drum)
        view = memoryview(out).cast("B")
        done = 0  # samples rendered
        for pos, kind, chan, key, velocity in events:
            if pos > done:  # generate_simple: exactly the buffer's samples (generate rounds a time in seconds)
                synth.generate_simple(pos - done, buffer=view[8 * done:8 * pos])
                done = pos
            if kind == _ON:
                synth.noteon(chan, key, velocity)
            elif kind == _OFF:
                synth.noteoff(chan, key)
            else:
                synth.sounds_off(chan)
        if done < n:
            synth.generate_simple(n - done, buffer=view[8 * done:])
    stereo = out.reshape(n, 2)
    return (0.5 * (stereo[:, 0] + stereo[:, 1])).astype(np.float32)
