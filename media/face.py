"""Face tracking with MediaPipe face mesh (478 landmarks), and fixed-size face crops.

Faces that are small in the frame (a person in a wide shot) are found with MediaPipe's full-range
face detector and the mesh run on an enlarged crop around them (see :class:`FaceTracker`).

Coordinates are pixels of the input frame: ``landmarks[..., 0]`` is x (column), ``[..., 1]`` is y
(row), ``[..., 2]`` is MediaPipe's relative depth in the same pixel units as x. Frames where no face
was found are flagged in ``FaceTrack.found`` (their landmarks are NaN); they never raise. The crop
geometry of such frames is interpolated from their neighbours so that a crop sequence always has
one crop per frame.

Crops are similarity-aligned (rotation from the eye line, scale from the eye-to-mouth distance
``d``) and temporally smoothed, so a crop moves with the head but not with landmark jitter:

* ``"lower"``: the lower face, nose to chin and cheek to cheek (3.0 d wide, 1.5 d tall), default
  96 x 48 pixels: the input of the sync discriminator;
* ``"mouth"``: the lips (1.6 d x 0.8 d), default 64 x 32;
* ``"face"``: the whole face (3.2 d square), default 128 x 128.
"""
from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from media.errors import AVStudioError

N_LANDMARKS = 478
# Landmark indices of the MediaPipe canonical face mesh.
LIPS_OUTER = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185]
LIPS_INNER = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191]
LIPS = LIPS_OUTER + LIPS_INNER
UPPER_LIP_INNER, LOWER_LIP_INNER = 13, 14
MOUTH_LEFT, MOUTH_RIGHT = 61, 291
LEFT_EYE = [33, 133]  # subject's right eye in the image's left half, outer and inner corner
RIGHT_EYE = [362, 263]
FOREHEAD, CHIN = 10, 152
# the expressions of the music-to-face control vectors (models.face_controls), here so that a command can name
# them without loading torch
EXPRESSIONS = ("smile", "open_mouth", "raised_brows")

CROPS = {  # kind: (width in units of d, height in units of d, vertical centre offset in d, default size)
    "lower": (3.0, 1.5, 0.05, (96, 48)),
    "mouth": (1.6, 0.8, 0.0, (64, 32)),
    "face": (3.2, 3.2, -0.45, (128, 128)),
}


class NoFaceError(AVStudioError):
    """No face was found in any frame."""


def lip_gap(landmarks: np.ndarray) -> np.ndarray:
    """Distance between the inner lips (landmarks 13 and 14) of (..., 478, >=2) landmarks: a float for one face."""
    lm = np.asarray(landmarks)
    return np.linalg.norm(lm[..., UPPER_LIP_INNER, :2] - lm[..., LOWER_LIP_INNER, :2], axis=-1)


