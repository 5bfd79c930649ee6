"""Mouth feature information (spec 05, step 2): the mouth-blur image, its gradient map and the mouth keypoints.

Images are RGB uint8 (H, W, 3); landmarks are MediaPipe face-mesh arrays (478, 3) in pixels
(``media.face``). Pure functions, no state.

**Hue.** HSI as usual: I = (R+G+B)/3, S = 1 - 3 min(R,G,B)/(R+G+B), H = theta if B <= G else
360 - theta, with ``theta = arccos(((R-G)+(R-B)) / (2 sqrt((R-G)^2 + (R-B)(G-B))))`` (R, G, B in
[0, 1]). Plain hue puts lips (red, G close to B) at 0-12 or 348-360 degrees, on both sides of the
B = G seam, and skin (orange, G well above B) at 15-25, so no single "H above a threshold" picks
the lips out. The source modifies theta's denominator with a term that raises R's weight against
B; the formula was lost, so this module uses

    theta' = arccos(((R-G)+(R-B)) / (2 sqrt((R-G)^2 + (R-B)(G-B)) + a (R-B) - c (G-B)))

with ``a = 1``, ``c = 4`` (LIP_HUE_TERM). On a red pixel (G = B) the extra term is ``a (R-B)``:
the denominator grows, theta' opens to about 48 degrees, and H lands high. On skin, where G sits
well above B, ``- c (G-B)`` cancels it and theta' closes towards 0. Lips then stand above
LIP_HUE_THRESHOLD and skin below it. ``python -m benchmarks.lip_mask_iou`` measures both formulas
against the face mesh's lip polygon on real faces (README).

**Mouth-blur image.** For every face: the frame is rotated so that the face is upright (the eye
line gives the roll; a face already upright within 2 degrees is not resampled), and the preset
region holding the mouth, the lower face (2.2 d wide, from 0.55 d above the mouth centre to 0.8 d
below it, d = eye-to-mouth distance), is cut out. Within it:
 1. lip pixels are those whose modified H exceeds the threshold; the mouth region is the convex
    hull of the lip pixels within 0.3 d of the face mesh's outer lip ring (so teeth and tongue are
    part of it, red cheeks are not); the region is
    mean-filtered (kernel 0.3 d) -> first intermediate blur image;
 2. skin pixels are those whose (Cb, Cr) lies on or inside the skin ellipse of Hsu, Abdel-Mottaleb
    and Jain (2002) in the CbCr plane (full-range BT.601 YCbCr); they are mean-filtered (kernel
    0.15 d) -> second intermediate blur image;
 3. the two are blended pixel-wise with equal weights (0.5 each).
Colour is the method's cue; where it is missing (a black-and-white photo, strongly tinted light),
the face mesh stands in: the outer lip ring's hull when hue finds less than half of it, the whole
region when less than a fifth of it is skin.
The masks, and the region's own border (over 0.15 d), are feathered so that no seam is drawn into the picture, and the result is rotated
back and pasted into the frame; pixels outside the region are untouched.

**Gradient map.** The grey blur image convolved with a 3x3 Laplacian and then a 5x5 zero-sum
kernel (24 in the centre, -1 elsewhere): ``O = I * A1 * A2``; returned as ``tanh(|O| /
GRADIENT_SCALE)`` in [0, 1): high where the picture is sharp, near 0 where it was blurred.

**Mouth keypoints.** The 40 face-mesh lip landmarks (outer ring then inner ring, ``media.face.LIPS``).
The source uses 25 per frame; the face mesh gives 40 lip points directly.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from media.face import LIPS, LIPS_INNER, LIPS_OUTER, FaceTrack

LIP_HUE_TERM = (1.0, 4.0)  # (a, c) of the extra denominator term a (R-B) - c (G-B)
LIP_HUE_THRESHOLD = 30.0  # degrees: set by benchmarks/lip_mask_iou.py on calibration faces
PLAIN_HUE_THRESHOLD = 334.0  # the plain formula's best threshold on the same faces (for comparison)
SKIN_ELLIPSE = dict(cx=109.38, cy=152.02, theta=2.53, ecx=1.60, ecy=2.41, a=25.39, b=14.03)
REGION = (1.1, 0.55, 0.8)  # lower-face region: half width, height above and below the mouth centre (units of d)
LIP_KERNEL = 0.3  # mean-filter size of the mouth region (units of d)
SKIN_KERNEL = 0.15  # mean-filter size of the skin region (units of d)
UPRIGHT_DEGREES = 2.0
MOUTH_MARGIN = 0.3  # lip pixels count within this distance of the mesh's outer lip ring (units of d)
MIN_HUE_COVER = 0.5  # below this share of the mesh's lip area found by hue, the mesh's lip ring is the mouth region
MIN_SKIN_SHARE = 0.2  # below this share of skin in the region, the whole region counts as skin
FEATHER = 0.15  # the blur fades out over this distance (units of d) before the region's border
A1 = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float32)
A2 = -np.ones((5, 5), dtype=np.float32)
A2[2, 2] = 24.0
GRADIENT_SCALE = 2.0
CHIN = 152
MOUTH_KEYPOINTS = LIPS
CROP_OVERSAMPLE = 2.0  # mouth_blur_crop blurs at most at this many times the crop's resolution


def hsi(rgb: np.ndarray, modified: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue (degrees, [0, 360)), saturation and intensity ([0, 1]) of an RGB uint8 image.

    ``modified`` adds this module's extra term to theta's denominator (see the module docstring).
    """
    x = rgb.astype(np.float32) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    total = r + g + b
    intensity = total / 3.0
    saturation = 1.0 - 3.0 * np.minimum(np.minimum(r, g), b) / np.maximum(total, 1e-6)
    num = (r - g) + (r - b)
    den = 2.0 * np.sqrt(np.maximum((r - g) ** 2 + (r - b) * (g - b), 0.0))
    if modified:
        a, c = LIP_HUE_TERM
        den = den + a * (r - b) - c * (g - b)
    theta = np.degrees(np.arccos(np.clip(num / np.maximum(den, 1e-6), -1.0, 1.0)))
    theta = np.where(den <= 1e-6, 0.0, theta)  # grey (R = G = B) or a term that cancels the denominator: no hue
    hue = np.where(b <= g, theta, 360.0 - theta) % 360.0
    return hue.astype(np.float32), saturation.astype(np.float32), intensity.astype(np.float32)


