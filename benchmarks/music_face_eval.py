"""Quality of the music-face pipeline on held-out photos and held-out music (issue 4 targets).

Every ``--photo-step``-th photo of ``faces/`` (none used to measure the control vectors, which come from
MEAD clips) is animated by one of the music tracks held out of the audio encoder's training (cycled;
the first ``--seconds`` of each), with the expression mix ``--expression``. On each output:

* expression amplitude measured independently: the face mesh is tracked on the output video and the
  mean displacement of the mouth, eye and brow landmarks from the photo's own (in eye distances) is
  correlated with the weight curve: per clip and pooled over all clips (target r >= 0.8 pooled);
* the face outline stays put: median drift of the outline landmarks over face height (target <= 2 %);
* every output frame still has a detectable face.

Calm vs intense: the mean weight of each held-out track over its whole length, three calm against
three intense ones (``models.audio_encoder.CALM`` / ``INTENSE``, labelled by title and genre
before any training; target gap >= 0.1), reported beside two descriptors of each track that do not come
from the encoder (RMS level and detected onsets per second).

    python -m benchmarks.music_face_eval [--out benchmarks/results/music_face_eval.json] [--figure docs/music_face_frames.png]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from media.face import LIPS, FaceTracker, track_video
from media.io import iter_video_frames, read_audio, read_image, write_audio
from models.audio_encoder import CALM, INTENSE, SAMPLE_RATE, frame_weights
from models.face_controls import BROWS, EYES, FACE_OVAL, eye_distance
from models.provenance import save_results, subfolders
from pipelines import music_face as mf
from pipelines.common import AVStudioError, settings

CORE = LIPS + EYES + BROWS  # the detail landmarks whose movement is the expression


def amplitude(track, photo_landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per output frame: (mean displacement of the detail landmarks, median outline drift), in eye distances
    and face heights of the photo."""
    ref = photo_landmarks[:, :2]
    eye = eye_distance(ref)
    height = ref[:, 1].max() - ref[:, 1].min()
    lm = track.landmarks[..., :2]
    detail = np.linalg.norm(lm[:, CORE] - ref[CORE], axis=2).mean(axis=1) / eye
    outline = np.median(np.linalg.norm(lm[:, FACE_OVAL] - ref[FACE_OVAL], axis=2), axis=1) / height
    return detail, outline


