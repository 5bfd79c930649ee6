"""Tests for the soundtrack renderer (media.synth: notes through the TimGM6mb SoundFont) and its finishing
(media.mix.finish_soundtrack, spectral_flatness). Synthetic notes and noises; one test on real music (marked
media). Fast: a few seconds."""
from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest

from media.io import MediaError, read_audio
from media.mix import (
    NOISE_FLATNESS_MAX,
    finish_soundtrack,
    spectral_flatness,
    true_peak_db,
)
from media.synth import SOUNDFONT, NoteEvent, render

SR = 44100


def note(start: float = 0.5, end: float = 1.5, midi: int = 69, velocity: int = 100, program: int = 0,
         drum: bool = False) -> NoteEvent:
    return NoteEvent(start, end, midi, velocity, program, drum)


def spectrum(x: np.ndarray) -> np.ndarray:
    s = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return s / np.linalg.norm(s)


def arrangement(seconds: float = 8.0) -> list[NoteEvent]:
    """Four parts as the generator writes them: piano melody, string chords, bass, drums (~20 notes/s)."""
    rng = np.random.default_rng(1)
    notes = []
    for k in range(int(seconds / 0.25)):
        t = k * 0.25
        notes.append(NoteEvent(t, t + 0.24, int(rng.integers(64, 80)), 100, 0))  # piano
        notes.append(NoteEvent(t, t + 0.22, int(rng.integers(36, 48)), 100, 33))  # bass
        notes.append(NoteEvent(t, t + 0.1, 42, 70, 0, True))  # hi-hat
        if k % 2 == 0:
            notes.append(NoteEvent(t, t + 0.1, 36 if k % 4 == 0 else 38, 110, 0, True))  # kick, snare
    for k in range(int(seconds / 2)):
        root = int(rng.integers(52, 60))
        notes += [NoteEvent(2.0 * k, 2.0 * k + 1.9, root + i, 80, 48) for i in (0, 4, 7)]  # strings
    return notes


