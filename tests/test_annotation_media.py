"""Tests for the annotation suite's media: voice-over-music mixing (media.mix), import and hum checks and
hum-vs-track similarity (annotation.checks). Synthetic signals and files first; then the real media."""
from __future__ import annotations

import io
import os
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from annotation.checks import (
    HUM_SR,
    ImportRefusal,
    check_hum,
    check_media,
    hum_disagrees,
    hum_track_similarity,
)
from annotation.errors import AnnotationError
from media.errors import AVStudioError
from media.io import MediaError, read_audio, write_audio, write_video
from media.mix import CEILING_DBFS, duck_mix, mix_files

SR = 16000


# ------------------------------------------------------------------------------------------------
# synthetic signals and files
# ------------------------------------------------------------------------------------------------
def tone(freqs, seconds: float, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    """A sum of sines (each with 3 decaying harmonics), ``amp`` peak-ish, float32."""
    t = np.arange(round(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * f * k * t) / k for f in np.atleast_1d(freqs) for k in (1, 2, 3))
    return (amp * x / np.max(np.abs(x))).astype(np.float32)


def speechlike(sr: int = SR, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Word-like noise bursts (0.25 s, 0.1 s gaps) for 2 s, a 2 s pause, 1 s more words; and the mask of
    the word samples."""
    rng = np.random.default_rng(seed)
    n = 5 * sr
    x, words = np.zeros(n), np.zeros(n, bool)
    for start in [*np.arange(0.0, 2.0, 0.35), *np.arange(4.0, 5.0, 0.35)]:
        a, b = round(start * sr), min(n, round((start + 0.25) * sr))
        words[a:b] = True
        x[a:b] = rng.standard_normal(b - a) * 0.1 * np.hanning(b - a) ** 0.3
    return x.astype(np.float32), words


def wav_bytes(x: np.ndarray, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.asarray(x, np.float32), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def webm_opus_bytes(x: np.ndarray, sr: int = 48000) -> bytes:
    """``x`` (at 48 kHz) as a webm/opus recording, as Chromium's MediaRecorder makes them."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="webm") as out:
        stream = out.add_stream("libopus", rate=sr, layout="mono")
        for i in range(0, len(x), 960):
            frame = av.AudioFrame.from_ndarray(np.asarray(x[None, i:i + 960], np.float32), format="flt",
                                               layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = sr, i, Fraction(1, sr)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buf.getvalue()


def melody(notes_midi, note_s: float = 0.4, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    """A hummed melody: one note after the other, harmonics and a little vibrato."""
    out = []
    for m in notes_midi:
        t = np.arange(round(note_s * sr)) / sr
        f = 440.0 * 2 ** ((m - 69) / 12) * (1 + 0.005 * np.sin(2 * np.pi * 5 * t))
        phase = 2 * np.pi * np.cumsum(f) / sr
        note = sum(np.sin(k * phase) / k ** 2 for k in (1, 2, 3)) * np.hanning(len(t)) ** 0.2
        out.append(note)
    x = np.concatenate(out)
    return (amp * x / np.max(np.abs(x))).astype(np.float32)


def chords(root_midi: int, seconds: float = 4.0, sr: int = SR) -> np.ndarray:
    """A major triad on ``root_midi`` over three octaves: a music track in that key."""
    freqs = [440.0 * 2 ** ((root_midi + step + 12 * octave - 69) / 12) for step in (0, 4, 7) for octave in (0, 1, 2)]
    return tone(freqs, seconds, sr)


C_MAJOR_MELODY = [60, 64, 67, 64, 72, 67, 64, 60] * 2  # C E G E C' G E C


def lufs(x: np.ndarray, sr: int = SR) -> float:
    return pyloudnorm.Meter(sr).integrated_loudness(np.asarray(x, np.float64))


def rms_db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2) + 1e-20)


# ------------------------------------------------------------------------------------------------
# media.mix
# ------------------------------------------------------------------------------------------------
def _bgm_part(mix: np.ndarray, speech: np.ndarray, gains: dict) -> np.ndarray:
    """The music in ``mix``: the mix minus the speech with its logged gains."""
    return mix - speech * 10 ** ((gains["speech_gain_db"] + gains["peak_gain_db"]) / 20)


def test_duck_mix_matches_loudness_and_logs_the_gains():
    speech, _ = speechlike()
    bgm = tone([220, 277, 330], 7.0, amp=0.05)
    mix, gains = duck_mix(speech, bgm, SR, target_lufs=-23.0)
    assert mix.dtype == np.float32 and mix.shape == speech.shape
    assert {"speech_gain_db", "bgm_gain_db", "duck_db", "voice_fraction", "peak_gain_db", "speech_lufs",
            "bgm_lufs", "target_lufs"} <= gains.keys()
    assert gains["speech_lufs"] == pytest.approx(lufs(speech), abs=0.01)
    assert gains["bgm_lufs"] == pytest.approx(lufs(bgm[: len(speech)]), abs=0.1)  # the part that plays
    assert gains["speech_gain_db"] == pytest.approx(-23.0 - gains["speech_lufs"], abs=0.01)
    assert gains["bgm_gain_db"] == pytest.approx(-23.0 - gains["bgm_lufs"], abs=0.01)
    assert gains["peak_gain_db"] == 0.0 and not gains["bgm_looped"]
    speech_in_mix = mix - _bgm_part(mix, speech, gains)
    assert lufs(speech_in_mix) == pytest.approx(-23.0, abs=0.1)


def test_duck_mix_ducks_the_music_while_the_voice_speaks():
    speech, _ = speechlike()
    bgm = tone([220, 277, 330], 5.0, amp=0.05)
    mix, gains = duck_mix(speech, bgm, SR, duck_db=-12.0)
    music = _bgm_part(mix, speech, gains)
    level = 10 * np.log10(10 ** (gains["bgm_gain_db"] / 10) * np.mean(bgm.astype(np.float64) ** 2))
    during_words = music[round(0.5 * SR): round(1.8 * SR)]  # words and the gaps between them
    in_the_pause = music[round(3.0 * SR): round(3.8 * SR)]  # a second after the last word
    assert rms_db(during_words) == pytest.approx(level - 12.0, abs=1.0)
    assert rms_db(in_the_pause) == pytest.approx(level, abs=0.5)
    # ducked: 2 s + 1 s of words, plus lead-in and hangover; not the 2 s pause
    assert 0.6 < gains["voice_fraction"] < 0.8


def test_duck_mix_loops_short_music_and_trims_long_music():
    speech, _ = speechlike()
    short = tone(330, 1.3, amp=0.1)
    mix, gains = duck_mix(speech, short, SR)
    assert gains["bgm_looped"] and mix.shape == speech.shape
    music = _bgm_part(mix, speech, gains)
    assert rms_db(music[round(3.0 * SR): round(3.8 * SR)]) > -40  # still playing after 1.3 s
    _, gains = duck_mix(speech, tone(330, 20.0, amp=0.1), SR)
    assert not gains["bgm_looped"] and gains["duration_s"] == 5.0


def test_duck_mix_limits_the_peak_and_logs_it():
    speech, _ = speechlike()
    speech = np.clip(speech * 8, -1, 1)
    mix, gains = duck_mix(speech, tone([220, 330], 5.0, amp=0.9), SR, target_lufs=-6.0, bgm_offset_lu=3.0)
    assert gains["peak_gain_db"] < 0
    assert np.max(np.abs(mix)) <= 10 ** (CEILING_DBFS / 20) + 1e-6


@pytest.mark.parametrize("silent, phrase", [("speech", "the speech is silent"), ("bgm", "the music is silent")])
def test_duck_mix_refuses_silence(silent, phrase):
    speech, bgm = speechlike()[0], tone(220, 5.0, amp=0.1)
    if silent == "speech":
        speech = np.zeros_like(speech)
    else:
        bgm = np.zeros_like(bgm)
    with pytest.raises(MediaError, match=phrase):
        duck_mix(speech, bgm, SR)


def test_duck_mix_refuses_bad_arrays():
    with pytest.raises(MediaError, match="too short"):
        duck_mix(np.full(100, 0.1, np.float32), tone(220, 1.0), SR)
    with pytest.raises(MediaError, match="1-D"):
        duck_mix(np.zeros((2, SR), np.float32), tone(220, 1.0), SR)


def test_mix_files_writes_the_mix_and_each_track_at_its_gain(tmp_path):
    speech, _ = speechlike(sr=22050)
    write_audio(tmp_path / "speech.wav", speech, 22050)
    write_audio(tmp_path / "music.wav", tone([220, 277], 3.0, sr=22050, amp=0.2), 22050)
    out = mix_files(tmp_path / "speech.wav", tmp_path / "music.wav", tmp_path / "out" / "mix.wav", sr=22050,
                    max_seconds=60)
    assert Path(out["mix_path"]).name == "mix.wav"
    assert Path(out["speech_track_path"]).name == "mix_speech.wav"
    assert Path(out["bgm_track_path"]).name == "mix_bgm.wav"
    mix, sr = sf.read(out["mix_path"], dtype="float32")
    alone_speech, _ = sf.read(out["speech_track_path"], dtype="float32")
    alone_bgm, _ = sf.read(out["bgm_track_path"], dtype="float32")
    assert sr == 22050 and len(mix) == len(alone_speech) == len(alone_bgm) == len(speech)
    assert np.max(np.abs(alone_speech + alone_bgm - mix)) < 3e-4  # 16-bit rounding only
    assert out["bgm_looped"] and out["target_lufs"] == -23.0
    with pytest.raises(MediaError, match="limit is 2 s"):
        mix_files(tmp_path / "speech.wav", tmp_path / "music.wav", tmp_path / "mix.wav", sr=22050, max_seconds=2)
    with pytest.raises(MediaError, match=r"\.wav"):
        mix_files(tmp_path / "speech.wav", tmp_path / "music.wav", tmp_path / "mix.mp3", sr=22050)


# ------------------------------------------------------------------------------------------------
# check_media
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A media root of small synthetic files, and a file outside it."""
    base = tmp_path_factory.mktemp("annotation_media")
    media = base / "root"
    (media / "clips").mkdir(parents=True)
    frames = [np.full((64, 64, 3), 10 * k % 255, np.uint8) for k in range(75)]  # 3 s at 25 fps
    write_video(media / "clips" / "clip.mp4", frames, 25.0, audio=tone(440, 3.0), sr=SR)
    write_video(media / "clips" / "silent_film.mp4", frames, 25.0)
    data = (media / "clips" / "clip.mp4").read_bytes()  # moov at the front: a cut keeps the index
    (media / "clips" / "cut.mp4").write_bytes(data[: len(data) // 2])
    write_audio(media / "tone.wav", tone(440, 2.0), SR)
    (media / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(20000))
    (media / "empty.wav").write_bytes(b"")
    write_audio(base / "outside.wav", tone(440, 1.0), SR)
    os.symlink(base / "outside.wav", media / "link.wav")
    os.symlink(media / "tone.wav", media / "inside_link.wav")
    # two 0.1 s audio frames 10 hours apart: a tiny file whose container declares 10 h
    with av.open(str(media / "ten_hours.mkv"), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000, layout="mono")
        for pts in (0, 10 * 3600 * 8000):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 8000, pts, Fraction(1, 8000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return media


def test_check_media_accepts_good_files_and_returns_their_duration(root):
    assert check_media("clips/clip.mp4", "video", media_root=root, max_seconds=60) == pytest.approx(3.0, abs=0.05)
    assert check_media("clips/clip.mp4", "audio", media_root=root, max_seconds=60) == pytest.approx(3.0, abs=0.1)
    assert check_media("tone.wav", "audio", media_root=root, max_seconds=60) == pytest.approx(2.0, abs=0.01)
    assert check_media(root / "tone.wav", "audio", media_root=root, max_seconds=60) == pytest.approx(2.0, abs=0.01)
    assert check_media("inside_link.wav", "audio", media_root=root, max_seconds=60) == pytest.approx(2.0, abs=0.01)


@pytest.mark.parametrize("path, kind, phrase", [
    ("clips/cut.mp4", "video", r"truncated: decodes 1\.\d s of the 3\.0 s it declares"),
    ("clips/silent_film.mp4", "audio", "no audio track"),
    ("tone.wav", "video", "no video track"),
    ("link.wav", "audio", "outside the media root"),
    ("../outside.wav", "audio", "outside the media root"),
    ("clips/../../outside.wav", "audio", "outside the media root"),
    ("missing.mp4", "video", "file not found"),
    ("clips", "video", "not a file"),
    ("empty.wav", "audio", "empty"),
    ("garbage.mp4", "video", "does not decode: "),
    ("tone.wav", "image", "unknown media kind"),
])
def test_check_media_refuses_with_one_line_naming_the_relative_path(root, path, kind, phrase):
    with pytest.raises(AnnotationError, match=phrase) as err:
        check_media(path, kind, media_root=root, max_seconds=60)
    message = str(err.value)
    assert "\n" not in message and str(root.parent) not in message
    if kind != "image":
        assert message.startswith(f"'{path}': ")
    refusal = ImportRefusal(path, message)  # what the import reports per file
    assert refusal.reason == message


def test_check_media_refuses_a_ten_hour_file_from_its_header(root):
    start = time.perf_counter()
    with pytest.raises(AnnotationError, match=r"'ten_hours.mkv': 10:00:00 long; the limit is 10 min$"):
        check_media("ten_hours.mkv", "audio", media_root=root, max_seconds=600)
    assert time.perf_counter() - start < 1.0


def test_check_media_refuses_files_over_the_limit(root):
    with pytest.raises(AnnotationError, match=r"'tone.wav': 0:02 long; the limit is 1.5 s$"):
        check_media("tone.wav", "audio", media_root=root, max_seconds=1.5)


def test_errors_are_user_facing():
    assert issubclass(AnnotationError, AVStudioError) and not issubclass(AnnotationError, ValueError)


# ------------------------------------------------------------------------------------------------
# check_hum
# ------------------------------------------------------------------------------------------------
def test_check_hum_accepts_a_wav_hum():
    hum = melody(C_MAJOR_MELODY, sr=22050)
    data = wav_bytes(hum, 22050)
    result = check_hum(data)
    assert result.ext == "wav" and result.sample_rate == 22050 and result.size == len(data)
    assert result.duration_s == pytest.approx(len(hum) / 22050, abs=1e-3)
    assert len(result.sha256) == 64 and result.warnings == [] and result.clipped_fraction == 0
    assert -20 < result.rms_dbfs < -10
    assert result.audio.dtype == np.float32 and len(result.audio) == pytest.approx(result.duration_s * HUM_SR, abs=2)


def test_check_hum_accepts_a_webm_opus_recording():
    result = check_hum(webm_opus_bytes(melody(C_MAJOR_MELODY, sr=48000)))
    assert result.ext == "webm" and result.sample_rate == 48000
    assert result.duration_s == pytest.approx(16 * 0.4, abs=0.05)
    assert result.warnings == []


def test_check_hum_warns_about_clipping_without_refusing():
    hum = np.clip(melody(C_MAJOR_MELODY) * 4, -1, 1)
    result = check_hum(wav_bytes(hum))
    assert result.clipped_fraction > 0.005
    assert len(result.warnings) == 1 and "clipped" in result.warnings[0]


def _click_in_silence() -> np.ndarray:
    x = np.zeros(3 * SR, np.float32)
    x[SR: SR + 80] = 0.9
    return x


@pytest.mark.parametrize("data, phrase", [
    (wav_bytes(np.zeros(3 * SR, np.float32)), "the recording is silent: check the microphone"),
    (wav_bytes(np.random.default_rng(1).standard_normal(3 * SR).astype(np.float32) * 10 ** (-60 / 20)),
     "silent"),
    (wav_bytes(_click_in_silence()), "silent"),
    (wav_bytes(melody([60], note_s=0.5)), r"too short \(0\.5 s; at least 1 s\)"),
    (wav_bytes(tone(220, 31.0, amp=0.2)), "too long"),
    (b"", "empty"),
    (np.random.default_rng(0).bytes(20000), "does not decode"),
    (b"x" * 5_000_001, r"too big \(5\.0 MB; the limit is 5 MB\)"),
])
def test_check_hum_refuses(data, phrase):
    with pytest.raises(AnnotationError, match=phrase):
        check_hum(data)


# ------------------------------------------------------------------------------------------------
# similarity
# ------------------------------------------------------------------------------------------------
def test_a_hum_is_closer_to_a_track_in_its_key():
    hum = melody(C_MAJOR_MELODY)
    in_key, off_key = chords(48), chords(54)  # C major, F# major
    near, far = hum_track_similarity(hum, in_key, SR), hum_track_similarity(hum, off_key, SR)
    assert 0 <= far < near <= 1 and near - far > 0.3
    flagged, scores = hum_disagrees(hum, off_key, [in_key], SR)
    assert flagged and scores["chosen"] == far and scores["best"] == near
    assert not hum_disagrees(hum, in_key, [off_key], SR)[0]
    assert not hum_disagrees(hum, off_key, [], SR)[0]
    # no melody at all: nothing to compare, nothing flagged
    assert hum_track_similarity(np.zeros(2 * SR, np.float32), in_key, SR) == 0.0


# ------------------------------------------------------------------------------------------------
# real media
# ------------------------------------------------------------------------------------------------
def test_real_videos_and_tracks_are_accepted(media):
    for rel, kind in [("video/moviepy_fire2.mp4", "video"), ("video/mmaction2_test_makeup.avi", "video"),
                      ("video/liveportrait_s13.mp4", "audio"), ("music/warzone2100_ost_track3.opus", "audio"),
                      ("music/audiocraft_bach.mp3", "audio")]:
        assert check_media(rel, kind, media_root=media, max_seconds=600) > 1.0


def test_real_truncated_and_silent_videos_are_refused(media, tmp_path):
    for name in ("moviepy_fire2.mp4", "liveportrait_s13.mp4"):  # index at the front / at the end
        data = (media / "video" / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(AnnotationError, match=r"truncated: decodes 0\.\d s of the 2\.4 s it declares"):
        check_media("moviepy_fire2.mp4", "video", media_root=tmp_path, max_seconds=600)
    with pytest.raises(AnnotationError, match="does not decode"):
        check_media("liveportrait_s13.mp4", "video", media_root=tmp_path, max_seconds=600)
    with pytest.raises(AnnotationError, match="no audio track"):
        check_media("video/mmaction2_demo_armwrestling.mp4", "audio", media_root=media, max_seconds=600)
    with pytest.raises(AnnotationError, match="limit is 5 s"):
        check_media("video/moviepy_chaplin.mp4", "video", media_root=media, max_seconds=5)


def test_real_hums_pass_the_hum_check(media):
    for path in sorted((media / "hum").glob("*.wav")):
        result = check_hum(path.read_bytes())
        assert result.ext == "wav" and result.warnings == [] and result.rms_dbfs > -30, path.name


def test_real_hum_is_closest_to_itself(media):
    hum = read_audio(media / "hum" / "vocadito_14.wav", sr=SR)
    cello = read_audio(media / "music" / "smstools_cello-phrase.wav", sr=SR, end=30)
    city = read_audio(media / "music" / "lincity_RobertvanHerk_CityBlues.ogg", sr=SR, end=30)
    start = time.perf_counter()
    flagged, scores = hum_disagrees(hum, hum, [cello, city], SR)  # the hum's own recording as the track
    elapsed = time.perf_counter() - start
    assert not flagged and scores["chosen"] == scores["best"] > 0.8
    flagged, scores = hum_disagrees(hum, cello, [hum, city], SR)
    assert flagged and scores["best"] - scores["chosen"] > 0.3
    assert elapsed < 20  # three 30 s analyses; about 1 s on a laptop core after librosa's first call


def test_real_speech_over_music_mix(media, tmp_path):
    out = mix_files(media / "speech" / "ljspeech_LJ001-0001.wav", media / "music" / "wesnoth_loyalists.ogg",
                    tmp_path / "mix.wav", sr=44100, max_seconds=60)
    assert 0.5 < out["voice_fraction"] <= 1.0 and not out["bgm_looped"]
    speech, sr = sf.read(out["speech_track_path"], dtype="float64")
    assert lufs(speech, sr) == pytest.approx(-23.0 + out["peak_gain_db"], abs=0.2)
    mix, _ = sf.read(out["mix_path"], dtype="float64")
    assert np.max(np.abs(mix)) <= 10 ** (CEILING_DBFS / 20) + 1e-3
