"""Face tracking (MediaPipe face mesh) on real photos and video, and frames without a face."""
import cv2
import numpy as np
import pytest
from PIL import Image

from media.face import (
    LEFT_EYE,
    LIPS,
    RIGHT_EYE,
    FaceTracker,
    NoFaceError,
    crop_faces,
    face_in_image,
    track_and_crop_gray,
    track_video,
)
from media.io import read_video
from models.syncnet import to_gray


def load(path, max_side=640):
    img = Image.open(path).convert("RGB")
    img.thumbnail((max_side, max_side))
    return np.asarray(img)


def test_landmarks_on_a_real_photo(media):
    img = load(media / "faces" / "fr_obama.jpg")
    lm = face_in_image(img)
    assert lm is not None and lm.shape == (478, 3)
    x0, y0 = lm[:, :2].min(0)
    x1, y1 = lm[:, :2].max(0)
    h, w = img.shape[:2]
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    assert (x1 - x0) > 0.2 * w  # a portrait: the face is large
    lips = lm[LIPS, :2]
    # the lips are in the lower half of the face box, horizontally inside it
    assert np.all(lips[:, 1] > (y0 + y1) / 2) and np.all((lips[:, 0] > x0) & (lips[:, 0] < x1))


def test_no_face_is_flagged_not_fatal(media):
    frames, _ = read_video(next((media / "video").glob("mmaction2_demo_armwrestling.mp4")), max_frames=3)
    blank = np.full((240, 320, 3), 128, np.uint8)
    with FaceTracker() as tracker:
        assert tracker.detect(blank) == []
        track = tracker.track([blank, blank])
    assert not track.found.any()
    assert np.isnan(track.landmarks).all()
    with pytest.raises(NoFaceError, match="no face"):
        crop_faces([blank, blank], track)


def test_tracking_a_real_clip_with_a_missing_face(media):
    frames, fps = read_video(media / "talking_video" / "pcavs_Input_00010.mp4", max_frames=40)
    frames = frames.copy()
    frames[20] = 0  # a black frame in the middle
    with FaceTracker() as tracker:
        track = tracker.track(frames)
    assert track.found.sum() == 39 and not track.found[20]
    crops = crop_faces(frames, track, "lower")
    assert crops.shape == (40, 48, 96, 3)
    mouths = crop_faces(frames, track, "mouth")
    assert mouths.shape == (40, 32, 64, 3)
    # the crop geometry is interpolated over the missing frame: crops 19 and 21 are alike
    assert np.abs(crops[19].astype(int) - crops[21].astype(int)).mean() < 25
    # the mouth moves while speaking: the opening varies over the clip
    opening = track.mouth_opening()
    assert np.nanmax(opening) - np.nanmin(opening) > 0.05


def test_tracking_every_other_frame_interpolates_between(media):
    frames, _ = read_video(media / "talking_video" / "pcavs_Input_00010.mp4", max_frames=41)
    frames = frames.copy()
    frames[30] = 0  # no face: frames 29 and 31, between it and its looked-at neighbours, stay without one
    with FaceTracker() as tracker:
        every = tracker.track(frames)
    with FaceTracker() as tracker:
        half = tracker.track(frames, every=2)
    assert len(half) == 41 and list(half.found) == [i not in (29, 30, 31) for i in range(41)]
    assert not every.found[30] and every.found.sum() == 40
    # the boxes follow the per-frame ones: within 2 % of the face's height on every frame
    height = np.nanmax(every.boxes[:, 3] - every.boxes[:, 1])
    both = half.found & every.found
    assert np.abs(half.boxes[both] - every.boxes[both]).max() < 0.02 * height
    assert np.abs(half.boxes[1] - every.boxes[1]).max() > 0  # frame 1 was interpolated, not looked at


def test_largest_face_by_default_all_on_request(media):
    big = load(media / "faces" / "fr_obama.jpg", 480)
    small = load(media / "faces" / "st_happy.png", 110)
    canvas = np.zeros((max(big.shape[0], small.shape[0]), big.shape[1] + small.shape[1] + 40, 3), np.uint8)
    canvas[:big.shape[0], :big.shape[1]] = big
    canvas[:small.shape[0], big.shape[1] + 40:] = small
    faces = face_in_image(canvas, all_faces=True)
    assert len(faces) == 2
    largest = face_in_image(canvas)
    assert largest[:, 0].mean() < big.shape[1]  # the big face is on the left
    with FaceTracker() as tracker:
        tracks = tracker.track([canvas, canvas, canvas], all_faces=True)
    assert len(tracks) == 2 and all(t.found.all() for t in tracks)


def test_track_video_streams_a_file(media):
    track, fps = track_video(media / "talking_video" / "lrs2_deepavsr_00001.mp4")
    assert fps == pytest.approx(25.0)
    assert len(track) == pytest.approx(4.86 * 25, abs=2)
    assert track.found.mean() > 0.9