def reference_landmarks(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The photo's landmarks as the output's tracker sees them: the photo at the output's size, tracked
    (video mode, as the output is) over a few still frames and averaged, so the two landmark sets differ
    only by what the pipeline changed, not by detector mode or scale."""
    if (image.shape[1], image.shape[0]) != tuple(size):
        image = cv2.resize(image, tuple(size), interpolation=cv2.INTER_AREA)
    with FaceTracker() as tracker:
        track = tracker.track(iter([image] * 5))
    return np.nanmean(track.landmarks, axis=0)


def track_descriptors(audio: np.ndarray, sr: int = SAMPLE_RATE) -> dict:
    """RMS level (dBFS) and onsets per second: independent of the encoder."""
    import librosa

    rms = librosa.feature.rms(y=audio)[0]
    onsets = librosa.onset.onset_detect(y=audio, sr=sr, units="time")
    return {"rms_dbfs": float(20 * np.log10(max(np.sqrt(np.mean(rms ** 2)), 1e-6))),
            "onsets_per_second": float(len(onsets) / max(len(audio) / sr, 1e-6))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--media", type=Path, default=Path(os.environ.get("AVSTUDIO_MEDIA", "../shared/media")))
    ap.add_argument("--photo-step", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--expression", default="smile+open_mouth+raised_brows")
    ap.add_argument("--model", default=None,
                    help="folder or Hub id holding audio_encoder/ and face_controls/ (default: the pipeline's)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/music_face_eval.json"))
    ap.add_argument("--figure", type=Path, default=Path("docs/music_face_frames.png"))
    args = ap.parse_args(argv)

    where = args.model or settings().music_face
    model = mf.load_model(where)
    encoder = model.encoder
    music = {p.stem: p for p in sorted((args.media / "music").iterdir()) if p.stem in CALM + INTENSE}
    tracks = [music[k] for k in CALM + INTENSE if k in music]
    photos = sorted((args.media / "faces").glob("*"))[::args.photo_step]
    if not tracks or not photos:
        print("error: no held-out music or no photos under --media", file=sys.stderr)
        return 2

    calm_rows = []
    for path in tqdm(tracks, desc="held-out tracks", unit="track"):
        audio = read_audio(path, sr=SAMPLE_RATE)
        w = frame_weights(encoder, audio, mf.DEFAULT_FPS)
        calm_rows.append({"track": path.stem, "label": "calm" if path.stem in CALM else "intense",
                          "mean_weight": float(w.mean()), "weight_p90": float(np.percentile(w, 90)),
                          **track_descriptors(audio)})
    calm_mean = float(np.mean([r["mean_weight"] for r in calm_rows if r["label"] == "calm"]))
    intense_mean = float(np.mean([r["mean_weight"] for r in calm_rows if r["label"] == "intense"]))

    rows, pooled_w, pooled_a, figure_frames = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for i, photo in enumerate(tqdm(photos, desc="held-out photos", unit="photo")):
            track_path = tracks[i % len(tracks)]
            excerpt = tmp / f"{track_path.stem}.wav"
            write_audio(excerpt, read_audio(track_path, sr=SAMPLE_RATE, end=args.seconds), SAMPLE_RATE)
            out = tmp / f"{photo.stem}.mp4"
            try:
                result = mf.music_face(photo, excerpt, out_path=out, expression=args.expression, model=model)
            except AVStudioError as err:
                rows.append({"photo": photo.name, "error": str(err)})
                continue
            photo_lm = reference_landmarks(read_image(photo), (result.width, result.height))
            track, _ = track_video(out)
            w = np.asarray(result.weights)
            detail, outline = amplitude(track, photo_lm)
            ok = track.found & np.isfinite(detail)
            r = float(np.corrcoef(w[ok], detail[ok])[0, 1]) if ok.sum() > 2 and np.std(w[ok]) > 0 else float("nan")
            pooled_w.append(w[ok])
            pooled_a.append(detail[ok])
            rows.append({"photo": photo.name, "music": track_path.stem, "frames": result.n_frames,
                         "size": [result.width, result.height], "faces_in_photo": result.faces_found,
                         "face_found_fraction": float(track.found.mean()), "amplitude_weight_r": r,
                         "weight_std": float(np.std(w)), "outline_drift_median": float(np.nanmedian(outline)),
                         "amplitude_max_eye_units": float(np.nanmax(detail))})
            tqdm.write(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in rows[-1].items()}))
            if len(figure_frames) < 4:
                k_lo, k_hi = int(np.argmin(w)), int(np.argmax(w))
                frames = {k: f for k, _, f in iter_video_frames(out) if k in (k_lo, k_hi)}
                figure_frames.append((photo.stem, read_image(photo), frames[k_lo], w[k_lo], frames[k_hi], w[k_hi]))

    measured = [r for r in rows if "error" not in r]
    if not measured:
        print("error: no photo could be animated: " + "; ".join(r["error"] for r in rows), file=sys.stderr)
        return 1
    pw, pa = np.concatenate(pooled_w), np.concatenate(pooled_a)
    summary = {
        "clips": len(measured), "errors": len(rows) - len(measured), "expression": args.expression,
        "pooled_amplitude_weight_r": float(np.corrcoef(pw, pa)[0, 1]),
        "per_clip_r_median": float(np.nanmedian([r["amplitude_weight_r"] for r in measured])),
        "outline_drift_median": float(np.median([r["outline_drift_median"] for r in measured])),
        "outline_drift_max": float(np.max([r["outline_drift_median"] for r in measured])),
        "face_found_fraction_min": float(np.min([r["face_found_fraction"] for r in measured])),
        "calm_mean_weight": calm_mean, "intense_mean_weight": intense_mean, "calm_intense_gap": intense_mean - calm_mean,
    }
    save_results(args.out, {"summary": summary, "tracks": calm_rows, "per_clip": rows}, module=__spec__.name,
                 argv=argv, weights=subfolders(where, ("audio_encoder", "face_controls")))
    if figure_frames and args.figure:
        save_figure(figure_frames, args.figure)
    for k, v in summary.items():
        print(f"  {k:30s} {v:.3f}" if isinstance(v, float) else f"  {k:30s} {v}")
    return 0


def save_figure(items: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(items), 3, figsize=(9, 3.1 * len(items)))
    axes = np.atleast_2d(axes)
    for row, (name, photo, lo, w_lo, hi, w_hi) in zip(axes, items):
        for ax, img, title in zip(row, (photo, lo, hi), (name, f"weight {w_lo:.2f}", f"weight {w_hi:.2f}")):
            ax.imshow(img)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
