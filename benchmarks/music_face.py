"""Speed of the music-face pipeline (issue 4 target: real-time factor <= 0.5 for a 512 x 512 photo at 25 fps).

The whole pipeline (``pipelines.music_face.music_face``) runs on a 512 x 512 photo (the public-domain
astronaut portrait) with ``--seconds`` of held-out music, ``--repeats`` times; the best run counts. Its
parts are then timed on their own: audio features (MFCC + encoder + weights), the frames (mesh warp and
mouth interior) and the encoding (H.264 + AAC), beside a baseline measured in the same run: encoding the
unchanged photo for as many frames.

    python -m benchmarks.music_face [--out benchmarks/results/music_face_speed.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from media.io import read_audio, read_image, write_audio, write_video
from models.audio_encoder import SAMPLE_RATE, frame_weights
from models.provenance import save_results, subfolders
from pipelines import music_face as mf
from pipelines.common import read_photo, settings

PARTS = ("audio_encoder", "face_controls")


def measure(photo: Path, audio: np.ndarray, model: mf.MusicFaceModel, repeats: int = 3,
            expression: str = "smile+open_mouth+raised_brows") -> dict:
    """The whole pipeline on ``photo`` (as a user gives it: scaled to AVSTUDIO_MAX_SIDE by the pipeline) with
    ``audio`` (16 kHz music), the fastest of ``repeats`` runs, its parts as the pipeline times them; beside a
    baseline from the same run: the photo as the pipeline reads it, unchanged, encoded for as many frames with
    the same music (the fastest of ``repeats``)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wav = tmp / "music.wav"
        write_audio(wav, audio, SAMPLE_RATE)
        runs = [mf.music_face(photo, wav, out_path=tmp / "out.mp4", expression=expression, model=model)
                for _ in range(repeats)]
        best = min(runs, key=lambda r: r.timings["total"])
        image = read_photo(photo, mf.MusicFaceError, settings().max_side)
        sound = read_audio(wav, sr=mf.OUTPUT_SR)
        baseline = []
        for _ in range(repeats):
            t = time.perf_counter()
            write_video(tmp / "still.mp4", (image for _ in range(best.n_frames)), best.fps, audio=sound,
                        sr=mf.OUTPUT_SR)
            baseline.append(time.perf_counter() - t)
    parts = dict(best.timings)
    return {"photo": photo.name, "size": [best.width, best.height], "expression": expression, "fps": best.fps,
            "frames": best.n_frames, "seconds": best.duration_s, "parts_s": parts,
            "real_time_factor": parts["total"] / best.duration_s, "baseline_still_encode_s": min(baseline),
            "total_over_baseline": parts["total"] / min(baseline)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--media", type=Path, default=Path(os.environ.get("AVSTUDIO_MEDIA", "../shared/media")))
    ap.add_argument("--photo", default="faces/skimage_astronaut.png")
    ap.add_argument("--music", default="music/librosa_admiralbob77_-_Choice_-_Drum-bass.ogg")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default=None,
                    help="folder or Hub id holding audio_encoder/ and face_controls/ (default: the pipeline's)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/music_face_speed.json"))
    args = ap.parse_args(argv)

    where = args.model or settings().music_face
    model = mf.load_model(where)
    encoder, controls = model.encoder, model.controls
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        image = cv2.resize(read_image(args.media / args.photo), (512, 512), interpolation=cv2.INTER_AREA)
        photo = tmp / "photo.png"
        cv2.imwrite(str(photo), image[..., ::-1])
        audio = read_audio(args.media / args.music, sr=SAMPLE_RATE, end=args.seconds)
        duration = len(audio) / SAMPLE_RATE
        whole = measure(photo, audio, model, args.repeats)
        n = whole["frames"]

        def best(fn) -> float:
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            return min(times)

        landmarks, _ = mf.find_face(image)
        mix = mf.parse_expression("smile+open_mouth+raised_brows")
        weights = frame_weights(encoder, audio, mf.DEFAULT_FPS, SAMPLE_RATE, n)
        frames: list = []
        t_features = best(lambda: frame_weights(encoder, audio, mf.DEFAULT_FPS, SAMPLE_RATE, n))
        t_frames = best(lambda: frames.__setitem__(slice(None), list(mf.animate(image, landmarks, weights, mix, controls))))
        sound = read_audio(args.media / args.music, sr=mf.OUTPUT_SR, end=args.seconds)
        t_encode = best(lambda: write_video(tmp / "enc.mp4", iter(frames), mf.DEFAULT_FPS, audio=sound, sr=mf.OUTPUT_SR))
    total, t_baseline = whole["parts_s"]["total"], whole["baseline_still_encode_s"]
    report = {
        "photo": "512 x 512", "seconds": duration, "frames": n, "fps": mf.DEFAULT_FPS,
        "total_s": total, "real_time_factor": total / duration,
        "parts_s": {"audio_features": t_features, "frames": t_frames, "encoding": t_encode},
        "baseline_still_encode_s": t_baseline,
        "total_over_baseline": total / t_baseline,
        "frames_over_baseline": t_frames / t_baseline,
    }
    save_results(args.out, report, module=__spec__.name, argv=argv, weights=subfolders(where, PARTS))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
