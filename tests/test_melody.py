"""Melody from a hum (spec 01): notes, key, tempo and drift on synthesised tunes with known notes."""
from __future__ import annotations

import numpy as np
import pytest

from media.melody import NoMelodyError, estimate_key, extract_melody

SR = 16000
TUNE = [60, 62, 64, 65, 67, 64, 60, 67]  # C D E F G E C G
NOTE_S = 0.4  # 150 BPM


def hum(pitches, note_s=NOTE_S, detune_cents=0.0, drift_cents=0.0, vibrato_cents=25.0, gap_s=0.04, seed=0):
    """A hum-like tone: fundamental + 2 harmonics, vibrato 5.5 Hz, a short gap between notes, a constant
    detune and a linear drift over the tune, plus a little breath noise."""
    rng = np.random.default_rng(seed)
    total = len(pitches) * note_s
    out, phase = [], 0.0
    for k, p in enumerate(pitches):
        t = np.arange(int(note_s * SR)) / SR
        cents = detune_cents + drift_cents * (k * note_s + t) / total + vibrato_cents * np.sin(2 * np.pi * 5.5 * t)
        f = 440.0 * 2 ** ((p - 69 + cents / 100) / 12)
        ph = phase + 2 * np.pi * np.cumsum(f) / SR
        phase = ph[-1]
        tone = np.sin(ph) + 0.4 * np.sin(2 * ph) + 0.2 * np.sin(3 * ph)
        env = np.minimum(1, np.minimum(t / 0.02, (note_s - gap_s - t) / 0.02)).clip(0, 1)
        out.append(0.3 * tone * env)
    y = np.concatenate(out)
    return (y + rng.normal(0, 0.003, len(y))).astype(np.float32)


def test_known_notes_are_recovered_with_their_timing():
    m = extract_melody(hum(TUNE), SR)
    assert [n.pitch for n in m.notes] == TUNE
    starts = np.array([n.start_s for n in m.notes])
    assert np.abs(starts - np.arange(len(TUNE)) * NOTE_S).max() < 0.06
    assert m.key == "C major" and m.key_strength > 0.6
    assert m.tempo_bpm == pytest.approx(150, rel=0.05) or m.tempo_bpm == pytest.approx(75, rel=0.05)


def test_a_detuned_drifting_hum_still_reads_as_the_meant_notes():
    """35 cents sharp, drifting a further 40 cents over the tune: a plain rounding would move notes."""
    m = extract_melody(hum(TUNE, detune_cents=35.0, drift_cents=40.0), SR)
    assert [n.pitch for n in m.notes] == TUNE
    assert 35 < m.tuning_cents < 80  # the drift is reported, not hidden


def test_repeated_notes_sung_again_are_two_notes():
    m = extract_melody(hum([60, 60, 60, 67], gap_s=0.12), SR)
    assert [n.pitch for n in m.notes] == [60, 60, 60, 67]


def test_minor_key():
    name, strength = estimate_key(np.array([57, 59, 60, 62, 64, 65, 68, 69, 57, 60, 64]),
                                  np.array([2, 1, 1, 1, 1.5, 1, 0.5, 2, 1, 1, 1.0]))
    assert name == "A minor" and strength > 0.5


@pytest.mark.parametrize("case", ["silence", "noise", "short"])
def test_no_pitched_sound_is_refused(case):
    rng = np.random.default_rng(1)
    y = {"silence": np.zeros(SR * 2, np.float32), "noise": rng.normal(0, 0.2, SR * 2).astype(np.float32),
         "short": hum([60], note_s=0.05)}[case]
    with pytest.raises(NoMelodyError, match="pitch|short|melody|note"):
        extract_melody(y, SR)


def test_a_real_sung_melody(media):
    from media.io import read_audio

    path = media / "hum" / "vocadito_10.wav"  # solo singing
    m = extract_melody(read_audio(path, sr=SR, end=20.0), SR)
    assert len(m.notes) >= 5 and m.voiced_s > 1.0
    assert all(36 <= n.pitch <= 96 and n.end_s > n.start_s for n in m.notes)
