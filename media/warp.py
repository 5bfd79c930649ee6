"""Piecewise-affine warping of a photo by moved face-mesh landmarks, and a synthesised mouth interior.

:class:`MeshWarp` triangulates a photo's landmarks (Delaunay) together with a ring of fixed anchor points
around the face, and rasterises that mesh once: every pixel of the face's box knows its triangle and its
barycentric coordinates. A displacement of the landmarks then becomes a dense displacement field by
barycentric interpolation (piecewise affine inside each triangle, zero on the anchors, so nothing outside
the ring moves), and :meth:`MeshWarp.warp` renders the photo under ``weight`` x that field by inverting
it with a few fixed-point steps (``src = x - weight * field(src)``), each a bilinear lookup.

Warping cannot show what the photo does not have: when closed lips part, the gap would be filled by
stretched lip. :func:`mouth_interior` paints the opening instead: a dark cavity shaded from the lips'
own colour, darker in the middle, with a band of upper teeth under the upper lip, feathered into the
warped lips.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from media.face import LIPS_INNER, LIPS_OUTER, lip_gap

COARSE = 4  # MeshWarp.warp solves the inverse map every COARSE pixels and interpolates between


@dataclass(frozen=True)
class WarpField:
    """A forward displacement field over a :class:`MeshWarp`'s box: ``values`` (box_h, box_w, 2) float32
    pixels; ``support`` the box-relative (x0, y0, x1, y1) of the pixels it moves (None: it moves none);
    ``reach`` the farthest it moves one (pixels)."""

    values: np.ndarray
    support: tuple[int, int, int, int] | None
    reach: float


class MeshWarp:
    """The face mesh of one photo, rasterised once; warps that photo by any landmark displacement."""

    def __init__(self, image: np.ndarray, landmarks: np.ndarray, ring: float = 0.25, n_ring: int = 24):
        from scipy.spatial import Delaunay

        self.image = image
        h, w = image.shape[:2]
        pts = np.asarray(landmarks, np.float64)[:, :2]
        self.n_landmarks = len(pts)
        centre = (pts.max(axis=0) + pts.min(axis=0)) / 2
        half = (pts.max(axis=0) - pts.min(axis=0)) / 2 * (1 + ring) * np.sqrt(2)  # an ellipse around the box
        angles = np.linspace(0, 2 * np.pi, n_ring, endpoint=False)
        anchors = centre + half * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        self.points = np.concatenate([pts, anchors])
        x0, y0 = np.floor(np.maximum(anchors.min(axis=0), 0)).astype(int)
        x1, y1 = np.ceil(np.minimum(anchors.max(axis=0), [w - 1, h - 1])).astype(int)
        self.box = (int(x0), int(y0), int(x1) + 1, int(y1) + 1)
        simplices = Delaunay(self.points).simplices
        bw, bh = self.box[2] - self.box[0], self.box[3] - self.box[1]
        # rasterise the triangles: each pixel of the box gets the index of the triangle covering it
        ids = np.full((bh, bw), -1, np.int32)
        local = self.points - [self.box[0], self.box[1]]
        for k, tri in enumerate(simplices):
            cv2.fillConvexPoly(ids, np.round(local[tri] * 16).astype(np.int32), int(k), cv2.LINE_8, 4)
        ys, xs = np.mgrid[0:bh, 0:bw]
        flat = ids.ravel()
        inside = np.flatnonzero(flat >= 0)
        verts = simplices[flat[inside]]  # (n, 3)
        a, b, c = local[verts[:, 0]], local[verts[:, 1]], local[verts[:, 2]]
        p = np.stack([xs.ravel()[inside], ys.ravel()[inside]], axis=1).astype(np.float64)
        v0, v1, v2 = b - a, c - a, p - a
        den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
        den = np.where(np.abs(den) < 1e-9, 1e-9, den)
        l1 = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
        l2 = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
        self._pix = inside  # pixels of the box inside the mesh
        self._verts = verts
        self._bary = np.stack([1 - l1 - l2, l1, l2], axis=1).astype(np.float32)
        self._base = np.stack([xs + self.box[0], ys + self.box[1]], axis=-1).astype(np.float32)  # absolute pixels
        self._shape = (bh, bw)

    def field(self, displacement: np.ndarray) -> WarpField:
        """The forward displacement of every box pixel for landmark ``displacement`` (478, 2): barycentric
        interpolation inside each triangle, zero on the anchors."""
        d = np.zeros((len(self.points), 2), np.float32)
        d[:self.n_landmarks] = displacement
        out = np.zeros((self._shape[0] * self._shape[1], 2), np.float32)
        out[self._pix] = np.einsum("ni,nij->nj", self._bary, d[self._verts])
        values = out.reshape(*self._shape, 2)
        moving = np.abs(values).max(axis=2) > 0
        if not moving.any():
            return WarpField(values, None, 0.0)
        rows, cols = np.flatnonzero(moving.any(axis=1)), np.flatnonzero(moving.any(axis=0))
        return WarpField(values, (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1),
                         float(np.sqrt((values ** 2).sum(axis=2)).max()))

    def warp(self, field: WarpField, weight: float, steps: int = 6, extra: np.ndarray | None = None,
             grid: int = COARSE):
        """The photo with its mesh moved by ``weight`` x ``field`` (a copy; pixels outside the box untouched).

        Only the part of the box that can change is rendered: the pixels the field moves, widened by the
        farthest any of them moves (a moved pixel can land there) and by ``grid`` pixels. The inverse
        map (``src = x - weight * field(src)``, ``steps`` fixed-point steps) is solved on a grid every
        ``grid`` pixels and interpolated bilinearly to every pixel (``grid=1``: solved at every pixel). The
        field is piecewise affine and continuous, so the interpolation errs only near the triangles' edges;
        ``benchmarks/performance.py`` (``warp``) measures both against the inverse solved to convergence.
        With ``extra`` (an (h, w) float32 map the size of the photo, e.g. a mask), returns (image, that map
        warped the same way)."""
        out = self.image.copy()
        moved = None if extra is None else extra.copy()
        if weight == 0 or field.support is None:
            return out if extra is None else (out, moved)
        s = grid
        f = field.values * np.float32(weight)
        reach = int(np.ceil(abs(weight) * field.reach)) + 2 * s
        sx0, sy0, sx1, sy1 = field.support
        bh, bw = self._shape
        x0, y0, x1, y1 = max(sx0 - reach, 0), max(sy0 - reach, 0), min(sx1 + reach, bw), min(sy1 + reach, bh)
        # the coarse grid: point (i, j) at (x0 + s*j + (s-1)/2, y0 + s*i + (s-1)/2), where cv2.resize by s puts
        # the sample of coarse point (i, j), so the resize below is the bilinear interpolation between grid points
        ny, nx = -(-(y1 - y0) // s), -(-(x1 - x0) // s)
        gx = (x0 + s * np.arange(nx, dtype=np.float32) + (s - 1) / 2)[None, :].repeat(ny, 0)
        gy = (y0 + s * np.arange(ny, dtype=np.float32) + (s - 1) / 2)[:, None].repeat(nx, 1)
        points = np.stack([gx, gy], axis=-1)
        shift = cv2.remap(f, gx, gy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        for _ in range(steps - 1):  # fixed point of src = x - f(src): the inverse of the forward warp
            src = points - shift
            shift = cv2.remap(f, src[..., 0], src[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        shift = cv2.resize(shift, (nx * s, ny * s), interpolation=cv2.INTER_LINEAR)[:y1 - y0, :x1 - x0]
        src = self._base[y0:y1, x0:x1] - shift
        bx, by = self.box[:2]
        region = (slice(by + y0, by + y1), slice(bx + x0, bx + x1))
        out[region] = cv2.remap(self.image, src[..., 0], src[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if extra is not None:
            moved[region] = cv2.remap(extra, src[..., 0], src[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        return out if extra is None else (out, moved)


def _poly_mask(points: np.ndarray, shape: tuple[int, int], shift: int = 4) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(points * (1 << shift)).astype(np.int32)], 255, cv2.LINE_AA, shift)
    return mask.astype(np.float32) / 255.0


def inner_mouth_mask(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(h, w) float32 in [0, 1]: the inside of the inner-lip ring of ``landmarks`` (pixels), antialiased."""
    return _poly_mask(np.asarray(landmarks, np.float64)[LIPS_INNER, :2], shape)


