"""Mouth feature information (spec 05, step 2) on real faces: hue, lip and skin masks, mouth blur, gradients, keypoints."""
import numpy as np
import pytest
from PIL import Image

from media.face import LIPS_OUTER, face_in_image
from media.mouth import (
    CROP_OVERSAMPLE,
    face_region,
    gradient_map,
    hsi,
    lip_pixels,
    lip_polygon_mask,
    mouth_blur,
    mouth_blur_crop,
    mouth_keypoints,
    mouth_region_mask,
    skin_pixels,
)

PHOTOS = ["fr_obama.jpg", "fnp_angelina_jolie.jpg", "dlib_Tom_Cruise_avp_2014_4.jpg", "st_happy.png", "fr_biden2.jpg"]
GREY = "gfpgan_Julia_Roberts_crop.png"  # a black-and-white photo


def load(path, max_side=640):
    img = Image.open(path).convert("RGB")
    img.thumbnail((max_side, max_side))
    return np.ascontiguousarray(np.asarray(img))


@pytest.fixture(scope="module")
def faces(media):
    out = []
    for name in PHOTOS:
        img = load(media / "faces" / name)
        lm = face_in_image(img)
        assert lm is not None, name
        out.append((name, img, lm))
    return out


def test_hsi_matches_the_textbook_formula_on_primaries():
    px = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128]]], dtype=np.uint8)
    h, s, i = hsi(px, modified=False)
    assert np.allclose(h[0, :3], [0, 120, 240], atol=0.5)
    assert np.allclose(s[0], [1, 1, 1, 0], atol=1e-5)
    assert np.allclose(i[0], [1 / 3, 1 / 3, 1 / 3, 128 / 255], atol=1e-5)


def _iou(a, b):
    return np.logical_and(a, b).sum() / max(np.logical_or(a, b).sum(), 1)


def test_modified_hue_separates_lips_better_than_plain(faces):
    """Within the mouth area of real faces, the modified hue's lip mask overlaps the mesh's lip polygon more."""
    plain, modified = [], []
    for _, img, lm in faces:
        region = face_region(lm)
        patch = region.cut(img)
        truth = lip_polygon_mask(lm, patch.shape[:2], region.to_patch)
        area = np.zeros(patch.shape[:2], bool)
        x0, y0 = (region.mouth - [0.75 * region.d, 0.45 * region.d]).astype(int)
        x1, y1 = (region.mouth + [0.75 * region.d, 0.45 * region.d]).astype(int)
        area[max(y0, 0):y1, max(x0, 0):x1] = True
        plain.append(_iou(lip_pixels(patch, modified=False) & area, truth & area))
        modified.append(_iou(lip_pixels(patch, modified=True) & area, truth & area))
    assert np.mean(modified) > np.mean(plain) + 0.1
    assert np.mean(modified) > 0.3


def test_skin_ellipse_finds_skin_on_cheeks_not_in_the_background(faces):
    for name, img, lm in faces:
        region = face_region(lm)
        assert skin_pixels(region.cut(img)).mean() > 0.6, name  # the lower face is mostly skin
    # a grey or blue picture has no skin
    assert not skin_pixels(np.full((8, 8, 3), (60, 90, 200), np.uint8)).any()
    assert not skin_pixels(np.full((8, 8, 3), 128, np.uint8)).any()


def test_mouth_region_covers_the_lips(faces, media):
    grey = load(media / "faces" / GREY)
    for name, img, lm in faces + [(GREY, grey, face_in_image(grey))]:
        region = face_region(lm)
        patch = region.cut(img)
        mask = mouth_region_mask(patch, region, region.points(lm[LIPS_OUTER, :2])).astype(bool)
        truth = lip_polygon_mask(lm, patch.shape[:2], region.to_patch)
        assert mask[truth].mean() > 0.5, name  # most of the lips are in the region
        assert mask.sum() < 4 * truth.sum(), name  # and it is mouth-sized, not the whole lower face


def _sharpness(img, mask):
    return gradient_map(img)[mask].mean()


def test_mouth_blur_blurs_the_mouth_and_leaves_the_rest(faces, media):
    grey = load(media / "faces" / GREY)
    for name, img, lm in faces + [(GREY, grey, face_in_image(grey))]:
        out = mouth_blur(img, [lm])
        assert out.shape == img.shape and out.dtype == np.uint8
        lips = lip_polygon_mask(lm, img.shape[:2])
        assert _sharpness(out, lips) < 0.8 * _sharpness(img, lips), name
        changed = np.any(out != img, axis=2)
        # untouched above the nose: rows above the eyes never change
        eyes_y = lm[[33, 133, 362, 263], 1].max()
        assert not changed[: int(eyes_y)].any(), name
        # and the change is around the mouth: its centre of mass is near the lips
        ys, xs = np.nonzero(changed)
        mouth = lm[[13, 14, 61, 291], :2].mean(0)
        d = np.linalg.norm(mouth - lm[[33, 133, 362, 263], :2].mean(0))
        assert np.hypot(xs.mean() - mouth[0], ys.mean() - mouth[1]) < 0.4 * d, name


def test_mouth_blur_without_faces_is_a_copy(faces):
    _, img, _ = faces[0]
    out = mouth_blur(img, [])
    assert np.array_equal(out, img) and out is not img


