"""Music-driven face (spec 03): audio features, the encoder, control vectors, the warp, the pipeline and its CLI."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from media.face import LIPS, FaceTracker
from media.io import probe, read_audio, read_image, write_audio
from media.warp import MeshWarp
from models.audio_encoder import (
    DEFAULT_WEIGHTS,
    SAMPLE_RATE,
    AudioAutoencoder,
    AudioEncoderConfig,
    encoder_input,
    frame_weights,
    interpolate_points,
    mfcc_points,
)
from models.face_controls import BROWS, FACE_OVAL, detail_mask
from pipelines import music_face as mf

PHOTO = "faces/fnp_angelina_jolie.jpg"
CALM = "music/smstools_cello-phrase.wav"  # held out of the encoder's training
INTENSE = "music/librosa_admiralbob77_-_Choice_-_Drum-bass.ogg"  # held out too


@pytest.fixture(scope="module")
def encoder():
    return mf.load_model().encoder


@pytest.fixture(scope="module")
def controls():
    return mf.load_model().controls


@pytest.fixture(scope="module")
def photo(media):
    image = read_image(media / PHOTO)
    s = 480 / max(image.shape[:2])
    return cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def landmarks(photo):
    return mf.find_face(photo)[0]


def test_mfcc_points_every_100_ms_and_square_input(media):
    audio = read_audio(media / CALM, sr=SAMPLE_RATE)
    m = mfcc_points(audio)
    assert m.shape == (13, len(audio) // 1600)
    for n, points in ((1500, 0), (1700, 1), (16000, 10), (16001, 10)):  # one point per full 100 ms
        assert mfcc_points(audio[:n]).shape == (13, points)
    x = encoder_input(m, AudioEncoderConfig(), m.min(1), m.max(1))
    # librosa's MFCC of the same frames (the points were computed with it before; now with NumPy alone)
    import librosa

    padded = np.pad(audio[:len(audio) // 1600 * 1600], (0, 2048 - 1600))
    ref = librosa.feature.mfcc(y=padded, sr=SAMPLE_RATE, n_mfcc=13, n_fft=2048, win_length=1600, hop_length=1600,
                               center=False, n_mels=40, fmax=SAMPLE_RATE / 2)[:, :m.shape[1]]
    assert np.allclose(m, ref, rtol=1e-5, atol=1e-3)
    assert x.shape == (int(np.ceil(m.shape[1] / 16)), 3, 16, 16)
    assert x.min() >= 0 and x.max() <= 1
    assert np.all(x[:, :, 13:] == 0)  # coefficient axis padded with 0 to a square
    assert np.array_equal(x[:, 0], x[:, 2])  # one channel replicated


def test_encoder_gives_one_512_vector_per_time_point_and_fits_in_10_mb(encoder, tmp_path):
    model = AudioAutoencoder()
    x = torch.rand(2, 3, 16, 16)
    assert model.encode(x).shape == (2, 16, 512) and model(x).shape == x.shape
    assert len(model.encoder) == 8 and len(model.decoder) == 8
    assert (DEFAULT_WEIGHTS / "model.safetensors").stat().st_size < 10 * 2 ** 20
    encoder.save_pretrained(tmp_path / "enc")
    again = AudioAutoencoder.from_pretrained(tmp_path / "enc")
    assert torch.allclose(again.encode(x), encoder.encode(x))


def test_weights_have_no_rhythm_of_their_own(encoder):
    """Steady noise gives a steady weight: no jump where the encoder's 1.6 s segments meet."""
    audio = (np.random.default_rng(0).standard_normal(8 * SAMPLE_RATE) * 0.1).astype(np.float32)
    w = frame_weights(encoder, audio, 25)[25:-25]
    assert w.max() - w.min() < 0.1
    phase = (np.arange(len(w)) + 25) / 25 / 1.6 % 1
    profile = [w[(phase >= b / 4) & (phase < (b + 1) / 4)].mean() for b in range(4)]
    assert max(profile) - min(profile) < 0.03