def lip_pixels(rgb: np.ndarray, modified: bool = True, threshold: float | None = None) -> np.ndarray:
    """Boolean mask of the pixels whose hue exceeds the lip threshold (apply it to a face region)."""
    if threshold is None:
        threshold = LIP_HUE_THRESHOLD if modified else PLAIN_HUE_THRESHOLD
    hue, _, _ = hsi(rgb, modified)
    return hue > threshold


def skin_pixels(rgb: np.ndarray) -> np.ndarray:
    """Boolean mask of the pixels inside the CbCr skin ellipse (Hsu et al. 2002, full-range BT.601)."""
    x = rgb.astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    cb = 128.0 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128.0 + 0.5 * r - 0.418688 * g - 0.081312 * b
    e = SKIN_ELLIPSE
    ct, st = np.cos(e["theta"]), np.sin(e["theta"])
    u = ct * (cb - e["cx"]) + st * (cr - e["cy"])
    v = -st * (cb - e["cx"]) + ct * (cr - e["cy"])
    return (u - e["ecx"]) ** 2 / e["a"] ** 2 + (v - e["ecy"]) ** 2 / e["b"] ** 2 <= 1.0


@dataclass
class FaceRegion:
    """The upright lower-face region of one face: where the mouth-blur image is made."""

    to_patch: np.ndarray  # 2x3 affine frame -> patch
    size: tuple[int, int]  # patch (w, h)
    d: float  # eye-to-mouth distance (pixels)
    mouth: np.ndarray  # mouth centre in patch pixels (x, y)
    rotated: bool  # False when the face was upright and the patch is a plain cut-out

    def cut(self, frame: np.ndarray) -> np.ndarray:
        w, h = self.size
        return cv2.warpAffine(frame, self.to_patch, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def points(self, xy: np.ndarray) -> np.ndarray:
        """Frame pixel coordinates -> patch pixel coordinates."""
        return xy @ self.to_patch[:, :2].T + self.to_patch[:, 2]


def face_region(landmarks: np.ndarray) -> FaceRegion:
    """The preset region holding the mouth, made upright: rotation from the eye line, checked with the chin."""
    cx, cy, d, angle = FaceTrack(landmarks[None].astype(np.float32), np.array([True]), (0, 0)).geometry(smooth=1)[0]
    # the chin must be below the eyes once the roll is undone; the eye line fixes the roll up to a half turn
    chin = landmarks[CHIN, :2] - (cx, cy)
    if -np.sin(angle) * chin[0] + np.cos(angle) * chin[1] < 0:
        angle += np.pi
    rotated = abs(np.degrees(angle)) > UPRIGHT_DEGREES
    if not rotated:
        angle = 0.0
    half_w, above, below = REGION
    w, h = int(np.ceil(2 * half_w * d)), int(np.ceil((above + below) * d))
    m = cv2.getRotationMatrix2D((float(cx), float(cy)), float(np.degrees(angle)), 1.0)
    m[0, 2] += half_w * d - cx
    m[1, 2] += above * d - cy
    if not rotated:  # whole-pixel cut-out: no resampling of an upright face
        m[:, 2] = np.round(m[:, 2])
    return FaceRegion(m, (max(w, 1), max(h, 1)), float(d), np.array([half_w * d, above * d]), rotated)


def _odd(n: float) -> int:
    n = max(3, int(round(n)))
    return n if n % 2 else n + 1


# hull_mask's dilation: a pixel this far beyond the radius still counts. With 0.25 the distance transform
# matches OpenCV's k x k elliptical kernel on all but 0.5 % of a mask's pixels (40 random hulls, k 3..119),
# 8 times faster at 1080p's kernel sizes (docs/performance.md)
DISK_EDGE = 0.25


def hull_mask(points: np.ndarray, shape: tuple[int, int], grow_px: float | None = None) -> np.ndarray:
    """(h, w) uint8 0/1: the convex hull of ``points`` (pixels), widened by a disk of diameter ``grow_px``
    (rounded up to an odd size of at least 3) unless None; all zeros when a point is missing."""
    mask = np.zeros(shape, np.uint8)
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) < 3 or not np.isfinite(pts).all():
        return mask
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(pts).astype(np.int32)), 1)
    if grow_px is not None:  # every pixel within the disk's radius of the hull: a dilation by a disk, in O(pixels)
        k = _odd(grow_px)
        far = cv2.distanceTransform(1 - mask, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        mask = (far <= (k - 1) / 2 + DISK_EDGE).astype(np.uint8)
    return mask


def mouth_region_mask(patch: np.ndarray, region: FaceRegion, outer_lips: np.ndarray | None = None) -> np.ndarray:
    """The mouth region of a lower-face patch: the convex hull of the lip pixels near the mouth (uint8 0/1).

    ``outer_lips``: the face mesh's outer lip ring in patch pixels. Lip pixels count only within
    MOUTH_MARGIN of it (without it: within a mouth-sized ellipse round the mouth centre); when the
    hue finds less than MIN_HUE_COVER of the ring's area (a grey picture, coloured light), the
    ring's hull is used.
    """
    lips = lip_pixels(patch).astype(np.uint8)
    # keep only lip pixels near the mouth: red cheeks, a flushed chin or a red collar are not lips
    keep = np.zeros_like(lips)
    mesh = None
    if outer_lips is not None:
        mesh = hull_mask(outer_lips, lips.shape)
        keep = hull_mask(outer_lips, lips.shape, MOUTH_MARGIN * region.d)
    else:
        cv2.ellipse(keep, tuple(int(v) for v in region.mouth), (int(0.75 * region.d), int(0.45 * region.d)),
                    0, 0, 360, 1, -1)
    lips &= keep
    pts = cv2.findNonZero(lips)
    mask = hull_mask(pts.reshape(-1, 2) if pts is not None else np.zeros((0, 2)), lips.shape)
    if mesh is not None and (mask & mesh).sum() < MIN_HUE_COVER * mesh.sum():  # no colour cue (grey picture, odd light)
        mask = mesh
    return mask


def _edge_window(size: tuple[int, int], ramp: int) -> np.ndarray:
    """(h, w) weights rising from 0 at the patch border to 1 at ``ramp`` pixels in: no seam where the patch ends."""
    w, h = size
    x = np.minimum(np.arange(w), np.arange(w)[::-1]).astype(np.float32)
    y = np.minimum(np.arange(h), np.arange(h)[::-1]).astype(np.float32)
    return np.clip(np.minimum(x[None, :], y[:, None]) / ramp, 0.0, 1.0)


def _blend_blur(patch: np.ndarray, mask: np.ndarray, kernel: int) -> np.ndarray:
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), max(kernel / 6.0, 0.5))[..., None]
    blurred = cv2.blur(patch, (kernel, kernel)).astype(np.float32)
    return soft * blurred + (1.0 - soft) * patch.astype(np.float32)