def mouth_interior(frame: np.ndarray, landmarks: np.ndarray, keep: np.ndarray | None = None,
                   photo_gap: float = 0.0, copy: bool = True) -> np.ndarray:
    """Paint the inside of the mouth of ``frame`` within its inner-lip ring (``landmarks``: the moved
    landmarks, pixels), except where ``keep`` (an (h, w) map in [0, 1]: the photo's own mouth interior,
    warped along) already shows a real one. Nothing is painted unless the inner lips are at least a pixel
    further apart than the photo's own ``photo_gap`` (pixels).

    The cavity colour is the lips' mean colour darkened to a quarter, darker towards the middle; the upper
    teeth are a light band under the upper lip, a third of the opening tall, as bright as the mouth's
    surroundings. Returns a new frame (``copy=False``: ``frame`` itself, painted); a mouth with nothing to paint
    returns ``frame`` itself."""
    inner = np.asarray(landmarks, np.float64)[LIPS_INNER, :2]
    if lip_gap(landmarks) < photo_gap + 1.0:
        return frame
    x0, y0 = np.floor(inner.min(axis=0) - 3).astype(int)
    x1, y1 = np.ceil(inner.max(axis=0) + 3).astype(int)
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 3 or y1 - y0 < 3:
        return frame
    patch = frame[y0:y1, x0:x1].astype(np.float32)
    local = inner - [x0, y0]
    inside = _poly_mask(local, patch.shape[:2])
    cavity_mask = inside.copy()
    if keep is not None:
        cavity_mask *= 1.0 - np.clip(keep[y0:y1, x0:x1], 0, 1)
    if cavity_mask.max() < 0.05:
        return frame
    lips = _poly_mask(np.asarray(landmarks, np.float64)[LIPS_OUTER, :2] - [x0, y0], patch.shape[:2])
    lips = lips * (1 - inside)
    lip_colour = patch[lips > 0.5].mean(axis=0) if (lips > 0.5).any() else np.float32([120, 60, 60])
    # vertical position inside the opening: 0 at the upper inner lip, 1 at the lower
    top, bottom = landmarks[13, 1] - y0, landmarks[14, 1] - y0
    yy = (np.arange(patch.shape[0], dtype=np.float32)[:, None] - top) / max(bottom - top, 1.0)
    xx = np.arange(patch.shape[1], dtype=np.float32)[None, :]
    cx, half_w = (local[:, 0].max() + local[:, 0].min()) / 2, max((local[:, 0].max() - local[:, 0].min()) / 2, 1.0)
    depth = 1.0 - 0.5 * np.clip(1 - ((xx - cx) / half_w) ** 2, 0, 1) * np.clip(1 - (2 * yy - 1) ** 2, 0, 1)
    cavity = (0.25 * lip_colour)[None, None, :] * depth[..., None]
    brightness = float(np.clip(patch[lips > 0.5].mean() / 140.0 if (lips > 0.5).any() else 1.0, 0.5, 1.2))
    teeth = np.float32([228, 222, 210]) * brightness
    band = np.clip((0.33 - yy) / 0.1, 0, 1) * np.clip(1 - np.abs((xx - cx) / half_w) ** 3, 0, 1)
    fill = cavity * (1 - band[..., None]) + teeth * band[..., None]
    alpha = cv2.GaussianBlur(cavity_mask, (0, 0), 0.8)
    out = frame.copy() if copy else frame
    out[y0:y1, x0:x1] = np.clip(patch * (1 - alpha[..., None]) + fill * alpha[..., None], 0, 255).astype(np.uint8)
    return out