def test_interpolation_is_distance_weighted():
    values = np.array([[0.0], [1.0], [3.0]])  # points centred at 0.064, 0.164, 0.264 s
    out = interpolate_points(values, 140, 500.0)  # frames every 2 ms from 0
    assert out[32, 0] == pytest.approx(0.0)  # 0.064 s: on point 0
    assert out[57, 0] == pytest.approx(0.5)  # 0.114 s: half way
    assert out[70, 0] == pytest.approx(0.76)  # 0.140 s: nearer point 1, which weighs more
    assert out[82, 0] == pytest.approx(1.0)
    assert out[0, 0] == 0.0 and out[139, 0] == 3.0  # before the first / after the last point: that point


def test_weights_keep_soft_small_and_intense_large(encoder, media):
    """Calibrated on the corpus, not per track: the same music played softer gets smaller weights, and an
    intense held-out track gets larger ones than a calm one."""
    calm = read_audio(media / CALM, sr=SAMPLE_RATE)
    intense = read_audio(media / INTENSE, sr=SAMPLE_RATE, end=20)
    w_calm, w_intense = frame_weights(encoder, calm, 25), frame_weights(encoder, intense, 25)
    w_soft = frame_weights(encoder, intense * 0.05, 25)
    assert len(w_calm) == int(len(calm) / SAMPLE_RATE * 25)
    assert 0 <= w_calm.min() and w_intense.max() <= 1
    assert w_intense.mean() > w_calm.mean() + 0.1
    assert w_soft.mean() < w_intense.mean() - 0.1


def test_control_vectors_touch_only_detail_channels_and_follow_the_face(controls, photo, landmarks):
    d = controls.displacement(landmarks, {"open_mouth": 1.0})
    assert np.all(d[~detail_mask()] == 0) and not detail_mask()[FACE_OVAL].any()
    assert d[14, 1] > 0.5  # the lower lip goes down by some pixels
    brows = controls.displacement(landmarks, {"raised_brows": 1.0})
    assert brows[BROWS, 1].mean() < -0.5 and np.all(brows[LIPS] == 0)  # brows go up; the mouth stays
    big = cv2.resize(photo, None, fx=2, fy=2)
    d2 = controls.displacement(mf.find_face(big)[0], {"open_mouth": 1.0})
    assert d2[14, 1] == pytest.approx(2 * d[14, 1], rel=0.1)  # scales with the face


def test_warp_moves_the_mouth_and_nothing_outside_the_face(controls, photo, landmarks):
    warp = MeshWarp(photo, landmarks)
    field = warp.field(controls.displacement(landmarks, {"open_mouth": 1.5}))
    assert np.array_equal(warp.warp(field, 0.0), photo)
    out = warp.warp(field, 1.0)
    # outside the face outline (a 2-pixel margin) every pixel is the photo's own, box or not
    hull = cv2.convexHull(np.round(landmarks[FACE_OVAL, :2]).astype(np.int32))
    face = cv2.dilate(cv2.fillConvexPoly(np.zeros(photo.shape[:2], np.uint8), hull, 1), np.ones((5, 5), np.uint8))
    assert np.array_equal(out[face == 0], photo[face == 0])
    assert not np.array_equal(out[face == 1], photo[face == 1])
    with FaceTracker(static=True) as tracker:
        before, after = tracker.detect(photo)[0], tracker.detect(out)[0]
    assert mf.lip_gap(after) > mf.lip_gap(before) + 3  # the face mesh sees the mouth open
    oval = np.median(np.linalg.norm(after[FACE_OVAL, :2] - before[FACE_OVAL, :2], axis=1))
    assert oval < 0.02 * (before[:, 1].max() - before[:, 1].min())