def test_every_face_is_blurred(faces):
    (_, a, _), (_, b, _) = faces[0], faces[2]
    h = min(a.shape[0], b.shape[0])
    a, b = a[:h], b[:h]
    both = np.ascontiguousarray(np.concatenate([a, b], axis=1))
    found = face_in_image(both, all_faces=True)
    assert len(found) == 2
    out = mouth_blur(both, found)
    for lm in found:
        lips = lip_polygon_mask(lm, both.shape[:2])
        assert _sharpness(out, lips) < 0.8 * _sharpness(both, lips)


def test_a_tilted_face_is_rotated_upright_first(faces):
    _, img, _ = faces[0]
    rotated = np.ascontiguousarray(np.rot90(img))  # the face lies on its side
    lm = face_in_image(rotated)
    assert lm is not None
    region = face_region(lm)
    assert region.rotated
    # the upright patch shows the mouth below the nose: lips' patch y is larger than the nose tip's
    lips_y = region.points(mouth_keypoints(lm))[:, 1].mean()
    nose_y = region.points(lm[[1], :2])[0, 1]
    assert lips_y > nose_y
    out = mouth_blur(rotated, [lm])
    lips = lip_polygon_mask(lm, rotated.shape[:2])
    assert _sharpness(out, lips) < 0.8 * _sharpness(rotated, lips)


def test_the_crop_blurs_only_the_face_yet_matches_the_whole_frame(faces):
    """mouth_blur_crop processes the face's part of the frame only: the same crop as blurring the whole frame
    (to one grey level: the warp's interpolation of a shifted frame), upright and tilted, near an edge too."""
    import cv2

    from media.face import FaceTrack, crop_transform

    for img in (faces[0][1], np.ascontiguousarray(np.rot90(faces[0][1])), faces[1][1][:, faces[1][1].shape[1] // 3:]):
        img = np.ascontiguousarray(img)
        lm = face_in_image(img)
        assert lm is not None
        geo = FaceTrack(lm[None].astype(np.float32), np.array([True]), img.shape[1::-1]).geometry(smooth=1)[0]
        m = crop_transform(geo, "lower", (96, 96))
        whole = cv2.warpAffine(mouth_blur(img, [lm]), m, (96, 96), flags=cv2.INTER_AREA,
                               borderMode=cv2.BORDER_REPLICATE)
        part = mouth_blur_crop(img, lm, m, (96, 96), oversample=None)
        assert part.shape == whole.shape and np.abs(part.astype(int) - whole).max() <= 1
        assert np.mean(part != whole) < 0.01


def test_a_large_face_is_blurred_at_the_crops_resolution(faces):
    """A face much finer than the crop is shrunk to CROP_OVERSAMPLE x the crop's resolution before the blur: the
    crop stays within a few grey levels of blurring at full resolution (a photo enlarged 4 times), and a face
    already that coarse takes the full-resolution path untouched."""
    import cv2

    from media.face import FaceTrack, crop_transform

    img = faces[0][1]
    big = cv2.resize(img, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    for picture, shrinks in ((img, False), (big, True)):
        lm = face_in_image(picture)
        geo = FaceTrack(lm[None].astype(np.float32), np.array([True]), picture.shape[1::-1]).geometry(smooth=1)[0]
        m = crop_transform(geo, "lower", (96, 48))
        assert (CROP_OVERSAMPLE * 96 / (3.0 * geo[2]) < 1) == shrinks
        full = mouth_blur_crop(picture, lm, m, (96, 48), oversample=None).astype(np.float64)
        work = mouth_blur_crop(picture, lm, m, (96, 48))
        if not shrinks:
            assert np.array_equal(work, full)
        else:
            psnr = 10 * np.log10(255 ** 2 / np.mean((work - full) ** 2))
            assert psnr > 38, psnr
            assert not np.array_equal(work, full)  # the shrunk path ran


def test_gradient_map_properties(faces):
    flat = np.full((32, 32, 3), 117, np.uint8)
    assert np.allclose(gradient_map(flat), 0.0)  # zero-sum kernels: a flat picture has no gradient
    _, img, lm = faces[0]
    g = gradient_map(img)
    assert g.shape == img.shape[:2] and g.dtype == np.float32 and 0 <= g.min() and g.max() <= 1
    blurred = mouth_blur(img, [lm])
    lips = lip_polygon_mask(lm, img.shape[:2])
    # where the mouth-blur image is blurred the map is darker than the same place in the sharp photo
    assert gradient_map(blurred)[lips].mean() < g[lips].mean()


def test_mouth_keypoints_outline_the_mouth(faces):
    for name, img, lm in faces:
        k = mouth_keypoints(lm)
        assert k.shape == (40, 2) and k.dtype == np.float32
        outer, inner = k[:20], k[20:]
        # the inner ring lies within the outer ring's extent
        assert outer[:, 0].min() <= inner[:, 0].min() and inner[:, 0].max() <= outer[:, 0].max(), name
        # the mouth is below the eyes and between them horizontally
        eyes = lm[[33, 263], :2]
        assert k[:, 1].min() > eyes[:, 1].max(), name
        assert eyes[:, 0].min() < k[:, 0].mean() < eyes[:, 0].max(), name
