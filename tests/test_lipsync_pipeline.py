"""The lip-sync pipeline and CLI (spec 05) on real photos and clips: length, frame rate, size, audio, pass-through, bad input."""
import json

import numpy as np
import pytest
from PIL import Image

from media.face import face_in_image, track_video
from media.features import loudness_per_frame
from media.io import (
    iter_video_frames,
    probe,
    read_audio,
    read_video,
    write_audio,
    write_video,
)
from pipelines import lipsync as ls
from pipelines.common import AVStudioError
from tests.bad_inputs import make_bad_inputs

PHOTO = "faces/fr_obama.jpg"
CLIP = "talking_video/pcavs_Input_00010.mp4"  # held out of training, 4.2 s, 224 x 224, 25 fps
SPEECH = "talking_video/pcavs_Pose_Source_517600055.mp4"  # another held-out speaker, 4.5 s
DRIVER = "talking_video/pcavs_Audio_Source_00373.mp4"  # a third held-out speaker, 5.1 s


@pytest.fixture(scope="module")
def speech_wav(media, tmp_path_factory):
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    write_audio(path, read_audio(media / SPEECH, sr=16000), 16000)
    return path


def test_pingpong_order():
    assert ls.pingpong_index(np.arange(10), 4).tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert ls.pingpong_index(np.arange(3), 1).tolist() == [0, 0, 0]


def test_every_source_frame_is_its_own_array(media, tmp_path):
    """The paste paints into the frames it is given, so no two output frames may share an array: a photo's
    frame is copied for each output frame, and so is a video frame the decoder repeats."""
    photo = np.zeros((8, 8, 3), np.uint8)
    source = ls.FaceSource("photo", tmp_path / "p.png", 25.0, None, 1, 8, 8, image=photo)
    frames = list(source.frames(np.zeros(3, np.int64)))
    assert len({id(f) for f in frames}) == 3 and all(f is not photo and np.array_equal(f, photo) for f in frames)
    clip = tmp_path / "clip.mp4"
    write_video(clip, [np.full((16, 16, 3), 40 * i, np.uint8) for i in range(4)], 25)
    frames = list(ls._decode_range(clip, 2, 6, 25.0))  # frames 4..6 do not exist: frame 3 is repeated
    assert len(frames) == 5 and len({id(f) for f in frames}) == 5
    assert all(np.array_equal(f, frames[1]) for f in frames[2:])


def test_photo_and_speech(media, speech_wav, tmp_path):
    out = tmp_path / "photo.mp4"
    result = ls.lipsync(media / PHOTO, speech_wav, out_path=out)
    info = probe(out)
    speech_s = len(read_audio(speech_wav, sr=16000)) / 16000
    w, h = Image.open(media / PHOTO).size
    assert result.source == "photo" and result.extension == "held"
    assert abs(info.fps - 25) < 1e-6 and info.has_audio
    assert abs(info.n_frames / info.fps - speech_s) < 1.5 / 25
    assert (info.width, info.height) == (w + w % 2, h + h % 2)
    assert result.face_frames == info.n_frames
    track, _ = track_video(out)
    assert track.found.mean() > 0.9


def test_a_photo_mouth_follows_the_speech(media, speech_wav, tmp_path):
    """A closed-mouth portrait: the mouth opening varies over the speech (a model that ignores the audio
    gives ~0) and rises with its loudness. (The README reports the spread over 20 photos: a portrait that
    smiles with an open mouth follows much less.)"""
    out = tmp_path / "photo2.mp4"
    ls.lipsync(media / "faces" / "fnp_angelina_jolie.jpg", speech_wav, out_path=out)
    track, fps = track_video(out)
    assert np.nanstd(track.mouth_opening()) > 0.01
    opening = track.lip_gap_ratio()
    loud = loudness_per_frame(read_audio(speech_wav, sr=16000), len(opening), fps)
    assert np.corrcoef(opening, loud)[0, 1] > 0.2