def coloured_noise(kind: str, seconds: float = 6.0, sr: int = SR) -> np.ndarray:
    """White, pink (-3 dB/octave) or brown (-6 dB/octave, a stand-in for traffic rumble) Gaussian noise."""
    n = round(seconds * sr)
    spec = np.fft.rfft(np.random.default_rng(7).standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    freqs[0] = freqs[1]
    spec /= {"white": 1.0, "pink": np.sqrt(freqs), "brown": freqs}[kind]
    y = np.fft.irfft(spec, n)
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


@pytest.fixture(scope="module")
def music() -> np.ndarray:
    return render(arrangement(), SR, 8.0)


# ------------------------------------------------------------------------------------------------
# render
# ------------------------------------------------------------------------------------------------
def test_soundfont_ships_with_pretty_midi():
    assert SOUNDFONT.name == "TimGM6mb.sf2" and SOUNDFONT.is_file()


def test_a4_pitch_onset_and_silence_around():
    x = render([note(0.5, 1.5, 69)], SR, 4.0, release_s=1.0)
    assert x.dtype == np.float32 and x.shape == (4 * SR,)
    held = x[round(0.6 * SR):round(1.4 * SR)]
    freqs = np.fft.rfftfreq(len(held), 1 / SR)
    assert abs(freqs[np.argmax(spectrum(held))] - 440.0) < 2.0
    start = round(0.5 * SR)
    assert not np.any(x[:start])  # nothing before the note
    onset = np.argmax(np.abs(x) > 0.01 * np.abs(x).max())
    assert 0 <= (onset - start) / SR <= 0.010
    # stopped release_s after the note's end, with TinySoundFont's 10 ms fast release
    assert np.abs(x[round(2.52 * SR):]).max() < 1e-6
    assert np.abs(x[round(1.6 * SR):round(2.4 * SR)]).max() > 1e-4  # the SoundFont's release rings until then


def test_events_are_sample_exact():
    """A note started a fraction of a 64-sample block later comes out shifted by exactly that many samples."""
    a = render([note(0.5, 1.5)], SR, 3.0)
    b = render([note(0.5123, 1.5123)], SR, 3.0)
    shift = round(0.5123 * SR) - round(0.5 * SR)
    np.testing.assert_array_equal(b[shift:], a[:len(a) - shift])


def test_programmes_differ_and_drums_sound():
    piano = render([note(0.0, 1.0, program=0)], SR, 1.0)[round(0.1 * SR):round(0.9 * SR)]
    organ = render([note(0.0, 1.0, program=19)], SR, 1.0)[round(0.1 * SR):round(0.9 * SR)]
    flute = render([note(0.0, 1.0, program=73)], SR, 1.0)[round(0.1 * SR):round(0.9 * SR)]
    assert spectrum(piano) @ spectrum(organ) < 0.8
    assert spectrum(piano) @ spectrum(flute) < 0.8
    snare = render([note(0.1, 0.3, 38, 110, drum=True)], SR, 1.0)
    low_d = render([note(0.1, 0.3, 38, 110)], SR, 1.0)  # the same key on the piano: D2
    assert np.sqrt(np.mean(snare ** 2)) > 0.01
    assert spectrum(snare) @ spectrum(low_d) < 0.5


def test_parts_on_their_own_channels_add_up():
    parts = [note(0.1, 0.8, 60), note(0.3, 0.9, 67, 90, program=40), note(0.2, 0.4, 38, 110, drum=True)]
    together = render(parts, SR, 1.5)
    apart = sum(render([p], SR, 1.5) for p in parts)
    # not bit for bit: TinySoundFont updates envelopes every 64 samples from where each generate call starts
    assert np.abs(together - apart).max() < 0.01 * np.abs(apart).max()


@pytest.mark.parametrize(("duration", "sr"), [(1.0, SR), (1.23457, SR), (0.3333, 22050), (2.71828, 16000)])
def test_length_is_exact(duration, sr):
    assert len(render([note(0.1, 0.5)], sr, duration)) == round(duration * sr)


def test_notes_past_the_end_are_cut():
    long = render([note(0.5, 1.5)], SR, 3.0)
    short = render([note(0.5, 1.5), note(1.2, 2.0, 72)], SR, 1.0)  # ringing at the end; one starts after it
    np.testing.assert_array_equal(short, long[:SR])
    assert np.abs(short[-100:]).max() > 1e-3
    assert not np.any(render([note(2.0, 3.0)], SR, 1.0))
    assert not np.any(render([], SR, 0.5))


@pytest.mark.parametrize("bad", [
    {"midi": 128}, {"midi": -1}, {"midi": 60.5}, {"velocity": 0}, {"velocity": 128}, {"program": 128},
    {"start": 1.0, "end": 1.0}, {"start": 1.0, "end": 0.5}, {"start": -0.1}, {"end": float("nan")},
    {"drum": 1},
])
def test_bad_notes_raise(bad):
    with pytest.raises(ValueError):
        note(**bad)


def test_bad_render_arguments_raise():
    with pytest.raises(ValueError, match="note 2 of 2"):
        render([note(), (0.0, 1.0, 60, 100, 0)], SR, 1.0)
    with pytest.raises(ValueError, match="at most 16"):
        render([note(program=p) for p in range(17)], SR, 1.0)
    for sr, duration in ((0, 1.0), (44100.0, 1.0), (SR, 0.0), (SR, float("inf"))):
        with pytest.raises(ValueError):
            render([note()], sr, duration)


# ------------------------------------------------------------------------------------------------
# finish_soundtrack, spectral_flatness
# ------------------------------------------------------------------------------------------------
def test_finish_soundtrack_presets(music):
    duration = 7.3337
    y, info = finish_soundtrack(music, SR, duration)
    assert y.dtype == np.float32 and len(y) == round(duration * SR) == 323416
    assert abs(pyloudnorm.Meter(SR).integrated_loudness(y.astype(np.float64)) + 14.0) <= 0.5
    assert true_peak_db(y, SR) <= -1.0
    assert np.abs(y[-round(0.05 * SR):]).max() < 10 ** (-50 / 20)  # faded out
    assert y[-1] == 0.0 and abs(y[0]) < 0.01  # faded in over 5 ms: no click
    assert info["noise_free"] is True and info["spectral_flatness"] <= NOISE_FLATNESS_MAX
    assert info["duration_s"] == pytest.approx(duration, abs=1e-3)
    assert abs(info["lufs"] + 14.0) <= 0.5 and info["true_peak_dbtp"] <= -1.0
    assert info["fade_out_s"] == 2.0


def test_finish_soundtrack_pads_and_clamps_the_fade(music):
    y, info = finish_soundtrack(music[:3 * SR], SR, 4.5)
    assert len(y) == round(4.5 * SR) and info["input_s"] == 3.0
    assert info["fade_out_s"] == 1.5  # a third of the duration
    assert not np.any(y[3 * SR:])  # padded with silence
    assert np.abs(np.diff(y[3 * SR - 300:3 * SR + 10])).max() < 0.05  # the input's end faded, no step


def test_white_noise_is_not_noise_free():
    _, info = finish_soundtrack(coloured_noise("white"), SR, 6.0)
    assert info["noise_free"] is False and info["spectral_flatness"] > NOISE_FLATNESS_MAX


@pytest.mark.parametrize("kind", ["white", "pink", "brown"])
def test_noise_is_flat(kind):
    assert spectral_flatness(coloured_noise(kind), SR) > NOISE_FLATNESS_MAX + 0.03


def test_rendered_music_is_not_flat(music):
    assert spectral_flatness(music, SR) < NOISE_FLATNESS_MAX - 0.1


def test_silence_raises():
    with pytest.raises(MediaError, match="silent") as err:
        finish_soundtrack(np.zeros(SR * 2, np.float32), SR, 2.0)
    assert "\n" not in str(err.value)
    with pytest.raises(MediaError, match="silent"):
        spectral_flatness(np.zeros(SR, np.float32), SR)


def test_real_music_is_below_the_noise_threshold(media):
    # among shared/media/music: the flattest tracks measured (0.82, 0.72) and an orchestral one (0.13)
    for name in ("wesnoth_loyalists.ogg", "librosa_admiralbob77_-_Choice_-_Drum-bass.ogg", "audiocraft_bach.mp3"):
        x = read_audio(media / "music" / name, sr=SR, end=30.0)
        assert spectral_flatness(x, SR) < NOISE_FLATNESS_MAX, name