@pytest.mark.parametrize("every", [1, 2])
def test_crops_in_one_decoding_pass_are_the_crops_of_two(media, every, monkeypatch):
    """track_and_crop_gray decodes once; its crops are crop_faces' (cut from the decoded frames after tracking),
    in grey, up to resampling twice and the luma's rounding; a frame its pre-crop cannot serve is cut again."""
    from media import face

    clip = media / "talking_video" / "lrs2_deepavsr_00001.mp4"
    track, gray, fps = track_and_crop_gray(clip, every=every)
    frames, _ = read_video(clip)
    with FaceTracker() as tracker:
        expected = tracker.track(frames, every=every)
    np.testing.assert_array_equal(track.landmarks, expected.landmarks)  # the same mesh on the same frames
    assert fps == pytest.approx(25.0) and gray.shape == (len(frames), 48, 96)
    direct = to_gray(crop_faces(frames, track, "lower", (96, 48))).astype(np.float64)
    diff = gray[track.found] - direct[track.found]
    assert abs(diff.mean()) < 2 and np.abs(diff - diff.mean()).mean() < 1.5
    assert not gray[~track.found].any()
    # no pre-crop covers any crop: every crop is cut again from a second decoding, straight from the frame
    monkeypatch.setattr(face, "PRE_CROP_MARGIN", -0.5)
    _, again, _ = track_and_crop_gray(clip, every=every)
    diff = again[track.found] - direct[track.found]
    assert abs(diff.mean()) < 2 and np.abs(diff - diff.mean()).mean() < 0.6


# Small faces: a person in a wide shot. The whole-frame face mesh misses faces of about a tenth of
# the frame height; the tracker finds them with the full-range detector and the mesh on a crop.

def wide_background(media, size=(1280, 720)):
    """A real frame without a face (sky and an aeroplane), resized to ``size``."""
    frames, _ = read_video(media / "video" / "moviepy_video_with_failing_audio_airfield.mp4", max_frames=1)
    return cv2.resize(frames[0], size, interpolation=cv2.INTER_AREA)


def paste_small(image, face_height, background, fraction=0.1, at=(0.6, 0.3)):
    """``image`` scaled so that a face ``face_height`` tall is ``fraction`` of the frame height, pasted
    at ``at`` (fractions of the frame): (frame, scale, offset), frame pixel = scale * image pixel + offset."""
    h, w = background.shape[:2]
    s = fraction * h / face_height
    small = cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    x0, y0 = int(at[0] * w), int(at[1] * h)
    frame = background.copy()
    frame[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
    return frame, s, np.array([x0 + 0.5 * s - 0.5, y0 + 0.5 * s - 0.5])  # pixel centres map to centres


def error_in_eye_distances(found, expected):
    eye = np.linalg.norm(expected[LEFT_EYE, :2].mean(0) - expected[RIGHT_EYE, :2].mean(0))
    return np.linalg.norm(found[:, :2] - expected[:, :2], axis=1).mean() / eye


def face_height(landmarks):
    return float(np.ptp(landmarks[..., 1], axis=-1).mean())


def test_small_face_in_a_wide_photo(media):
    import mediapipe as mp

    close = load(media / "faces" / "fr_obama.jpg")
    ref = face_in_image(close)
    frame, s, off = paste_small(close, face_height(ref), wide_background(media))  # the face: 72 of 720 rows
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True) as mesh:
        assert mesh.process(frame).multi_face_landmarks is None  # the mesh alone misses it
    lm = face_in_image(frame)
    assert lm is not None and lm.shape == (478, 3) and lm.dtype == np.float32
    expected = ref.copy()
    expected[:, :2] = ref[:, :2] * s + off
    expected[:, 2] = ref[:, 2] * s
    assert error_in_eye_distances(lm, expected) < 0.06  # measured 0.02
    assert np.abs(lm[:, 2] - expected[:, 2]).mean() < 0.1 * np.ptp(expected[:, 0])  # depth on the same scale


def test_small_talking_face_in_a_wide_video(media):
    close, _ = read_video(media / "talking_video" / "pcavs_Input_00010.mp4", max_frames=24)
    with FaceTracker() as tracker:
        ref = tracker.track(close, smooth=1)
    assert ref.found.all()
    background = wide_background(media)
    frames, expected = [background] * 4, []  # four frames without a face, then the face drifts across
    for i, f in enumerate(close):
        frame, s, off = paste_small(f, face_height(ref.landmarks), background, at=(0.5 + 0.005 * i, 0.3))
        frames.append(frame)
        expected.append(ref.landmarks[i, :, :2] * s + off)
    with FaceTracker() as tracker:
        track = tracker.track(frames, smooth=1)
    assert track.landmarks.shape == (28, 478, 3) and track.frame_size == (1280, 720)
    # found in every frame with the face, including the ones after the empty frames on which the
    # detector search was skipped (filled in backwards once the face was found)
    assert track.found.tolist() == [False] * 4 + [True] * 24
    errors = [error_in_eye_distances(track.landmarks[4 + i], expected[i]) for i in range(24)]
    assert np.mean(errors) < 0.08 and np.max(errors) < 0.15  # measured 0.03 and 0.05
    # the lips still move as in the close-up
    assert np.corrcoef(track.mouth_opening()[4:], ref.mouth_opening())[0, 1] > 0.8  # measured 0.97


def test_person_in_a_real_wide_shot(media):
    frames, _ = read_video(media / "video" / "liveportrait_s13.mp4", max_frames=5)  # full figure, 720 x 1080
    with FaceTracker() as tracker:
        track = tracker.track(frames)
    assert track.found.all()
    _, y0, _, y1 = np.nanmedian(track.boxes, axis=0)
    assert y1 < 0.25 * 1080 and 0.05 * 1080 < y1 - y0 < 0.2 * 1080  # a small face at the top of the frame