@dataclass
class FaceTrack:
    """One face followed over a sequence of frames."""

    landmarks: np.ndarray  # (N, 478, 3) float32, NaN where not found
    found: np.ndarray  # (N,) bool
    frame_size: tuple[int, int]  # (width, height)

    def __len__(self) -> int:
        return len(self.found)

    @property
    def lips(self) -> np.ndarray:
        """(N, 40, 3) lip landmarks (outer ring then inner ring)."""
        return self.landmarks[:, LIPS]

    @property
    def boxes(self) -> np.ndarray:
        """(N, 4) face boxes x0, y0, x1, y1 from the landmark extents (NaN where not found)."""
        xy = self.landmarks[..., :2]
        with np.errstate(all="ignore"):
            return np.concatenate([np.nanmin(xy, axis=1), np.nanmax(xy, axis=1)], axis=1) if len(xy) else np.zeros((0, 4))

    def geometry(self, smooth: int = 9) -> np.ndarray:
        """(N, 4) crop geometry per frame: mouth centre x, y, eye-to-mouth distance d, roll angle (rad).

        Missing frames are interpolated from their neighbours, then a centred moving average of
        ``smooth`` frames is applied. Raises ValueError when no frame has a face.
        """
        if not self.found.any():
            raise NoFaceError("no face was found in any frame")
        return _moving_average(_interpolate_missing(_geometry(self.landmarks), self.found), smooth)

    def lip_gap(self) -> np.ndarray:
        """(N,) distance between the inner lips in pixels, NaN where not found."""
        return lip_gap(self.landmarks)

    def lip_gap_ratio(self) -> np.ndarray:
        """(N,) inner-lip gap over the face's height (landmark extent), NaN where not found."""
        lm = self.landmarks
        gap = self.lip_gap()
        with np.errstate(all="ignore"):
            height = np.nanmax(lm[..., 1], axis=1) - np.nanmin(lm[..., 1], axis=1)
        return gap / np.maximum(height, 1e-6)

    def mouth_opening(self) -> np.ndarray:
        """(N,) inner-lip gap divided by the eye-to-mouth distance (NaN where not found)."""
        lm = self.landmarks[..., :2]
        gap = self.lip_gap()
        eye_c = lm[:, LEFT_EYE + RIGHT_EYE].mean(axis=1)
        mouth_c = lm[:, [UPPER_LIP_INNER, LOWER_LIP_INNER]].mean(axis=1)
        return gap / np.maximum(np.linalg.norm(mouth_c - eye_c, axis=1), 1e-6)


def _geometry(landmarks: np.ndarray) -> np.ndarray:
    """(N, 4) mouth centre x, y, eye-to-mouth distance d and roll angle of (N, 478, 2+) landmarks, unsmoothed."""
    lm = landmarks[..., :2]
    eyes_l = lm[:, LEFT_EYE].mean(axis=1)
    eyes_r = lm[:, RIGHT_EYE].mean(axis=1)
    eye_c = (eyes_l + eyes_r) / 2
    mouth_c = lm[:, [UPPER_LIP_INNER, LOWER_LIP_INNER, MOUTH_LEFT, MOUTH_RIGHT]].mean(axis=1)
    v = eyes_r - eyes_l
    return np.stack([mouth_c[:, 0], mouth_c[:, 1], np.linalg.norm(mouth_c - eye_c, axis=1),
                     np.arctan2(v[:, 1], v[:, 0])], axis=1)


def _interpolate_missing(values: np.ndarray, found: np.ndarray) -> np.ndarray:
    t = np.arange(len(found))
    out = values.copy()
    for c in range(values.shape[1]):
        out[:, c] = np.interp(t, t[found], values[found, c])
    return out


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < 2:
        return values
    half = window // 2
    padded = np.concatenate([np.repeat(values[:1], half, 0), values, np.repeat(values[-1:], half, 0)])
    kernel = np.ones(window) / window
    return np.stack([np.convolve(padded[:, c], kernel, mode="valid") for c in range(values.shape[1])], axis=1)


