"""BGM fit (spec 02): the network, the bootstrap rule, the trainer's measures, segmentation, the choice of
tracks, the bundled library, and the pipeline and CLI on real media."""
from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from media.fused import FEATURE_NAMES, D
from models.bgm_fit import DEFAULT_WEIGHTS, BGMFitNet, rating_target
from pipelines import bgm_fit
from pipelines.bgm_fit import BGMFitError, choose_tracks, segment
from training.make_bgm_fit_labels import SPEECH_MOOD, ratings_from_fit, rule_fit
from training.train_bgm_fit import auc, held_out, ndcg_at, speech_group, split

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "examples" / "bgm_library"
I = {n: i for i, n in enumerate(FEATURE_NAMES)}


# ------------------------------------------------------------------------------------------------ model
def test_rating_targets_are_graded():
    assert rating_target([1, 2, 3, 4, 5]).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_network_shapes_and_round_trip(tmp_path):
    torch.manual_seed(0)
    model = BGMFitNet(embed_dim=8).eval()
    rng = np.random.default_rng(0)
    s, m = rng.normal(size=(4, D)).astype(np.float32), rng.normal(size=(6, D)).astype(np.float32)
    model.fit_statistics(s, m)
    a, b = model.speech_features(s), model.music_features(m)
    assert a.shape == (4, 8) and b.shape == (6, 8)
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)  # deep features are on the unit sphere
    fit = model.fit(a[:, None], b[None])
    assert fit.shape == (4, 6) and ((fit > 0) & (fit < 1)).all()
    model.save_pretrained(tmp_path / "m", metadata={"dataset": "test"})
    again = BGMFitNet.from_pretrained(tmp_path / "m")
    assert np.allclose(again.fit(again.speech_features(s)[:, None], again.music_features(m)[None]), fit, atol=1e-6)
    assert torch.equal(again.music_std, model.music_std)  # fitted statistics travel as buffers
    assert "# AV Studio background-music fit" in (tmp_path / "m" / "README.md").read_text()


def test_head_depends_on_the_pair_not_only_on_each_side():
    """The FC join sees a*b: the best track for one speech is not the best for every speech."""
    model = BGMFitNet.from_pretrained(DEFAULT_WEIGHTS)
    rng = np.random.default_rng(1)
    a = model.speech_features(rng.normal(size=(20, D)).astype(np.float32) * model.speech_std.numpy()
                              + model.speech_mean.numpy())
    b = model.music_features(rng.normal(size=(30, D)).astype(np.float32) * model.music_std.numpy()
                             + model.music_mean.numpy())
    best = model.fit(a[:, None], b[None]).argmax(axis=1)
    assert len(set(best.tolist())) > 1


def test_bundled_model_is_small_and_documented():
    weights = DEFAULT_WEIGHTS / "model.safetensors"
    assert weights.stat().st_size < 10 * 1024 * 1024
    card = (DEFAULT_WEIGHTS / "README.md").read_text()
    assert "What it imitates" in card and "rule" in card
    meta = json.loads((DEFAULT_WEIGHTS / "config.json").read_text())["training"]
    assert meta["label_sources"] == {"rule": meta["data"]["train_pairs"]}
    assert meta["heldout"]["head"]["auc"] > meta["heldout"]["random"]["auc"] + 0.1


