"""Soundtrack from a hum (spec 01): the score grid, the generator's shape, the pipeline end to end, its CLI
and its errors."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyloudnorm
import pytest
import torch

from media import score
from media.io import probe, read_audio, write_audio, write_video
from media.melody import Note
from media.mix import true_peak_db
from models.soundtrack import DifferenceDiscriminator, SoundtrackGenerator, difference
from pipelines.soundtrack import (
    SoundtrackError,
    _events_met,
    fill,
    plot_result,
    soundtrack,
)
from tests.test_melody import TUNE
from tests.test_melody import hum as hum_wave
from training.soundtrack_data import beat_chords, chord_pcs, chorale_song, hum_like, skyline, vgmidi_song

SR = 16000


# ------------------------------------------------------------------------------------------------
# the grid and the score (fast)
# ------------------------------------------------------------------------------------------------
def test_the_grid_puts_events_on_eighth_notes_and_covers_the_video():
    times = score.beat_grid(10.0, 100.0, np.array([[3.1, 1.0], [3.3, 0.2], [7.4, 1.0]]))
    eighths = times[::score.STEPS_PER_BEAT // score.ANCHOR_DIVISION]
    for t in (3.1, 7.4):  # the cut and the strong beat fall on 8th notes ...
        assert np.abs(eighths - t).min() < 1e-9
    assert np.abs(times - 3.3).min() < 1e-9  # ... and the weak event 0.2 s later on a step
    assert times[0] == 0 and times[-2] < 10.0 <= times[-1]
    local = np.diff(eighths[eighths <= 3.1])
    assert np.all(np.abs(local / 0.3 - 1) <= score.MAX_WARP + 1e-9)  # within 15 % of 100 BPM


def test_an_event_that_would_bend_the_tempo_too_far_only_moves_its_step():
    times = score.beat_grid(4.0, 120.0, np.array([[0.16, 1.0]]))  # 0.16 s: 0.64 of an 8th note
    beats = times[::score.STEPS_PER_BEAT]
    assert np.allclose(np.diff(beats[:4]), 0.5)  # the beat is not bent ...
    assert times[1] == pytest.approx(0.16) and times[2] == pytest.approx(0.25)  # ... the nearest 16th moves


def test_tempo_folds_into_range():
    assert score.fold_tempo(50) == 100 and score.fold_tempo(300) == 75 and score.fold_tempo(0) == score.DEFAULT_TEMPO


def test_melody_roll_marks_pitch_class_voicing_and_onsets():
    times = np.arange(0, 2.01, 0.125)  # 16 steps of 125 ms
    notes = [Note(0.0, 0.5, 62, 62.0), Note(0.5, 1.0, 66, 66.0), Note(1.5, 1.9, 74, 74.0)]
    roll = score.melody_roll(notes, times)
    assert roll[:4, 2].all() and roll[4:8, 6].all() and roll[12:15, 2].all()
    assert not roll[8:12, 12].any()  # a rest is unvoiced
    assert list(np.flatnonzero(roll[:, 13])) == [0, 4, 12]


def test_keys_and_chords_parse():
    assert score.parse_key("Gb:maj") == (6, True) and score.parse_key("A minor") == (9, False)
    assert chord_pcs("Bb:min7") == [1, 5, 8, 10] and chord_pcs("C:maj/3") == [0, 4, 7] and chord_pcs("N") == []


def test_decode_follows_the_generator_output():
    times = np.arange(0, 2.01, 0.125)
    out = np.zeros((16, score.OUT_CHANNELS), np.float32)
    out[:, 12] = 1  # lead rest ...
    out[4:8, 12], out[4:8, 7], out[4, 13] = 0, 1, 1  # ... but G from step 4 to 8
    out[:, 38] = 1  # no bass
    out[:, [14, 18, 21]] = 0.9  # C major held
    out[[0, 8], score.OUT_COMP_ON] = 1
    arr = score.decode(out, times, lead_centre=70)
    assert [(n.start_s, n.end_s, n.midi) for n in arr.lead] == [(0.5, 1.0, 67)]
    assert not arr.bass
    assert sorted({n.midi % 12 for n in arr.comp}) == [0, 4, 7] and {n.start_s for n in arr.comp} == {0.0, 1.0}
    # an accent on step 8 (a video event there): the chord struck there is louder, the one on step 0 softer
    accented = score.decode(out, times, lead_centre=70, accents=np.arange(16) == 8)
    plain = {n.start_s: n.velocity for n in arr.comp}
    loud = {n.start_s: n.velocity for n in accented.comp}
    assert loud[1.0] == plain[1.0] + score.ACCENT and loud[0.0] == plain[0.0] - score.UNACCENTED_SOFTER


def test_a_short_hum_repeats_to_fill_the_video():
    notes = [Note(0.2, 0.6, 60, 60.0), Note(0.6, 1.4, 64, 64.0)]
    filled, passes = fill(notes, 5.0, 0.5)
    assert passes == 4 and filled[2].start_s == pytest.approx(1.7) and filled[-1].end_s <= 5.0


def test_events_met_counts_events_near_onsets():
    assert _events_met(np.array([1.0, 2.0, 3.0]), np.array([0.95, 2.1, 3.0])) == pytest.approx(2 / 3)


def test_hum_like_renditions_wander_but_keep_most_notes():
    rng = np.random.default_rng(0)
    from training.soundtrack_data import HumNote
    notes = [HumNote(0.5 * i, 0.5 * i + 0.4, 60 + (i % 7)) for i in range(40)]
    out = hum_like(notes, rng)
    assert 30 <= len(out) <= 40
    same = sum(a.pitch == b.pitch for a, b in zip(notes, out))
    assert same < len(out)  # some notes go wrong ...
    assert np.mean([abs(a.start_s - b.start_s) for a, b in zip(notes, out)]) > 0.0  # ... and move


def test_generator_and_discriminator_shapes_and_save_load(tmp_path):
    g = SoundtrackGenerator(widths=(16, 16, 16, 16))
    x = torch.randn(2, 37, score.IN_CHANNELS)  # any length, not a multiple of 8
    logits = g(x)
    assert logits.shape == (2, 37, score.OUT_CHANNELS)
    p = g.probabilities(logits)
    assert torch.allclose(p[..., :13].sum(-1), torch.ones(2, 37))
    hard = g.hard(p)
    assert set(hard[..., 14:26].detach().unique().tolist()) <= {0.0, 1.0}
    d = DifferenceDiscriminator(widths=(16, 16, 16))(hard, hard.detach(), x)
    assert d.shape == (2,) and ((d >= 0) & (d <= 1)).all()
    same = difference(hard.detach(), hard.detach(), torch.tensor([True, True]))
    other = difference(hard.detach(), hard.detach().roll(1, 0), torch.tensor([True, True]))
    assert torch.allclose(same, torch.zeros(2)) and (other >= 0).all()
    g.save_pretrained(tmp_path / "m", {"data": {}})
    g2 = SoundtrackGenerator.from_pretrained(tmp_path / "m")
    assert torch.allclose(g2(x), g.eval()(x))
    assert (tmp_path / "m" / "README.md").read_text().startswith("---")


# ------------------------------------------------------------------------------------------------
# the pipeline end to end, on synthesised inputs (the bundled generator)
# ------------------------------------------------------------------------------------------------
def _video(path, seconds=6.0, fps=25, cut_s=3.0, with_audio=False):
    """A moving square on one background, then (after ``cut_s``) another scene."""
    frames = []
    for i in range(round(seconds * fps)):
        t = i / fps
        img = np.full((96, 128, 3), (40, 60, 90) if t < cut_s else (200, 180, 60), np.uint8)
        x = int(10 + 80 * ((t * 0.7) % 1))
        img[30:60, x:x + 20] = (250, 250, 250) if t < cut_s else (20, 20, 20)
        frames.append(img)
    audio = np.zeros(round(seconds * SR), np.float32) if with_audio else None
    write_video(path, frames, fps, audio=audio, sr=SR)
    return path


def _pc_agreement(hum, lead, seconds, step=0.01) -> float:
    """The share of the time both sound that the lead's pitch class is the hum's."""
    t = np.arange(0, seconds, step)

    def classes(notes):
        out = np.full(len(t), -1)
        for a, b, m in notes:
            out[(t >= a) & (t < b)] = int(m) % 12
        return out

    h, lead_pc = classes(hum), classes(lead)
    both = (h >= 0) & (lead_pc >= 0)
    return float((h[both] == lead_pc[both]).mean()) if both.any() else 0.0


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("soundtrack")
    hum = d / "hum.wav"
    write_audio(hum, hum_wave(TUNE), SR)
    return d, hum, _video(d / "clip.mp4")


def test_end_to_end_preset_conditions(inputs):
    d, hum, video = inputs
    out, wav = d / "out.mp4", d / "out.wav"
    r = soundtrack(hum, video, out_path=out, audio_out=wav)
    info = probe(out)
    assert info.has_video and info.has_audio
    y = read_audio(wav, sr=44100)
    assert abs(len(y) / 44100 - 6.0) <= 1 / 25  # the video's length, within a frame
    assert pyloudnorm.Meter(44100).integrated_loudness(y) == pytest.approx(-14, abs=1.0)
    assert true_peak_db(y, 44100) <= -1.0 + 1e-3
    assert r.noise_free and r.spectral_flatness < 0.88
    assert np.abs(y[-441:]).max() < 0.02  # faded out
    assert r.key.startswith("C") and r.hum_notes == len(TUNE)
    assert r.cuts == 1 and r.notes_by_part["lead"] > 0
    assert _pc_agreement(r.hum, r.lead, 6.0) > 0.6  # the lead plays the hum's pitch classes
    summary = r.summary()
    assert "hum" not in summary and summary["audio_path"] == str(wav)
    fig = plot_result(r)  # the tab's picture: hum vs lead, events vs beats
    assert len(fig.axes) == 2 and fig.axes[0].lines and fig.axes[1].lines


def test_another_seed_changes_the_music_and_the_same_request_repeats(inputs):
    d, hum, video = inputs
    a = soundtrack(hum, video, out_path=d / "a.mp4", seed=1)
    b = soundtrack(hum, video, out_path=d / "b.mp4", seed=1)
    assert a.onsets == b.onsets and a.lead == b.lead


@pytest.mark.parametrize("case", ["silent hum", "audio-only video", "too long", "missing", "bad suffix"])
def test_bad_input_gets_one_clear_message(inputs, case, tmp_path):
    _, hum, video = inputs
    kwargs = {"out_path": tmp_path / "o.mp4"}
    if case == "silent hum":
        hum = tmp_path / "silence.wav"
        write_audio(hum, np.zeros(SR * 2, np.float32), SR)
        expected = "no pitched sound"
    elif case == "audio-only video":
        video = tmp_path / "audio.wav"
        write_audio(video, hum_wave(TUNE), SR)
        expected = "no video frames"
    elif case == "too long":
        kwargs["max_seconds"] = 3
        expected = "the limit is 3 s"
    elif case == "missing":
        video = tmp_path / "nope.mp4"
        expected = "does not exist"
    else:
        kwargs["out_path"] = tmp_path / "o.avi"
        expected = "must be a .mp4"
    with pytest.raises(SoundtrackError, match=expected):
        soundtrack(hum, video, **kwargs)


def test_cli_json_and_exit_codes(inputs, tmp_path):
    _, hum, video = inputs
    run = subprocess.run([sys.executable, "-m", "pipelines.soundtrack", "--hum", str(hum), "--video", str(video),
                          "--out", str(tmp_path / "c.mp4"), "--audio-out", str(tmp_path / "c.wav"), "--json"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["output_path"].endswith("c.mp4") and out["noise_free"] is True
    bad = subprocess.run([sys.executable, "-m", "pipelines.soundtrack", "--hum", str(video), "--video", str(hum),
                          "--out", str(tmp_path / "e.mp4")], capture_output=True, text=True, timeout=300, check=False)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in bad.stderr


# ------------------------------------------------------------------------------------------------
# training on the Pair annotation task's export (--dataset)
# ------------------------------------------------------------------------------------------------
def test_training_reads_a_pair_export(inputs, tmp_path):
    from annotation.export import export
    from media.synth import NoteEvent, render
    from training import soundtrack_data as data
    from training import train_soundtrack as ts

    _, hum, video = inputs
    root = tmp_path / "media"
    (root / "videos").mkdir(parents=True)
    (root / "tracks").mkdir()
    (root / "videos" / "clip.mp4").write_bytes(video.read_bytes())
    chords = [NoteEvent(i * 1.5, i * 1.5 + 1.4, 48 + p, 80, 0) for i in range(4) for p in (0, 4, 7)]
    write_audio(root / "tracks" / "c_major.wav", render(chords, 22050, 6.0), 22050)
    items = [{"item_id": 1, "item_key": "k1", "is_gold": False, "gold_answer": None, "media_root": str(root),
              "payload": {"video": "videos/clip.mp4", "candidates": ["tracks/c_major.wav"]}}]
    labels = [{"label_id": 1, "client_id": "c1", "task": "hums", "kind": "pair", "item_id": 1, "item_key": "k1",
               "annotator": "ann", "value": "tracks/c_major.wav", "tags": [], "dwell_ms": 3000,
               "presentation": {"order": ["tracks/c_major.wav"]}, "hum_sha256": "ab", "hum_path": str(hum),
               "hum_flag": False, "is_gold": False, "gold_answer": None, "app_version": "test",
               "created_at": "2026-01-01T00:00:00+00:00", "revision": 0}]
    meta = {"name": "hums", "kind": "pair", "instructions": "Hum, then pick.", "per_item": 1, "gold_rate": 0.0,
            "media_root": str(root), "n_items": 1, "created_at": "2026-01-01T00:00:00+00:00"}
    export(meta, labels, items, set(), tmp_path / "export")
    rows = data.pair_rows(str(tmp_path / "export"))
    assert len(rows) == 1 and rows[0]["source"] == "human"
    arrays, manifest = data.load_samples(tmp_path / "cache", [str(tmp_path / "export")], bootstrap=False)
    target = arrays["target"]
    assert manifest[0]["source"] == "human" and len(target) == manifest[0]["steps"] > 16
    held = target[:, score.OUT_CHORD].sum(0)
    assert set(np.argsort(-held)[:3]) == {0, 4, 7}  # the track's C major chord, read from its audio
    assert target[:, 12].all()  # no lead from a track
    out = ts.train(ts.parse_args(["--dataset", str(tmp_path / "export"), "--no-bootstrap", "--max-iters", "2",
                                  "--min-iters", "0", "--eval-every", "1000", "--batch", "2",
                                  "--cache", str(tmp_path / "cache")]))
    assert out["meta"]["data"]["sources"] == {"human": 1} and out["meta"]["stop"]["iterations"] == 2


def _note(start, end, pitch):
    import pretty_midi

    return pretty_midi.Note(80, pitch, start, end)


def test_skyline_takes_the_top_line_and_beat_chords_read_the_accompaniment():
    # a C major chord under each tune note, a low G under a held top E
    notes = [_note(0, 1, 72), _note(0, 1, 64), _note(0, 1, 60), _note(1, 2, 74), _note(1, 2, 67),
             _note(2, 4, 76), _note(2.5, 3, 55)]
    melody, rest = skyline(notes)
    assert [(m.pitch, m.start, m.end) for m in melody] == [(72, 0, 1), (74, 1, 2), (76, 2, 4)]
    assert sorted(x.pitch for x in rest) == [55, 60, 64, 67]
    rows = beat_chords(rest, np.array([0.0, 1.0, 2.0, 3.0]))
    assert [r[3] for r in rows] == [[0, 4], [7], [7]]  # held at least a quarter of the beat


def test_more_bootstrap_sources_give_the_same_arrays(media):
    """VGMIDI pieces (skyline melody) and a Bach chorale (soprano melody) become the arrays POP909 songs do."""
    from music21 import corpus

    vg = sorted((media / "midi" / "vgmidi" / "labelled" / "midi").glob("*.mid"))[0]
    chorale = sorted(p for p in corpus.getComposer("bach") if p.name.startswith("bwv"))[5]
    for song in (vgmidi_song(vg, 0), chorale_song(chorale, 0)):
        n = len(song["target"])
        assert song["target"].shape == (n, score.OUT_CHANNELS) and song["video"].shape == (n, 4)
        assert song["hums"].shape[1:] == (n, 14) and len(song["times"]) == n + 1
        assert song["target"][:, 12].mean() < 0.5  # the melody sounds most of the time
        assert song["target"][:, 14:26].sum(1).mean() >= 1  # chords were read
        assert (song["video"][:, 0] > 0).any()  # events where the chord changes
