"""Face tracking (MediaPipe face mesh) on real photos and video, and frames without a face."""
import numpy as np
import pytest
from PIL import Image

from media.face import LIPS, FaceTracker, crop_faces, face_in_image, track_video
from media.io import read_video


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
    with pytest.raises(ValueError, match="no face"):
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
