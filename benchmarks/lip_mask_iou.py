"""Does the modified hue earn its place? Lip masks from hue thresholds against the face mesh's lip polygon.

For every face, the upright lower-face region of ``media.mouth`` is cut out; within the mouth
ellipse that the mouth-blur image uses, the pixels whose hue (plain or modified formula) exceeds a
threshold are compared with the lip polygon of the face mesh (inside the outer lip ring, outside
the inner one): intersection over union. Each formula's threshold is chosen on the calibration
faces (the photos in ``faces/``) and the IoU is reported on other people: one frame from the
middle of every talking clip in ``talking_video/``. Also writes the README's picture of the mouth
features, made from the public-domain astronaut portrait bundled with scikit-image.

    python -m benchmarks.lip_mask_iou        # -> benchmarks/results/lip_mask_iou.json, docs/mouth_features.png
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from media.face import face_in_image
from media.io import MediaError, iter_video_frames, probe
from media.mouth import face_region, hsi, lip_polygon_mask
from models.provenance import save_results

THRESHOLDS = np.arange(0.0, 360.0, 2.0)


def load_rgb(path: Path) -> np.ndarray | None:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def middle_frame(path: Path) -> np.ndarray | None:
    try:
        info = probe(path)
        target = info.duration / 2 if info.duration else 0.0
        for _, t, frame in iter_video_frames(path):
            if t >= target:
                return frame
    except MediaError:
        return None
    return None


def face_case(rgb: np.ndarray):
    """(hue plain, hue modified, lip polygon, evaluation area) in the upright region of the largest face, or None."""
    landmarks = face_in_image(rgb)
    if landmarks is None:
        return None
    region = face_region(landmarks)
    patch = region.cut(rgb)
    h, w = patch.shape[:2]
    area = np.zeros((h, w), np.uint8)
    cv2.ellipse(area, tuple(int(v) for v in region.mouth), (int(0.75 * region.d), int(0.45 * region.d)), 0, 0, 360, 1, -1)
    polygon = lip_polygon_mask(landmarks, (h, w), region.to_patch)
    return hsi(patch, modified=False)[0], hsi(patch, modified=True)[0], polygon, area.astype(bool)


def ious(case, modified: bool) -> np.ndarray:
    """IoU at every threshold of THRESHOLDS."""
    plain, mod, polygon, area = case
    hue = (mod if modified else plain)[area]
    truth = polygon[area]
    out = np.empty(len(THRESHOLDS))
    for i, t in enumerate(THRESHOLDS):
        pred = hue > t
        union = np.logical_or(pred, truth).sum()
        out[i] = np.logical_and(pred, truth).sum() / union if union else 0.0
    return out


def figure(out: Path) -> None:
    """Astronaut portrait: lower face, lip masks (plain, modified), mouth-blur image, gradient map, keypoints."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from skimage import data

    from media.mouth import gradient_map, lip_pixels, mouth_blur, mouth_keypoints

    rgb = np.ascontiguousarray(data.astronaut())
    landmarks = face_in_image(rgb)
    region = face_region(landmarks)
    blur = mouth_blur(rgb, [landmarks])
    panels = [("input (lower face)", region.cut(rgb)),
              ("plain hue > threshold", lip_pixels(region.cut(rgb), modified=False)),
              ("modified hue > threshold", lip_pixels(region.cut(rgb), modified=True)),
              ("mouth-blur image", region.cut(blur)),
              ("gradient map of the blur image", region.cut((gradient_map(blur) * 255).astype(np.uint8))),
              ("mouth keypoints", region.cut(rgb))]
    fig = Figure(figsize=(15, 2.9))
    for i, (title, img) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.imshow(img, cmap="gray")
        if title == "mouth keypoints":
            pts = region.points(mouth_keypoints(landmarks))
            ax.scatter(pts[:, 0], pts[:, 1], s=6, c="cyan")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--media", type=Path, default=Path(os.environ.get("AVSTUDIO_MEDIA", "../shared/media")))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/lip_mask_iou.json"))
    ap.add_argument("--figure", type=Path, default=Path("docs/mouth_features.png"))
    args = ap.parse_args(argv)

    calibration, evaluation = [], []
    for p in tqdm(sorted((args.media / "faces").iterdir()), desc="photos", unit="photo"):
        rgb = load_rgb(p)
        case = face_case(rgb) if rgb is not None else None
        if case is not None:
            calibration.append((p.name, case))
    for p in tqdm(sorted((args.media / "talking_video").rglob("*.mp4")), desc="clips", unit="clip"):
        rgb = middle_frame(p)
        case = face_case(rgb) if rgb is not None else None
        if case is not None:
            evaluation.append((p.name, case))
    if not calibration or not evaluation:
        print(f"error: no faces found under {args.media}", file=sys.stderr)
        return 2

    result = {"calibration_faces": len(calibration), "evaluation_faces": len(evaluation)}
    for name, modified in (("plain", False), ("modified", True)):
        cal = np.mean([ious(c, modified) for _, c in calibration], axis=0)
        best = int(np.argmax(cal))
        per_face = [float(ious(c, modified)[best]) for _, c in evaluation]
        result[name] = {"threshold": float(THRESHOLDS[best]), "calibration_iou": float(cal[best]),
                        "evaluation_iou_mean": float(np.mean(per_face)),
                        "evaluation_iou_median": float(np.median(per_face)),
                        "per_face": dict(zip([n for n, _ in evaluation], per_face))}
    better = np.mean([result["modified"]["per_face"][n] > result["plain"]["per_face"][n] for n, _ in evaluation])
    result["modified_better_share"] = float(better)
    save_results(args.out, result, module=__spec__.name, argv=argv)  # no trained weights: MediaPipe and hue only
    figure(args.figure)
    print(f"calibration: {len(calibration)} photos; evaluation: {len(evaluation)} video frames of other people")
    for name in ("plain", "modified"):
        r = result[name]
        print(f"  {name:9s} threshold {r['threshold']:5.1f}  calibration IoU {r['calibration_iou']:.3f}  "
              f"evaluation IoU mean {r['evaluation_iou_mean']:.3f} median {r['evaluation_iou_median']:.3f}")
    print(f"  modified beats plain on {better:.0%} of the evaluation faces")
    return 0


if __name__ == "__main__":
    sys.exit(main())