def _smooth_landmarks(landmarks: np.ndarray, found: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over runs of consecutive found frames (never across a gap)."""
    if window <= 1:
        return landmarks
    out = landmarks.copy()
    half = window // 2
    n = len(found)
    for i in np.flatnonzero(found):
        lo, hi = i, i
        while lo > max(0, i - half) and found[lo - 1]:
            lo -= 1
        while hi < min(n - 1, i + half) and found[hi + 1]:
            hi += 1
        out[i] = landmarks[lo:hi + 1].mean(axis=0)
    return out


class FaceTracker:
    """MediaPipe face mesh over a video (tracking mode) or over single photos.

    ``max_faces`` faces are detected per frame and associated across frames by box overlap;
    :meth:`track` returns the track of the face that is largest over the whole clip by default (so
    the identity cannot switch between two similar faces), or every track (``all_faces=True``).

    Small faces (a person in a wide or 720p shot): the face mesh finds faces that fill a good part
    of the frame. When it finds none on the whole frame, MediaPipe's full-range face detector looks
    for faces on the frame and on overlapping square tiles of it, and the mesh runs on an enlarged
    square crop around each detection; in video mode the next frame is cropped around the previous
    frame's landmarks, so the detector only runs again when the face is lost. In static mode a face
    the whole-frame mesh finds but that is small in the frame is measured again on a crop. Faces
    that fill the frame take exactly the path they took before (the whole-frame mesh alone).
    """

    def __init__(self, max_faces: int = 4, min_confidence: float = 0.5, static: bool = False):
        import mediapipe as mp  # imported lazily: it is slow to import and not every caller needs it

        self.max_faces = max_faces
        self.static = static
        self._min_confidence = min_confidence
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=static,
            max_num_faces=max_faces,
            refine_landmarks=True,
            min_detection_confidence=min_confidence,
            min_tracking_confidence=min_confidence,
        )
        self._crop_mesh = None  # the mesh on crops and the full-range detector, made when first needed
        self._detector = None
        self._previous: list[np.ndarray] = []  # video mode: the faces of the previous frame
        self._since_search, self._search_every, self._skipped_search = 0, 1, False

    def close(self) -> None:
        for graph in (self._mesh, self._crop_mesh, self._detector):
            if graph is not None:
                graph.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def detect(self, frame: np.ndarray) -> list[np.ndarray]:
        """All faces in one RGB uint8 frame, largest first: a list of (478, 3) pixel landmarks.

        In video mode (``static=False``) successive calls are successive frames of one video.
        """
        frame = np.ascontiguousarray(frame)
        faces = _mesh_faces(self._mesh, frame)
        self._skipped_search = False
        if not faces:
            faces = self._small_faces(frame)
        elif self.static:  # one look at a photo: a face small in it gets the mesh again, on a crop
            limit = _REFINE_BELOW * max(frame.shape[:2])
            for k, pts in enumerate(faces):
                better = self._mesh_around(frame, pts) if _size(pts) < limit else None
                faces[k] = pts if better is None else better
        faces.sort(key=lambda p: -_box_area(p))
        if faces:
            self._since_search, self._search_every = 0, 1
        if not self.static:
            self._previous = faces
        return faces

    def _small_faces(self, frame: np.ndarray) -> list[np.ndarray]:
        """Faces the whole-frame mesh missed: the mesh on crops around the previous frame's faces
        (video mode), else around full-range detections.

        In video mode, while the search finds nothing it runs on ever sparser frames (every
        _SEARCH_EVERY-th at most) to keep face-less videos fast; :meth:`track` fills the skipped
        frames back in once a face is found.
        """
        faces = self._follow(frame, self._previous)
        if faces:
            return faces
        if not self.static:
            self._since_search += 1
            if self._since_search < self._search_every:
                self._skipped_search = True
                return []
            self._since_search = 0
        for cx, cy, size in self._detect_boxes(frame):
            pts = self._mesh_on_crop(frame, cx, cy, size * _CROP_OVER_BOX)
            if pts is not None and not any(_iou(pts, f) > 0.3 for f in faces):
                faces.append(pts)
            if len(faces) >= self.max_faces:
                break
        if not faces:  # search less often while there is no face (detect resets this once one is found)
            self._search_every = min(2 * self._search_every, _SEARCH_EVERY)
        return faces

    def _follow(self, frame: np.ndarray, previous: list[np.ndarray]) -> list[np.ndarray]:
        """The mesh on crops around ``previous`` faces (an adjacent frame's landmarks)."""
        faces: list[np.ndarray] = []
        for prev in previous:
            pts = self._mesh_around(frame, prev)
            if pts is not None and not any(_iou(pts, f) > 0.3 for f in faces):
                faces.append(pts)
        return faces

    def _mesh_around(self, frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
        """The mesh on a crop around a face's (approximate) ``landmarks``: see :meth:`_mesh_on_crop`."""
        (x0, y0), (x1, y1) = landmarks[:, :2].min(axis=0), landmarks[:, :2].max(axis=0)
        return self._mesh_on_crop(frame, (x0 + x1) / 2, (y0 + y1) / 2, _size(landmarks) * _CROP_OVER_FACE)

    def _mesh_on_crop(self, frame: np.ndarray, cx: float, cy: float, side: float) -> np.ndarray | None:
        """The mesh on a square crop (centre cx, cy; ``side`` pixels) resized to _CROP_SIZE, in frame pixels.

        None when the mesh finds no face centred in the middle half of the crop (a neighbour's face).
        """
        if self._crop_mesh is None:
            import mediapipe as mp

            self._crop_mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                min_detection_confidence=self._min_confidence,
                min_tracking_confidence=max(self._min_confidence, _CROP_PRESENCE))
        side = max(side, 16.0)
        scale = _CROP_SIZE / side
        x0, y0 = cx - side / 2, cy - side / 2
        # pixel centres map to pixel centres: u + 0.5 = (x + 0.5 - x0) * scale; a large face is cut at
        # (about) its own resolution, then shrunk with pixel averaging
        n = _CROP_SIZE if scale >= 1 else int(np.ceil(side))
        s = n / side
        m = np.array([[s, 0.0, (0.5 - x0) * s - 0.5], [0.0, s, (0.5 - y0) * s - 0.5]])
        crop = cv2.warpAffine(frame, m, (n, n), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        if n != _CROP_SIZE:
            crop = cv2.resize(crop, (_CROP_SIZE, _CROP_SIZE), interpolation=cv2.INTER_AREA)
        faces = _mesh_faces(self._crop_mesh, crop)
        if not faces or np.any(np.abs(faces[0][:, :2].mean(axis=0) - _CROP_SIZE / 2) > _CROP_SIZE / 4):
            return None
        pts = faces[0]
        pts[:, :2] = (pts[:, :2] + 0.5) / scale - 0.5 + np.array([x0, y0], dtype=np.float32)
        pts[:, 2] /= scale
        return pts

    def _detect_boxes(self, frame: np.ndarray) -> list[tuple[float, float, float]]:
        """Full-range detections (centre x, y, size in pixels), best first, on the whole frame and on
        overlapping square tiles of it (see :func:`_tiles`)."""
        if self._detector is None:
            import mediapipe as mp

            self._detector = mp.solutions.face_detection.FaceDetection(
                model_selection=1, min_detection_confidence=self._min_confidence)
        h, w = frame.shape[:2]
        found: list[tuple[float, float, float, float]] = []  # score, cx, cy, size
        for x0, y0, side in _tiles(w, h):
            tile = np.ascontiguousarray(frame[y0:y0 + side, x0:x0 + side])
            th, tw = tile.shape[:2]
            for det in self._detector.process(tile).detections or []:
                box = det.location_data.relative_bounding_box
                new = (det.score[0], x0 + (box.xmin + box.width / 2) * tw, y0 + (box.ymin + box.height / 2) * th,
                       max(box.width * tw, box.height * th))
                same = [k for k, c in enumerate(found)
                        if max(abs(new[1] - c[1]), abs(new[2] - c[2])) < 0.5 * max(new[3], c[3])]
                if not same:
                    found.append(new)
                elif new[0] > found[same[0]][0]:  # the same face seen in another window: the surer box
                    found[same[0]] = new
        found.sort(key=lambda c: -c[0])
        return [(cx, cy, size) for _, cx, cy, size in found]

    def track(self, frames: Iterable[np.ndarray], all_faces: bool = False, smooth: int = 3,
              progress=None, every: int = 1, on_look=None) -> FaceTrack | list[FaceTrack]:
        """Landmarks of the largest face in every frame (or a list of tracks with ``all_faces``).

        ``smooth`` is the window of the centred moving average applied to the landmarks of runs of
        consecutive found frames. ``progress``, if given, is called with each frame index. With ``every``
        > 1 the mesh looks at every ``every``-th frame only (and the last): the landmarks of the frames
        between are interpolated linearly from the two looked-at frames around them, where both have the
        face. That suits what moves a box (the head), not what changes within a frame (the lips).
        ``on_look(i, faces)``, if given, is called after the mesh looked at frame ``i`` with the faces it found
        there (largest first), before the next frame is asked for.
        """
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        per_frame: list[list[np.ndarray]] = []
        looked: list[int] = []  # the frames the mesh looked at
        size = (0, 0)
        self._previous, self._since_search, self._search_every = [], 0, 1
        skipped: list[tuple[int, np.ndarray]] = []  # frames without a face on which the search did not run
        last: tuple[int, np.ndarray] | None = None  # with every > 1: the latest frame not looked at

        def look(i: int, frame: np.ndarray) -> None:
            nonlocal skipped
            faces = self.detect(frame)
            per_frame.append(faces)
            looked.append(i)
            if on_look is not None:
                on_look(i, faces)
            if faces and skipped:  # a face found again: follow it back through the frames not searched
                back = faces
                for j, earlier in reversed(skipped):
                    back = self._follow(np.ascontiguousarray(earlier), back)
                    if not back:
                        break
                    per_frame[j] = sorted(back, key=lambda p: -_box_area(p))
            skipped = skipped + [(len(per_frame) - 1, frame)] if self._skipped_search else []

        n = 0
        for i, frame in enumerate(frames):
            size, n = (frame.shape[1], frame.shape[0]), i + 1
            if i % every == 0:
                look(i, frame)
                last = None
            else:
                last = (i, frame)
            if progress is not None:
                progress(i)
        if last is not None:
            look(*last)
        tracks = _associate(per_frame)
        if not all_faces:  # the face that is largest over the clip, followed as one identity
            tracks = [max(tracks, key=lambda tr: sum(_box_area(p) for p in tr if p is not None))] if tracks else \
                [[None] * len(per_frame)]
        out = []
        for seq in tracks:
            lm = np.full((n, N_LANDMARKS, 3), np.nan, dtype=np.float32)
            found = np.zeros(n, dtype=bool)
            for i, pts in zip(looked, seq):
                if pts is not None:
                    lm[i], found[i] = pts, True
            if every > 1:
                _fill_between(lm, found, np.asarray(looked))
            out.append(FaceTrack(_smooth_landmarks(lm, found, smooth), found, size))
        return out if all_faces else out[0]


def _fill_between(landmarks: np.ndarray, found: np.ndarray, looked: np.ndarray) -> None:
    """In place: each frame not ``looked`` at gets the linear interpolation of the looked-at frames around it,
    where both have the face."""
    for a, b in itertools.pairwise(looked):
        if b - a > 1 and found[a] and found[b]:
            t = (np.arange(a + 1, b, dtype=np.float32) - a)[:, None, None] / (b - a)
            landmarks[a + 1:b] = (1 - t) * landmarks[a] + t * landmarks[b]
            found[a + 1:b] = True


_CROP_SIZE = 256  # side in pixels of the square crop the mesh sees around a small face
_CROP_OVER_FACE = 1.8  # crop side over the previous frame's landmark extent
_CROP_OVER_BOX = 2.0  # crop side over a full-range detection box
_REFINE_BELOW = 0.2  # static mode: a face found on the whole frame but smaller than this fraction of
# its long side is measured again on a crop (the mesh then starts from a coarse detection and its
# landmarks can be off by a tenth of the eye distance or more; on the crop 0.01 to 0.02)
_CROP_PRESENCE = 0.9  # the mesh's face presence score needed on a crop (a stricter check: small faces)
_MIN_TILE = 256  # the smallest detector window, in frame pixels (faces of ~25 pixels and more)
_SEARCH_EVERY = 8  # video mode: the detector search runs at least every this many frames without a face


def _mesh_faces(mesh, image: np.ndarray) -> list[np.ndarray]:
    """The faces a MediaPipe face mesh finds in an RGB image, (478, 3) landmarks in its pixels."""
    h, w = image.shape[:2]
    result = mesh.process(image)
    return [np.array([(p.x * w, p.y * h, p.z * w) for p in face.landmark], dtype=np.float32)
            for face in result.multi_face_landmarks or []]


def _tiles(w: int, h: int) -> list[tuple[int, int, int]]:
    """Square windows (x0, y0, side) for the full-range detector: the whole frame, tiles of its short
    side, and tiles of half of it (when at least _MIN_TILE pixels), neighbours overlapping by a fifth
    or more. The detector sees each window at 192 x 192 and finds faces down to about a tenth of it.
    """
    out = [(0, 0, max(w, h))]
    short = min(w, h)
    if w != h:
        out += [(x, y, short) for y in _starts(h, short) for x in _starts(w, short)]
    if short // 2 >= _MIN_TILE:
        out += [(x, y, short // 2) for y in _starts(h, short // 2) for x in _starts(w, short // 2)]
    return out


def _starts(length: int, side: int) -> list[int]:
    """Start offsets of windows of ``side`` covering ``length``, neighbours overlapping by >= 20 %."""
    n = 1 if length <= side else int(np.ceil((length - side) / (0.8 * side))) + 1
    return np.linspace(0, length - side, n).round().astype(int).tolist()


def _size(pts: np.ndarray) -> float:
    """The larger side of a face's landmark box."""
    return float((pts[:, :2].max(axis=0) - pts[:, :2].min(axis=0)).max())


def _box_area(pts: np.ndarray) -> float:
    span = pts[:, :2].max(axis=0) - pts[:, :2].min(axis=0)
    return float(span[0] * span[1])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    (ax0, ay0), (ax1, ay1) = a[:, :2].min(0), a[:, :2].max(0)
    (bx0, by0), (bx1, by1) = b[:, :2].min(0), b[:, :2].max(0)
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / union if union > 0 else 0.0


def _associate(per_frame: Sequence[list[np.ndarray]], min_iou: float = 0.3) -> list[list[np.ndarray | None]]:
    """Greedy frame-to-frame association of detections into tracks by box IoU."""
    n = len(per_frame)
    tracks: list[list[np.ndarray | None]] = []
    last: list[np.ndarray] = []  # last seen landmarks of each track
    for i, faces in enumerate(per_frame):
        free = list(range(len(faces)))
        for t, prev in enumerate(last):
            if not free:
                break
            best = max(free, key=lambda j: _iou(prev, faces[j]))
            if _iou(prev, faces[best]) >= min_iou:
                tracks[t][i] = faces[best]
                last[t] = faces[best]
                free.remove(best)
        for j in free:
            tracks.append([None] * n)
            tracks[-1][i] = faces[j]
            last.append(faces[j])
    tracks.sort(key=lambda tr: -sum(p is not None for p in tr))
    return tracks


def crop_transform(geo: np.ndarray, kind: str = "lower", size: tuple[int, int] | None = None) -> np.ndarray:
    """2x3 affine matrix mapping frame pixels to a ``kind`` crop of ``size`` (w, h) for one geometry row."""
    wd, hd, dy, default = CROPS[kind]
    out_w, out_h = size or default
    cx, cy, d, angle = geo
    scale = out_w / (wd * d)
    # crop centre: dy * d below the mouth centre along the face's own vertical axis
    cx, cy = cx - np.sin(angle) * dy * d, cy + np.cos(angle) * dy * d
    m = cv2.getRotationMatrix2D((float(cx), float(cy)), float(np.degrees(angle)), float(scale))
    m[0, 2] += out_w / 2 - cx
    m[1, 2] += out_h / 2 - cy
    return m


def crop_faces(frames: Iterable[np.ndarray], track: FaceTrack, kind: str = "lower",
               size: tuple[int, int] | None = None, smooth: int = 9) -> np.ndarray:
    """Fixed-size aligned crops (N, h, w, 3) uint8 of ``track``'s face in each of ``frames``."""
    out_w, out_h = size or CROPS[kind][3]
    geo = track.geometry(smooth)
    crops = np.zeros((len(track), out_h, out_w, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        if i >= len(track):
            break
        crops[i] = cv2.warpAffine(frame, crop_transform(geo[i], kind, (out_w, out_h)), (out_w, out_h),
                                  flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    return crops


def track_and_crop_gray(path, kind: str = "lower", size: tuple[int, int] | None = None, every: int = 1,
                        end: float | None = None, progress=None, smooth: int = 9):
    """Track ``path``'s face (as :func:`track_video`) and cut its grey ``kind`` crops, in one decoding pass.

    Returns (FaceTrack, (N, h, w) uint8 grey crops, fps). The crops are those of :func:`crop_faces` in grey
    (:meth:`media.io.LazyFrame.luma`; zeros where no face was found), cut in two steps so that the video is
    decoded once: while the mesh runs, each frame's luma around the face the mesh found last (a crop
    :data:`PRE_CROP_MARGIN` eye-to-mouth distances larger on every side, at :data:`PRE_CROP_OVERSAMPLE` times
    the crop's resolution) is kept; once the track is known and smoothed, each crop is cut from its frame's
    pre-crop. A frame whose final crop does not lie inside its pre-crop (a face found only by looking back,
    a sudden jump) is cut from a second decoding, which stops after the last such frame.
    """
    from media.io import iter_video_frames, prefetch, probe

    out_w, out_h = size = size or CROPS[kind][3]
    fps = probe(path).fps
    pre: list[list[tuple[np.ndarray, np.ndarray]]] = []  # per frame: (frame -> pre-crop matrix, pre-crop)
    waiting: list = []  # frames (LazyFrame) the mesh has not looked at or past yet
    latest: list[np.ndarray] = []  # the faces the mesh found last

    def on_look(i: int, faces: list[np.ndarray]) -> None:
        nonlocal latest, waiting
        latest = faces[:PRE_CROP_FACES] or latest
        geos = _geometry(np.stack(latest)) if latest else []
        for frame in waiting:
            plane, table = frame.luma()
            pre.append([_pre_crop(plane, table, g, kind, size) for g in geos])
        waiting = []

    def frames():  # decoding runs ahead in a second thread; a frame waits here from when the mesh gets it
        for _, _, frame in prefetch(iter_video_frames(path, end=end, lazy=True)):
            waiting.append(frame)
            yield frame

    with FaceTracker() as tracker:
        track = tracker.track(frames(), progress=progress, every=every, on_look=on_look)
    crops = np.zeros((len(track), out_h, out_w), dtype=np.uint8)
    if track.found.any():
        geo = track.geometry(smooth)
        to_crop = {int(i): crop_transform(geo[i], kind, size) for i in np.flatnonzero(track.found)}
        again = {i: m for i, m in to_crop.items() if not _cut_from_pre_crops(crops[i], m, pre[i])}
        if again:
            _cut_again(path, end, again, crops)
    return track, crops, fps


def _cut_from_pre_crops(crop: np.ndarray, to_crop: np.ndarray, pre: list[tuple[np.ndarray, np.ndarray]]) -> bool:
    """Fill ``crop`` (in place) from the first of a frame's pre-crops that holds all of it; False if none does."""
    size = (crop.shape[1], crop.shape[0])
    for to_pre, image in pre:
        inner = _compose(to_crop, cv2.invertAffineTransform(to_pre))  # pre-crop pixels -> crop pixels
        if _covers(inner, image.shape, size):
            crop[:] = cv2.warpAffine(image, inner, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            return True
    return False


def _cut_again(path, end: float | None, to_crop: dict[int, np.ndarray], crops: np.ndarray) -> None:
    """Cut the crops of the frames in ``to_crop`` (frame -> crop transform) straight from a new decoding of
    ``path``, which stops after the last of them."""
    from media.io import iter_video_frames

    size, last = (crops.shape[2], crops.shape[1]), max(to_crop)
    with contextlib.closing(iter_video_frames(path, end=end, lazy=True)) as frames:
        for i, (_, _, frame) in enumerate(frames):
            if i in to_crop:
                plane, table = frame.luma()
                crops[i] = table[cv2.warpAffine(plane, to_crop[i], size, flags=cv2.INTER_LINEAR,
                                                borderMode=cv2.BORDER_REPLICATE)]
            if i >= last:
                break


PRE_CROP_OVERSAMPLE = 2.0  # track_and_crop_gray: pre-crops at twice the final crop's resolution
PRE_CROP_MARGIN = 0.75  # ... reaching this many eye-to-mouth distances beyond it on every side
PRE_CROP_FACES = 2  # ... around the largest faces the mesh found last (the others are cut again if tracked)


def _pre_crop(plane: np.ndarray, table: np.ndarray, geo: np.ndarray, kind: str,
              size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(frame -> pre-crop matrix, grey pre-crop) around one face geometry row (see track_and_crop_gray)."""
    k, wd = PRE_CROP_OVERSAMPLE, CROPS[kind][0]
    inner = (round(k * size[0]), round(k * size[1]))
    pad = PRE_CROP_MARGIN * k * size[0] / wd  # the margin in pre-crop pixels (size[0] pixels span wd * d)
    m = crop_transform(geo, kind, inner)
    m[:, 2] += pad
    shape = (round(inner[0] + 2 * pad), round(inner[1] + 2 * pad))
    image = cv2.warpAffine(plane, m, shape, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return m, table[image]


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 affine map ``outer(inner(x))``."""
    return np.hstack([outer[:, :2] @ inner[:, :2], outer[:, :2] @ inner[:, 2:] + outer[:, 2:]])


def _covers(m: np.ndarray, shape: tuple[int, ...], size: tuple[int, int]) -> bool:
    """Whether every pixel a ``size`` (w, h) crop through ``m`` (source -> crop) samples lies inside a source
    of ``shape`` (h, w)."""
    w, h = size
    back = cv2.invertAffineTransform(m)
    src = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], dtype=np.float64) @ back[:, :2].T + back[:, 2]
    return bool((src >= 0).all() and (src[:, 0] <= shape[1] - 1).all() and (src[:, 1] <= shape[0] - 1).all())


def crop_landmarks(track: FaceTrack, indices: Sequence[int] = LIPS, kind: str = "lower",
                   size: tuple[int, int] | None = None, smooth: int = 9) -> np.ndarray:
    """(N, len(indices), 2) landmark positions in the pixel coordinates of :func:`crop_faces`'s crops."""
    geo = track.geometry(smooth)
    pts = track.landmarks[:, list(indices), :2]
    out = np.full(pts.shape, np.nan, dtype=np.float32)
    for i in range(len(track)):
        m = crop_transform(geo[i], kind, size)
        out[i] = pts[i] @ m[:, :2].T + m[:, 2]
    return out


def face_in_image(image: np.ndarray, all_faces: bool = False):
    """Landmarks (478, 3) of the largest face in a photo, a list of all faces, or None if none."""
    with FaceTracker(static=True) as tracker:
        faces = tracker.detect(image)
    if all_faces:
        return faces
    return faces[0] if faces else None


def track_video(path, end: float | None = None, all_faces: bool = False, progress=None,
                size: tuple[int, int] | None = None, every: int = 1):
    """Decode ``path`` (streaming, frames resized to ``size = (w, h)`` if given) and track its face(s), the
    mesh on every ``every``-th frame (:meth:`FaceTracker.track`): returns (FaceTrack or list, fps)."""
    from media.io import iter_video_frames, prefetch, probe

    fps = probe(path).fps
    with FaceTracker() as tracker:  # decoding runs ahead in a second thread while the mesh looks; a frame
        # becomes RGB only if the mesh looks at it (every > 1)
        frames = prefetch(frame for _, _, frame in iter_video_frames(path, end=end, size=size, lazy=every > 1))
        return tracker.track(frames, all_faces=all_faces, progress=progress, every=every), fps