def test_bundled_library_matches_the_bundled_model_and_stays_small():
    model = BGMFitNet.from_pretrained(DEFAULT_WEIGHTS)
    lib = bgm_fit.load_library(LIBRARY / "index", model)  # refused if built with other weights
    assert len(lib.tracks) >= 10
    files = [p for p in LIBRARY.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 5 * 1024 * 1024
    notice = (LIBRARY / "NOTICE").read_text()
    for track in (LIBRARY / "tracks").iterdir():
        assert track.name in notice  # every excerpt is attributed
    assert all(word in notice for word in ("GPL", "licence"))


def test_index_built_with_other_weights_is_refused(tmp_path):
    other = BGMFitNet(embed_dim=32)
    with pytest.raises(BGMFitError, match="other model weights"):
        bgm_fit.load_library(LIBRARY / "index", other)
    with pytest.raises(BGMFitError, match="not a BGM library index"):
        bgm_fit.load_library(tmp_path, other)


# ------------------------------------------------------------------------------------------------ rule
def _speech(emotion, speaker="03"):
    v, a = SPEECH_MOOD[emotion]
    return {"speaker": speaker, "emotion": emotion, "valence": v, "arousal": a}


def test_rule_prefers_mood_and_energy_agreement():
    speech = [_speech("sadness"), _speech("happiness"), _speech("neutral")]
    music = [{"valence": -0.7, "arousal": -0.7}, {"valence": 0.7, "arousal": 0.7}]
    rng = np.random.default_rng(0)
    s_vec = rng.normal(size=(3, D)).astype(np.float32)
    m_vec = np.tile(rng.normal(size=(1, D)).astype(np.float32), (2, 1))  # same measured sound: labels decide
    pairs = np.array([(0, 0), (0, 1), (1, 0), (1, 1)])
    fit, _ = rule_fit(speech, music, s_vec, m_vec, pairs)
    assert fit[0] > fit[1]  # sad speech: sad, calm music
    assert fit[3] > fit[2]  # happy speech: happy, energetic music


def test_rule_ratings_are_quintiles():
    fit = np.linspace(0, 1, 100)
    r = ratings_from_fit(fit)
    assert np.bincount(r, minlength=6)[1:].tolist() == [20] * 5 and r[0] == 1 and r[-1] == 5


# ------------------------------------------------------------------------------------------------ trainer
def test_auc_and_ndcg():
    ratings = np.array([5, 4, 1, 2, 3])
    assert auc(np.array([0.9, 0.8, 0.1, 0.2, 0.5]), ratings) == 1.0
    assert auc(np.array([0.1, 0.2, 0.9, 0.8, 0.5]), ratings) == 0.0
    assert auc(np.zeros(5), ratings) == 0.5  # ties count half
    gains = rating_target(np.array([5, 1, 1, 1, 1, 1]))
    groups = np.zeros(6)
    assert ndcg_at(np.array([1, 0, 0, 0, 0, 0.0]), gains, groups) == pytest.approx(1.0)
    assert ndcg_at(np.array([0, 1, 1, 1, 1, 1.0]), gains, groups) < 0.5


def test_holdout_keeps_whole_speakers_and_tracks_apart():
    assert speech_group("/x/emodb/03a01Fa.opus") == speech_group("/x/emodb/03b10Wc.opus") == "emodb:03"
    rows = [{"speech": f"/s/{spk}a0{k}Fa.opus", "bgm": f"/m/q/{t}.opus"}
            for spk in ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16") for k in range(3) for t in range(40)]
    train, test, out = split(rows, 0.3)
    assert out["speech_groups"] and out["track_groups"] and train and test
    test_speakers = {speech_group(r["speech"]) for r in test}
    train_speakers = {speech_group(r["speech"]) for r in train}
    assert not test_speakers & train_speakers
    assert not {r["bgm"] for r in test} & {r["bgm"] for r in train}
    assert all(held_out(g, 0.3) for g in test_speakers)


# ------------------------------------------------------------------------------------------------ segments
def test_choice_keeps_a_track_unless_switching_gains_enough():
    scores = np.array([[0.80, 0.70], [0.70, 0.74], [0.80, 0.70]])
    assert choose_tracks(scores, switch_penalty=0.05).tolist() == [0, 0, 0]  # 0.04 gain < 2 switches
    assert choose_tracks(scores, switch_penalty=0.0).tolist() == [0, 1, 0]
    big = np.array([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9]])
    assert choose_tracks(big, switch_penalty=0.05).tolist() == [0, 0, 1, 1]


def test_segments_cut_where_the_speech_changes_and_stay_long_enough():
    rng = np.random.default_rng(0)
    a, b = np.eye(8)[0], np.eye(8)[1]
    deep = np.stack([a] * 9 + [b] * 9) + rng.normal(0, 0.05, (18, 8))
    deep /= np.linalg.norm(deep, axis=1, keepdims=True)
    starts = np.arange(18) * 10.0
    segs = segment(starts, 180.0, deep, np.zeros(18))
    assert segs == [(0.0, 90.0), (90.0, 180.0)]
    assert segment(starts, 180.0, deep, np.zeros(18), min_segment_s=100.0) == [(0.0, 180.0)]
    same = np.tile(a, (18, 1)) + rng.normal(0, 0.01, (18, 8))
    assert all(hi - lo >= 30.0 for lo, hi in segment(starts, 180.0, same, np.zeros(18)))


def test_rule_baseline_speech_detector():
    v = np.zeros((2, D), np.float32)
    v[0, [I["rms_db_std"], I["speaking_rate_hz"], I["pause_ratio"]]] = (14.0, 3.7, 0.2)  # a voice
    v[1, [I["rms_db_std"], I["speaking_rate_hz"], I["pause_ratio"]]] = (4.0, 1.9, 0.0)  # a steady track
    assert bgm_fit.rule_speech_like(v).tolist() == [True, False]


# ------------------------------------------------------------------------------------------------ real media
def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "pipelines.bgm_fit", *map(str, args)], check=False, capture_output=True,
                          text=True, cwd=cwd, timeout=600)