def test_warp_renders_only_what_moves_and_its_grid_map_matches_the_per_pixel_one(controls, photo, landmarks):
    warp = MeshWarp(photo, landmarks)
    still = warp.field(np.zeros((len(landmarks), 2), np.float32))
    assert still.support is None and np.array_equal(warp.warp(still, 1.0), photo)
    field = warp.field(controls.displacement(landmarks, {"smile": 1.0}))
    x0, y0, x1, y1 = field.support
    assert 0 < (x1 - x0) * (y1 - y0) < 0.5 * field.values.shape[0] * field.values.shape[1]  # the mouth, not the box
    exact, grid = warp.warp(field, 1.0, grid=1), warp.warp(field, 1.0, grid=4)
    changed = (exact != photo).any(axis=2) | (grid != photo).any(axis=2)
    far = np.abs(exact[changed].astype(int) - grid[changed]).max(axis=1) > 8
    assert changed.any() and far.mean() < 0.1  # the bilinear map errs near triangle edges only (7 % here;
    # a grid of 8 pixels: 12 %, of 16: 21 %)


def test_pipeline_on_a_real_photo_and_music(media, tmp_path):
    music = tmp_path / "music.wav"
    write_audio(music, read_audio(media / INTENSE, sr=SAMPLE_RATE, end=4.0), SAMPLE_RATE)
    out = tmp_path / "out.mp4"
    r = mf.music_face(media / PHOTO, music, out_path=out, expression="smile+open_mouth", fps=25)
    info = probe(out)
    assert info.has_audio and info.fps == pytest.approx(25) and info.n_frames == r.n_frames == 100
    assert (info.width, info.height) == (r.width + r.width % 2, r.height + r.height % 2)
    assert len(r.weights) == r.n_frames and 0 <= min(r.weights) and max(r.weights) <= 1
    assert abs(info.duration - 4.0) < 0.1


def test_cli_json_and_bad_inputs(media, tmp_path):
    music = tmp_path / "music.wav"
    write_audio(music, read_audio(media / CALM, sr=SAMPLE_RATE, end=2.0), SAMPLE_RATE)
    cmd = [sys.executable, "-m", "pipelines.music_face", str(media / PHOTO), str(music),
           "--out", str(tmp_path / "o.mp4"), "--json", "--fps", "20"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["fps"] == 20 and len(result["weights"]) == result["n_frames"] == 40
    silent = tmp_path / "silent.wav"
    write_audio(silent, np.zeros(32000, np.float32), SAMPLE_RATE)
    landscape = tmp_path / "landscape.png"
    cv2.imwrite(str(landscape), np.full((120, 160, 3), 90, np.uint8))
    cases = {"no face": (landscape, music), "silent": (media / PHOTO, silent),
             "not a readable image": (music, music), "limit": (media / PHOTO, media / INTENSE),
             "no audio track": (media / PHOTO, media / "talking_video/no_audio/dreamtalk_MEAD_M030_front_happy_level3_001.mp4")}
    for phrase, (face, audio) in cases.items():
        extra = ["--max-seconds", "5"] if phrase == "limit" else []
        done = subprocess.run([*cmd[:3], str(face), str(audio), "--out", str(tmp_path / "x.mp4"), "--json", *extra],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 2 and phrase in json.loads(done.stdout.strip().splitlines()[-1])["error"], done.stderr
        assert "Traceback" not in done.stderr


def test_several_faces_use_the_largest_and_say_so(media, tmp_path):
    group = read_image(media / "faces" / "st_people_0.png")
    small = cv2.resize(group, None, fx=0.5, fy=0.5)
    both = np.zeros((group.shape[0], group.shape[1] + small.shape[1], 3), np.uint8)
    both[:, :group.shape[1]] = group
    both[:small.shape[0], group.shape[1]:] = small
    path = tmp_path / "two.png"
    cv2.imwrite(str(path), both[..., ::-1])
    music = tmp_path / "m.wav"
    write_audio(music, read_audio(media / INTENSE, sr=SAMPLE_RATE, end=1.0), SAMPLE_RATE)
    r = mf.music_face(path, music, out_path=tmp_path / "two.mp4")
    assert r.faces_found == 2 and "largest" in r.message()


def test_unknown_expression_and_strength_are_refused():
    with pytest.raises(mf.MusicFaceError, match="unknown expression"):
        mf.parse_expression("frown")
    with pytest.raises(mf.MusicFaceError, match="strength"):
        mf.parse_expression("smile", 9)
    assert mf.parse_expression("smile+raised_brows", 2) == {"smile": 2.0, "raised_brows": 2.0}