def mouth_blur(frame: np.ndarray, faces: list[np.ndarray]) -> np.ndarray:
    """The mouth-blur image of ``frame`` (RGB uint8): every face in ``faces`` (landmark arrays) blurred.

    Frames with no face come back unchanged (a copy).
    """
    out = frame.copy()
    height, width = frame.shape[:2]
    for landmarks in faces:
        region = face_region(landmarks)
        patch = region.cut(frame)
        k_lip, k_skin = _odd(LIP_KERNEL * region.d), _odd(SKIN_KERNEL * region.d)
        first = _blend_blur(patch, mouth_region_mask(patch, region, region.points(landmarks[LIPS_OUTER, :2])), k_lip)
        skin = skin_pixels(patch)
        if skin.mean() < MIN_SKIN_SHARE:  # no colour cue: the whole lower-face region stands in for skin
            skin = np.ones_like(skin)
        second = _blend_blur(patch, skin.astype(np.uint8), k_skin)
        window = _edge_window(region.size, max(2, int(FEATHER * region.d)))[..., None]
        blurred = window * (0.5 * first + 0.5 * second) + (1.0 - window) * patch
        blurred = np.clip(blurred + 0.5, 0, 255).astype(np.uint8)
        if region.rotated:
            back = cv2.invertAffineTransform(region.to_patch)
            full = cv2.warpAffine(blurred, back, (width, height), flags=cv2.INTER_LINEAR)
            inside = cv2.warpAffine(np.ones(blurred.shape[:2], np.float32), back, (width, height),
                                    flags=cv2.INTER_LINEAR)[..., None]
            out = np.clip(inside * full + (1.0 - inside) * out + 0.5, 0, 255).astype(np.uint8)
        else:
            x0, y0 = int(-region.to_patch[0, 2]), int(-region.to_patch[1, 2])
            w, h = region.size
            fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + w, width), min(y0 + h, height)
            if fx1 > fx0 and fy1 > fy0:
                out[fy0:fy1, fx0:fx1] = blurred[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
    return out


def source_box(to_dst: np.ndarray, size: tuple[int, int], shape: tuple[int, ...], margin: int = 1
               ) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the pixels of a frame of ``shape`` that the 2x3 affine ``to_dst`` maps onto an image
    of ``size`` (w, h), widened by ``margin`` for interpolation and clipped to the frame (maybe empty)."""
    w, h = size
    back = cv2.invertAffineTransform(np.asarray(to_dst, np.float64))
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64) @ back[:, :2].T + back[:, 2]
    x0, y0 = np.floor(corners.min(0)).astype(int) - margin
    x1, y1 = np.ceil(corners.max(0)).astype(int) + margin
    return max(int(x0), 0), max(int(y0), 0), min(int(x1), shape[1]), min(int(y1), shape[0])


def mouth_blur_crop(frame: np.ndarray, landmarks: np.ndarray, to_crop: np.ndarray, size: tuple[int, int],
                    oversample: float | None = CROP_OVERSAMPLE) -> np.ndarray:
    """The mouth-blur image of one face, cut with the 2x3 affine ``to_crop`` (e.g. media.face.crop_transform)
    to ``size`` (w, h).

    Only the part of the frame that the face's blur region and the crop cover is processed: the same crop as
    blurring the whole frame (to one grey level), at a fraction of the cost for a face in a large frame. A
    face whose pixels are finer than ``oversample`` times the crop's is first shrunk to that resolution
    (pixel averaging) and blurred there: the crop keeps no finer detail (None: blur at the frame's own)."""
    region = face_region(landmarks)
    boxes = [source_box(region.to_patch, region.size, frame.shape, 2), source_box(to_crop, size, frame.shape, 2)]
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    if x1 <= x0 or y1 <= y0:
        x0, y0, x1, y1 = 0, 0, frame.shape[1], frame.shape[0]
    shifted = np.array(landmarks, dtype=np.result_type(landmarks, np.float32))
    shifted[:, :2] -= (x0, y0)
    m = np.array(to_crop, dtype=np.float64)
    m[:, 2] += m[:, :2] @ (x0, y0)
    part = frame[y0:y1, x0:x1]
    shrink = None if oversample is None else oversample * np.sqrt(abs(np.linalg.det(m[:, :2])))
    if shrink is not None and shrink < 1.0:
        w, h = max(1, round((x1 - x0) * shrink)), max(1, round((y1 - y0) * shrink))
        part = cv2.resize(part, (w, h), interpolation=cv2.INTER_AREA)
        fx, fy = w / (x1 - x0), h / (y1 - y0)  # pixel centres: u + 0.5 = (x + 0.5) * fx
        shifted[:, 0] = (shifted[:, 0] + 0.5) * fx - 0.5
        shifted[:, 1] = (shifted[:, 1] + 0.5) * fy - 0.5
        shifted[:, 2] *= fx
        m[:, 2] += m[:, :2] @ (0.5 / fx - 0.5, 0.5 / fy - 0.5)
        m[:, :2] = m[:, :2] @ np.diag((1 / fx, 1 / fy))
    return cv2.warpAffine(mouth_blur(part, [shifted]), m, size, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


def gradient_map(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 in [0, 1]: ``tanh(|I * A1 * A2| / GRADIENT_SCALE)`` of the grey image in [0, 1]."""
    grey = image.astype(np.float32) / 255.0
    if grey.ndim == 3:
        grey = grey @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    o = cv2.filter2D(cv2.filter2D(grey, cv2.CV_32F, A1, borderType=cv2.BORDER_REFLECT), cv2.CV_32F, A2,
                     borderType=cv2.BORDER_REFLECT)
    return np.tanh(np.abs(o) / GRADIENT_SCALE).astype(np.float32)  # float32 rounds the strongest edges to 1


def mouth_keypoints(landmarks: np.ndarray) -> np.ndarray:
    """(40, 2) mouth keypoints in pixels: the face mesh's lip landmarks, outer ring then inner ring."""
    return np.asarray(landmarks, dtype=np.float32)[MOUTH_KEYPOINTS, :2]


def lip_polygon_mask(landmarks: np.ndarray, shape: tuple[int, int], to_patch: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of the lips as the face mesh draws them: inside the outer ring, outside the inner one."""
    outer, inner = landmarks[LIPS_OUTER, :2], landmarks[LIPS_INNER, :2]
    if to_patch is not None:
        outer, inner = outer @ to_patch[:, :2].T + to_patch[:, 2], inner @ to_patch[:, :2].T + to_patch[:, 2]
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(outer).astype(np.int32)], 1)
    cv2.fillPoly(mask, [np.round(inner).astype(np.int32)], 0)
    return mask.astype(bool)