def test_score_cli_json_and_mix(media, tmp_path):
    speech = media / "speech" / "ljspeech_LJ001-0001.wav"
    out = tmp_path / "mix.wav"
    proc = _cli("score", speech, "--top", 3, "--mix", out, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    seg = result["segments"]
    assert seg[0]["start_s"] == 0.0 and seg[-1]["end_s"] == pytest.approx(result["duration_s"], abs=0.1)
    for s in seg:
        assert 1 <= len(s["tracks"]) <= 3 and Path(s["tracks"][0]["path"]).is_file()
        scores = [t["score"] for t in s["tracks"]]
        assert scores == sorted(scores, reverse=True) and all(0 <= x <= 1 for x in scores)
        assert s["chosen"]["path"] in [t["path"] for t in s["tracks"]] and s["reasons"]
    assert result["chosen"] == [s["chosen"]["path"] for s in seg]
    assert out.is_file() and abs(result["mix"]["loudness_lufs"] - (-16.0)) <= 0.5
    assert result["mix"]["true_peak_dbtp"] <= -1.0 + 1e-3 and result["mix"]["duck_db"] == -15.0


@pytest.mark.parametrize("case", ["music", "silence", "too_long", "library"])
def test_score_refuses_bad_input_with_one_line(media, tmp_path, case):
    from media.io import write_audio

    speech = media / "speech" / "ljspeech_LJ001-0001.wav"
    args = ["score", speech]
    if case == "music":
        args = ["score", media / "music" / "wesnoth_loyalists.ogg"]
        expect = "not speech"
    elif case == "silence":
        write_audio(tmp_path / "quiet.wav", np.zeros(16000 * 12, np.float32), 16000)
        args = ["score", tmp_path / "quiet.wav"]
        expect = "no speech"
    elif case == "too_long":
        args += ["--max-seconds", 5]
        expect = "limit"
    else:
        (tmp_path / "lib").mkdir()
        args += ["--library", tmp_path / "lib"]
        expect = "not a BGM library index"
    proc = _cli(*args)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expect in errors[0] and "Traceback" not in proc.stderr


def test_index_cli_skips_broken_files_and_refuses_an_empty_library(media, tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in ("wesnoth_elf-land.ogg", "etr_race1-jt.ogg"):
        (lib / name).write_bytes((media / "music" / name).read_bytes())
    (lib / "broken.mp3").write_bytes(b"not audio at all" * 100)
    proc = _cli("index", lib, "--out", tmp_path / "index", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["n_tracks"] == 2 and [Path(s["path"]).name for s in info["skipped"]] == ["broken.mp3"]
    scored = _cli("score", media / "speech" / "ljspeech_LJ001-0002.wav", "--library", tmp_path / "index", "--json")
    assert scored.returncode == 0, scored.stderr
    paths = {t["path"] for s in json.loads(scored.stdout.strip().splitlines()[-1])["segments"] for t in s["tracks"]}
    assert paths <= {str((lib / n).resolve()) for n in ("wesnoth_elf-land.ogg", "etr_race1-jt.ogg")}
    (tmp_path / "empty").mkdir()
    proc = _cli("index", tmp_path / "empty", "--out", tmp_path / "index2")
    assert proc.returncode == 2 and "no audio files" in proc.stderr


def test_long_recording_is_segmented_and_mixed_as_video(media, tmp_path):
    """Four minutes of two different voices, as a video: segments of >= 30 s cover it, and the mix comes
    back as a video with the picture copied."""
    from media.io import probe, read_audio, write_video

    parts = [read_audio(p, sr=16000) for p in sorted((media / "speech").glob("ljspeech_*.wav"))]
    calm = np.concatenate(parts)[: 16000 * 120]
    loud = np.concatenate([read_audio(p, sr=16000) for p in sorted((media / "speech_emotion" / "emodb").glob("*W*.opus"))])
    audio = np.concatenate([calm, loud[: 16000 * 120]])
    frames = (np.full((64, 64, 3), i % 255, np.uint8) for i in range(int(len(audio) / 16000 * 5)))
    video = tmp_path / "talk.mp4"
    write_video(video, frames, 5.0, audio=audio, sr=16000)
    result = bgm_fit.fit_bgm(video, out_path=tmp_path / "out.mp4")
    segs = result.segments
    assert segs[0]["start_s"] == 0 and abs(segs[-1]["end_s"] - result.duration_s) < 0.1
    assert all(b["start_s"] == a["end_s"] for a, b in itertools.pairwise(segs))
    assert all(s["end_s"] - s["start_s"] >= 25.0 for s in segs)  # 30 s, less a pause snap of <= 5 s
    info = probe(result.output_path)
    assert info.has_video and info.has_audio and abs(info.duration - probe(video).duration) < 0.2
    assert result.mix and abs(result.mix["loudness_lufs"] + 16) <= 0.5