def test_a_video_mouth_follows_the_driving_speakers_mouth(media, tmp_path):
    """Driven by another held-out speaker, the output's mouth opens and closes as that speaker's own mouth
    did (face mesh on both videos), while the input's original mouth does not: the mouth comes from the
    speech, not from the picture."""
    driver = media / DRIVER
    speech = tmp_path / "driver.wav"
    write_audio(speech, read_audio(driver, sr=16000), 16000)
    out = tmp_path / "driven.mp4"
    ls.lipsync(media / CLIP, speech, out_path=out)
    gaps = {name: track_video(path)[0].lip_gap_ratio() for name, path in
            (("out", out), ("driver", driver), ("input", media / CLIP))}
    n = min(len(g) for g in gaps.values())
    follows = np.corrcoef(gaps["out"][:n], gaps["driver"][:n])[0, 1]
    original = np.corrcoef(gaps["input"][:n], gaps["driver"][:n])[0, 1]
    assert follows > 0.3 and follows > original + 0.2, (follows, original)
    assert np.nanstd(gaps["out"]) > 0.01  # the mouth moves about as much as a real one (README: 0.022 for both)


def test_clip_shorter_than_speech_is_played_forward_and_back(media, tmp_path):
    face = media / CLIP
    info_in = probe(face)
    long_speech = tmp_path / "long.wav"
    speech = read_audio(media / SPEECH, sr=16000)
    write_audio(long_speech, np.concatenate([speech, speech]), 16000)  # 9 s > 4.2 s of picture
    out = tmp_path / "clip.mp4"
    result = ls.lipsync(face, long_speech, out_path=out)
    info = probe(out)
    assert result.extension == "ping-pong"
    assert abs(info.fps - info_in.fps) < 1e-6 and (info.width, info.height) == (info_in.width, info_in.height)
    assert abs(info.n_frames - round(2 * len(speech) / 16000 * info_in.fps)) <= 1
    assert info.has_audio
    # the top of the picture follows the source order: output frame n_src + 3 shows source frame n_src - 5
    frames, _ = read_video(out)
    src, _ = read_video(face)
    n = len(src)
    k = n + 3
    top = slice(0, src.shape[1] // 4)
    err = [np.abs(frames[k, top].astype(int) - src[j, top].astype(int)).mean() for j in range(n)]
    assert int(np.argmin(err)) in (n - 6, n - 5, n - 4)


def test_inputs_made_in_their_own_thread_give_the_same_frames(media, speech_wav, tmp_path, monkeypatch):
    """The network's inputs are made a batch ahead in another thread (PREPARE_AHEAD): the frames handed to the
    encoder must be the ones made in the painting thread, in the same order. (The encoded files are compared
    no further: libx264 with its threads and lookahead does not always encode the same frames the same way.)"""
    model = ls.load_model()
    written: dict[int, list[np.ndarray]] = {}

    def keep(ahead):
        def write_video(path, frames, fps, **kwargs):
            written[ahead] = [np.array(f) for f in frames]
        return write_video

    for ahead in (0, 1):
        monkeypatch.setattr(ls, "PREPARE_AHEAD", ahead)
        monkeypatch.setattr(ls, "write_video", keep(ahead))
        ls.lipsync(media / CLIP, speech_wav, out_path=tmp_path / "out.mp4", model=model)
    assert len(written[0]) == len(written[1]) > 100
    assert all(np.array_equal(a, b) for a, b in zip(written[0], written[1]))


def test_clip_longer_than_speech_is_cut(media, tmp_path):
    short = tmp_path / "short.wav"
    write_audio(short, read_audio(media / SPEECH, sr=16000)[:16000], 16000)  # 1 s
    result = ls.lipsync(media / CLIP, short, out_path=tmp_path / "cut.mp4")
    assert result.extension == "cut" and result.n_frames == 25


def test_large_input_is_scaled_to_the_max_side(media, tmp_path, monkeypatch):
    """AVSTUDIO_MAX_SIDE caps video frames and photos alike, and the result says so."""
    from pipelines.common import Settings

    monkeypatch.setattr(ls, "settings", lambda: Settings(max_side=160))
    short = tmp_path / "short.wav"
    write_audio(short, read_audio(media / SPEECH, sr=16000)[:16000], 16000)
    video = ls.lipsync(media / CLIP, short, out_path=tmp_path / "v.mp4")  # 224 x 224
    photo = ls.lipsync(media / PHOTO, short, out_path=tmp_path / "p.mp4")
    for result in (video, photo):
        info = probe(result.output_path)
        assert max(info.width, info.height) <= 160 and (info.width, info.height) == (result.width, result.height)
        assert result.face_frames == result.n_frames and "was scaled to" in result.message()


def test_frames_without_a_face_pass_through(media, speech_wav, tmp_path):
    """A clip whose middle frames show no face: those frames come out as they went in."""
    photo = np.ascontiguousarray(np.asarray(Image.open(media / PHOTO).convert("RGB").resize((256, 320))))
    blank = np.full_like(photo, 90)
    blank[::16] = 200  # stripes: something to encode
    frames = [photo] * 20 + [blank] * 10 + [photo] * 20
    face = tmp_path / "gap.mp4"
    write_video(face, frames, 25)
    out = tmp_path / "gap_out.mp4"
    result = ls.lipsync(face, speech_wav, out_path=out)
    assert result.face_frames < result.n_frames
    got = [f for _, _, f in iter_video_frames(out)]
    src = [f for _, _, f in iter_video_frames(face)]
    for k in range(22, 28):  # blank frames: unchanged up to the codec
        mse = np.mean((got[k].astype(float) - src[k].astype(float)) ** 2)
        assert 10 * np.log10(255 ** 2 / max(mse, 1e-9)) > 35
    # a face frame: changed around the mouth, not above the nose
    lm = face_in_image(src[5])
    nose = int(lm[1, 1])
    assert np.abs(got[5][:nose].astype(int) - src[5][:nose].astype(int)).mean() < 2.0
    mouth = (slice(int(lm[13, 1]) - 10, int(lm[14, 1]) + 10), slice(int(lm[61, 0]), int(lm[291, 0])))
    changed = [np.abs(got[k][mouth].astype(int) - src[k][mouth].astype(int)).mean() for k in range(20)]
    assert max(changed) > 3.0


def test_silent_speech_is_accepted_and_said(media, tmp_path):
    silent = tmp_path / "silent.wav"
    write_audio(silent, np.zeros(32000, np.float32), 16000)
    result = ls.lipsync(media / PHOTO, silent, out_path=tmp_path / "silent.mp4")
    assert result.silent_audio and "silent" in result.message()


def test_preview_images(media):
    images = ls.preview(media / CLIP)
    info = probe(media / CLIP)
    for key in ("blur", "gradient", "keypoints"):
        assert images[key].shape == (info.height, info.width, 3) and images[key].dtype == np.uint8


def test_bad_inputs_get_clear_messages(media, speech_wav, tmp_path):
    bad = make_bad_inputs(tmp_path, media)
    for name in ("empty", "corrupt", "audio_only", "no_face"):
        path, phrase = bad[name]
        with pytest.raises(AVStudioError, match=phrase):
            ls.lipsync(path, speech_wav, out_path=tmp_path / f"{name}.mp4")
    blip = tmp_path / "blip.wav"
    write_audio(blip, np.zeros(160, np.float32), 16000)  # 10 ms: shorter than one frame
    with pytest.raises(AVStudioError, match="shorter than one frame"):
        ls.lipsync(media / PHOTO, blip, out_path=tmp_path / "blip.mp4")
    with pytest.raises(AVStudioError, match="could not be read"):
        ls.lipsync(media / PHOTO, bad["corrupt"][0], out_path=tmp_path / "x.mp4")
    with pytest.raises(AVStudioError, match="no audio"):
        ls.lipsync(media / PHOTO, bad["no_audio"][0], out_path=tmp_path / "y.mp4")
    landscape = tmp_path / "landscape.png"
    frame = next(iter_video_frames(media / "video" / "moviepy_fire2.mp4"))[2]
    Image.fromarray(frame).save(landscape)
    with pytest.raises(AVStudioError, match="no face"):
        ls.lipsync(landscape, speech_wav, out_path=tmp_path / "z.mp4")
    with pytest.raises(AVStudioError, match="limit"):
        ls.lipsync(media / PHOTO, speech_wav, out_path=tmp_path / "w.mp4", max_seconds=1)


def test_cli(media, speech_wav, tmp_path, capsys):
    out = tmp_path / "cli.mp4"
    assert ls.main([str(media / PHOTO), str(speech_wav), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["n_frames"] == probe(out).n_frames and summary["source"] == "photo"
    assert ls.main([str(tmp_path / "missing.mp4"), str(speech_wav), "--out", str(out)]) == 2
    assert "error:" in capsys.readouterr().err
