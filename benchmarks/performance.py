"""Speed at real sizes (issue 14): the lip-sync pipeline on one real talking clip scaled to 256, 720 and
1080 lines, each beside a plain decode + re-encode of the same clip in the same run.

    python -m benchmarks.performance        # -> benchmarks/results/performance.json (docs/performance.md)

The clip: ``talking_video/edtalk_uncrop_Obama.mp4`` (450 x 450, 25 fps), its first ``--seconds`` seconds,
scaled (bicubic) to 256 x 256, and to 720 and 1080 lines with the sides filled by reflection to 16:9
(1280 x 720, 1920 x 1080), as a phone or camera records a speaker; written once, near-losslessly (H.264,
CRF 10). The speech: another speaker (``pcavs_Audio_Source_741400104.mp4``), cut to the clip.
Per size: the pipeline's in-process time split into its parts (``benchmarks.lipsync.measure``: the
fastest of ``--repeat`` runs, the model loaded once), the real-time factor (time / output seconds) and the
ratio to the plain transcode; and libx264's presets and quality settings on the same frames (encoding time,
bit rate, PSNR), which chose the writer's. Targets (issue 14): RTF <= 0.25 at 256, <= 0.5 at 720, <= 1.0 at 1080, and
at 1080 at most 2x the plain transcode.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from benchmarks.lipsync import measure
from media.io import iter_video_frames, probe, write_video
from models.provenance import save_results
from pipelines import lipsync as ls
from pipelines.common import settings

ROOT = Path(__file__).resolve().parents[1]
CLIP = "talking_video/edtalk_uncrop_Obama.mp4"
SPEECH = "talking_video/pcavs_Audio_Source_741400104.mp4"
SIZES = {"256": (256, 256), "720": (1280, 720), "1080": (1920, 1080)}
TARGET_RTF = {"256": 0.25, "720": 0.5, "1080": 1.0}
TARGET_X_TRANSCODE = {"1080": 2.0}
SOURCE_CRF = 10  # the scaled clips are written near-losslessly, as a camera's high bit rate: a fair source for
# comparing encoder settings (one written with the settings under test favours them)
ENCODER_SETTINGS = [("veryfast", 20), ("superfast", 20), ("ultrafast", 20), ("ultrafast", 17)]


def scaled_clip(src: Path, out: Path, size: tuple[int, int], seconds: float) -> Path:
    """``src`` (a square clip) scaled to ``size[1]`` lines, its sides filled by reflection to ``size[0]``."""
    w, h = size
    info = probe(src)

    def frames():
        for i, _, frame in iter_video_frames(src):
            if i >= round(seconds * info.fps):
                break
            frame = cv2.resize(frame, (h, h), interpolation=cv2.INTER_CUBIC if h > frame.shape[0] else cv2.INTER_AREA)
            pad = (w - h) // 2
            yield cv2.copyMakeBorder(frame, 0, 0, pad, w - h - pad, cv2.BORDER_REFLECT) if w > h else frame

    write_video(out, frames(), info.fps, crf=SOURCE_CRF, preset="veryfast")
    return out


def encoder_settings(clip: Path, folder: Path, settings=ENCODER_SETTINGS) -> list[dict]:
    """Each libx264 (preset, crf) on the frames of ``clip`` (decoded once, held): seconds to encode,
    megabits per second, and PSNR (dB) of every 5th frame decoded back against the frame that went in."""
    import time

    info = probe(clip)
    frames = [f for _, _, f in iter_video_frames(clip)]
    rows = []
    for preset, crf in settings:
        out = folder / f"enc_{preset}_{crf}.mp4"
        t = time.perf_counter()
        write_video(out, frames, info.fps, crf=crf, preset=preset)
        seconds = time.perf_counter() - t
        back = [f for i, _, f in iter_video_frames(out) if i % 5 == 0]
        mse = np.mean([np.mean((a.astype(np.float32) - b) ** 2) for a, b in zip(frames[::5], back)])
        rows.append({"preset": preset, "crf": crf, "encode_s": seconds,
                     "mbit_s": out.stat().st_size * 8 / 1e6 / (len(frames) / info.fps),
                     "psnr_db": float(10 * np.log10(255 ** 2 / mse))})
        print(f"encoder {preset} crf {crf}: {seconds:.2f} s, {rows[-1]['mbit_s']:.1f} Mbit/s, "
              f"{rows[-1]['psnr_db']:.2f} dB", file=sys.stderr, flush=True)
    return rows


# each CLI with real inputs (talking clip, speech, photo, music, hum, video), run until its first progress line
STARTUP = {
    "lipsync": ["pipelines.lipsync", "talking_video/lrs2_deepavsr_00001.mp4", "speech/dreamtalk_German1.wav"],
    "sync_check": ["pipelines.sync_check", "talking_video/lrs2_deepavsr_00001.mp4"],
    "music_face": ["pipelines.music_face", "faces/fr_obama.jpg", "music/audiocraft_bach.mp3"],
    "soundtrack": ["pipelines.soundtrack", "--hum", "hum/vocadito_10.wav", "--video", "video/moviepy_chaplin.mp4"],
    "bgm_fit": ["pipelines.bgm_fit", "score", "speech/dreamtalk_German1.wav"],
}
TARGET_STARTUP_S = 2.0


def startup(media: Path, folder: Path, repeat: int = 3) -> dict:
    """Seconds from starting ``python -m pipelines.NAME`` (a new process, real inputs) to its first progress
    line on stderr, the fastest of ``repeat``; and the interpreter's own start (a line written at once).
    Inputs are read from ``media``; outputs, were any written, go to ``folder``."""
    import subprocess
    import time

    def first_line(cmd: list[str]) -> float:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, text=True)
        line = proc.stderr.readline()
        seconds = time.perf_counter() - t
        proc.kill()
        proc.wait()
        if not line:
            raise RuntimeError(f"{' '.join(cmd)} wrote no progress line")
        return seconds

    out = {"interpreter_s": min(first_line([sys.executable, "-c", "import sys; print(1, file=sys.stderr)"])
                                for _ in range(repeat)), "target_s": TARGET_STARTUP_S}
    for name, (module, *args) in STARTUP.items():
        cmd = [sys.executable, "-m", module]
        for a in args:
            cmd.append(str(media / a) if "/" in a else a)
        if name != "bgm_fit":
            cmd += ["--out", str(folder / f"startup_{name}.mp4")]
        seconds = min(first_line(cmd) for _ in range(repeat))
        out[name] = {"first_progress_line_s": seconds, "meets_target": seconds <= TARGET_STARTUP_S}
        print(f"start-up {name}: {seconds:.2f} s to the first progress line", file=sys.stderr, flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    media = Path(os.environ.get("AVSTUDIO_MEDIA", ROOT.parent / "shared" / "media"))
    ap.add_argument("--seconds", type=float, default=11.0)
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--repeat", type=int, default=3, help="take the fastest of N runs")
    ap.add_argument("--no-startup", action="store_true", help="leave out the CLIs' start-up times")
    ap.add_argument("--no-encoder", action="store_true", help="leave out the encoder settings' comparison")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "performance.json")
    args = ap.parse_args(argv)
    where = settings().lipsync
    model = ls.load_model(where)
    lipsync, encoder = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        starts = startup(media, Path(tmp)) if not args.no_startup else None
        for name in args.sizes:
            clip = scaled_clip(media / CLIP, Path(tmp) / f"clip_{name}.mp4", SIZES[name], args.seconds)
            if not args.no_encoder:
                encoder[name] = encoder_settings(clip, Path(tmp))
            r = measure(clip, media / SPEECH, model, args.repeat)
            r["target_rtf"] = TARGET_RTF[name]
            r["meets_rtf"] = r["real_time_factor"]["total"] <= TARGET_RTF[name]
            if name in TARGET_X_TRANSCODE:
                r["target_x_transcode"] = TARGET_X_TRANSCODE[name]
                r["meets_x_transcode"] = r["x_plain_transcode"]["total"] <= TARGET_X_TRANSCODE[name]
            lipsync[name] = r
            print(f"lip sync {name}: {r['parts_s']['total']:.1f} s for {r['seconds']:.1f} s "
                  f"(RTF {r['real_time_factor']['total']:.2f}, {r['x_plain_transcode']['total']:.2f} x the "
                  f"{r['plain_transcode_s']:.1f} s transcode)", file=sys.stderr, flush=True)
    save_results(args.out, {"clip": CLIP, "speech": SPEECH, "lipsync": lipsync, "encoder": encoder,
                             "startup": starts}, module="benchmarks.performance",
                 argv=argv, weights={"lipsync": where})
    return 0


if __name__ == "__main__":
    sys.exit(main())
