"""Quality of the lip-sync pipeline on held-out faces driven by held-out speech of other speakers (issue 3 targets).

For every held-out clip (default: the PC-AVS source, never seen in training), the face video is
driven by the audio of the NEXT held-out clip (another speaker: cross-audio), and then by a
silent track. On each output:

* Sync check (the bundled discriminator) offset within +/-1 frame (target: 80 % of cases), its
  confidence beside the confidence of the real clips;
* independent check: correlation between the mouth opening (face mesh on the output) and the
  driving audio's loudness envelope, per clip (target: median >= 0.3), beside the same figure
  on the real clips;
* the same, the way the audio-visual speech literature measures it: the inner-lip AREA against the
  Hilbert envelope of the 0.8-3 kHz band (Chandrasekaran et al. 2009, PLoS Comput Biol 5(7)),
  on the output and on the real clips;
* the mouth against the driving speaker's own: the correlation between the output's inner-lip gap and
  the gap of the real face that spoke the driving audio (its held-out video), beside the same for the
  input's own, unchanged mouth (about 0: a model that copies the input's mouth scores that);
* identity: PSNR of the face above the nose against the input frame (target >= 30 dB);
* silence: with a silent track, the 90th percentile of the inner-lip gap over face height
  (target <= 0.02), beside the real clips' own figure.

The sync and loudness figures are measured a second time with each held-out face driven by a speech
recording of ``speech/`` instead (``--speech-drivers``: evenly spaced over the sorted folder, the
first 10 s of each; no speaker or source of that folder is in the training data). These are
recordings made for speech, with pauses between phrases, where the interview clips of PC-AVS run on
with background sound.

The same loudness and silence figures are then measured on still photos (``faces/``, every
``--photo-step``-th, none of them seen in training), each driven by a held-out speaker's audio: a
photo gives the network one frame to work from, so a model that leans on the input's own mouth
shows it there first. The photo's own inner-lip gap is reported beside (a smile at rest is open).

    python -m benchmarks.lipsync_eval [--model DIR] [--out benchmarks/results/lipsync_eval.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from media.face import LIPS_INNER, FaceTrack, face_in_image, track_video
from media.features import SAMPLE_RATE, loudness_per_frame
from media.io import iter_video_frames, probe, read_audio, write_audio
from models.lipsync import DEFAULT_WEIGHTS
from pipelines import lipsync as ls
from pipelines.sync_check import check_sync
from pipelines.sync_check import load_model as load_syncnet

NOSE_TIP = 1


def opening_loudness_corr(track, fps: float, audio: np.ndarray) -> float:
    """Correlation of a tracked face's inner-lip gap (over face height) with the audio's loudness, per frame."""
    o = track.lip_gap_ratio()
    loud = loudness_per_frame(audio, len(o), fps)
    ok = np.isfinite(o)
    if ok.sum() < 10 or np.std(o[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(o[ok], loud[ok])[0, 1])


ENVELOPE_BAND = (800.0, 3000.0)  # Hz: the band whose envelope follows the mouth area best (Chandrasekaran et al. 2009)


def band_envelope(audio: np.ndarray, n_frames: int, fps: float, sr: int = SAMPLE_RATE,
                  band: tuple[float, float] = ENVELOPE_BAND) -> np.ndarray:
    """(n_frames,) Hilbert envelope of the band-passed speech, low-passed at 10 Hz, at each frame's centre."""
    from scipy.signal import butter, hilbert, sosfiltfilt

    x = sosfiltfilt(butter(4, band, btype="band", fs=sr, output="sos"), np.asarray(audio, np.float64))
    env = sosfiltfilt(butter(2, 10.0, fs=sr, output="sos"), np.abs(hilbert(x)))
    return np.interp((np.arange(n_frames) + 0.5) / fps, np.arange(len(env)) / sr, env)


def area_envelope_corr(track, fps: float, audio: np.ndarray) -> float:
    """Second, literature-style check: the inner-lip area (face mesh) against the 0.8-3 kHz speech envelope."""
    pts = track.landmarks[:, LIPS_INNER, :2].astype(np.float64)
    x, y = pts[..., 0], pts[..., 1]
    area = 0.5 * np.abs(np.sum(x * np.roll(y, -1, 1) - y * np.roll(x, -1, 1), axis=1))
    env = band_envelope(audio, len(area), fps)
    ok = np.isfinite(area)
    if ok.sum() < 10 or np.std(area[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(area[ok], env[ok])[0, 1])


def gap_corr(a: FaceTrack | np.ndarray, b: FaceTrack | np.ndarray) -> float:
    """Correlation of two inner-lip gap sequences (tracks, or gaps over face height), frame by frame over
    their common length (both at the same frame rate)."""
    x = a.lip_gap_ratio() if isinstance(a, FaceTrack) else np.asarray(a)
    y = b.lip_gap_ratio() if isinstance(b, FaceTrack) else np.asarray(b)
    n = min(len(x), len(y))
    x, y = x[:n], y[:n]
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 10 or np.std(x[ok]) == 0 or np.std(y[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(x[ok], y[ok])[0, 1])


def psnr_above_nose(source: Path, track, output: Path, order: np.ndarray) -> float:
    """PSNR over the rows above the nose tip (``track``: the source's), output frame k against source frame order[k]."""
    src = {i: f for i, _, f in iter_video_frames(source)}
    errs = []
    for k, _, out in iter_video_frames(output):
        i = int(order[k]) if k < len(order) else None
        if i is None or i not in src or not track.found[i]:
            continue
        top = int(np.floor(track.landmarks[i, NOSE_TIP, 1]))
        a, b = src[i][:top].astype(np.float64), out[:top].astype(np.float64)
        if a.size:
            errs.append(np.mean((a - b) ** 2))
    mse = float(np.mean(errs)) if errs else float("nan")
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


def photo_gap(photo: Path) -> float:
    """The photo's own inner-lip gap over face height (the same measure as FaceTrack.lip_gap_ratio)."""
    image = ls.load_photo(photo)
    lm = face_in_image(image)
    if lm is None:
        return float("nan")
    track = FaceTrack(lm[None].astype(np.float32), np.ones(1, bool), (image.shape[1], image.shape[0]))
    return float(track.lip_gap_ratio()[0])


def photo_rows(photos: list[Path], drivers: list[Path], silent_wav: Path, model, tmp: Path,
               tracks: dict[str, FaceTrack]) -> list[dict]:
    """Loudness, driver-mouth and silence figures of each photo driven by a held-out speaker (cycled) and by silence."""
    rows = []
    for i, photo in enumerate(tqdm(photos, desc="photos", unit="photo")):
        driver = drivers[i % len(drivers)]
        speech = read_audio(driver, sr=SAMPLE_RATE)
        wav = tmp / f"photo_{driver.stem}.wav"
        write_audio(wav, speech, SAMPLE_RATE)
        out, silent_out = tmp / f"{photo.stem}.mp4", tmp / f"{photo.stem}_silent.mp4"
        try:
            ls.lipsync(photo, wav, out, model)
        except ls.LipSyncError as e:  # e.g. no face found: reported, not measured
            rows.append({"photo": photo.name, "error": str(e)})
            continue
        ls.lipsync(photo, silent_wav, silent_out, model)
        track, fps = track_video(out)
        silent_track, _ = track_video(silent_out)
        gap = track.lip_gap_ratio()
        row = {"photo": photo.name, "driver": driver.name,
               "opening_loudness_corr": opening_loudness_corr(track, fps, speech),
               "area_envelope_corr": area_envelope_corr(track, fps, speech),
               "driver_gap_corr": gap_corr(track, tracks[driver.name]),
               "opening_std": float(np.nanstd(gap)),
               "photo_gap": photo_gap(photo),
               "silent_gap_p90": float(np.nanpercentile(silent_track.lip_gap_ratio(), 90))}
        tqdm.write(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}))
        rows.append(row)
    return rows


SPEECH_SECONDS = 10.0  # the part of each speech/ recording that drives a face


def speech_rows(clips: list[Path], speech: list[Path], model, syncnet, tmp: Path) -> list[dict]:
    """Sync and loudness figures of each held-out face driven by a held-out speech recording."""
    rows = []
    for face, driver in tqdm(list(zip(clips, speech)), desc="faces x speech recordings", unit="clip"):
        audio = read_audio(driver, sr=SAMPLE_RATE)[: int(SPEECH_SECONDS * SAMPLE_RATE)]
        wav = tmp / f"speech_{driver.stem}.wav"
        write_audio(wav, audio, SAMPLE_RATE)
        out = tmp / f"{face.stem}_by_{driver.stem}.mp4"
        ls.lipsync(face, wav, out, model)
        sync = check_sync(out, syncnet)
        track, fps = track_video(out)
        row = {"face": face.name, "driver": driver.name, "offset_frames": sync.offset_frames,
               "confidence": sync.confidence, "opening_loudness_corr": opening_loudness_corr(track, fps, audio),
               "area_envelope_corr": area_envelope_corr(track, fps, audio), "opening_std": float(np.nanstd(track.lip_gap_ratio()))}
        tqdm.write(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}))
        rows.append(row)
    return rows


def medians(rows: list[dict], keys, prefix: str = "") -> dict:
    """{prefix + key + "_median": the median of ``key`` over ``rows`` (NaN left out)} for each key; the sync
    confidence keeps the name it always had (``sync_confidence_median``)."""
    name = {"confidence": "sync_confidence", "real_confidence": "real_sync_confidence"}
    return {f"{prefix}{name.get(k, k)}_median": float(np.nanmedian([r[k] for r in rows])) for k in keys}


def within_1(rows: list[dict], field: str = "", prefix: str = "") -> dict:
    """The share of ``rows`` whose (``field``-prefixed) Sync check offset is within +/-1 frame."""
    key = f"{prefix}{field}offset_within_1_frame" if field else f"{prefix}sync_offset_within_1_frame"
    return {key: float(np.mean([abs(r[f"{field}offset_frames"]) <= 1 for r in rows]))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--media", type=Path, default=Path(os.environ.get("AVSTUDIO_MEDIA", "../shared/media")))
    ap.add_argument("--holdout-source", nargs="+", default=["pcavs"])
    ap.add_argument("--model", default=str(DEFAULT_WEIGHTS))
    ap.add_argument("--photo-step", type=int, default=3, help="measure every N-th photo of faces/ (0: no photos)")
    ap.add_argument("--speech-drivers", type=int, default=14,
                    help="drive this many held-out faces by speech/ recordings too (0: none)")
    ap.add_argument("--photos-only", action="store_true", help="skip the held-out videos")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/lipsync_eval.json"))
    args = ap.parse_args(argv)

    model = ls.load_model(args.model)
    syncnet = load_syncnet()
    clips = sorted(p for p in (args.media / "talking_video").glob("*.mp4") if p.name.split("_")[0] in args.holdout_source)
    if len(clips) < 2:
        print("error: need at least two held-out clips", file=sys.stderr)
        return 2
    rows = []
    tracks = {c.name: track_video(c)[0] for c in tqdm(clips, desc="tracking the real clips", unit="clip")}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        silent_wav = tmp / "silence.wav"  # 5 s of digital silence, the same for every face
        write_audio(silent_wav, np.zeros(int(5 * SAMPLE_RATE), np.float32), SAMPLE_RATE)
        for i, face in enumerate(tqdm([] if args.photos_only else clips, desc="held-out faces", unit="clip")):
            driver = clips[(i + 1) % len(clips)]
            speech = read_audio(driver, sr=SAMPLE_RATE)
            wav = tmp / f"{driver.stem}.wav"
            write_audio(wav, speech, SAMPLE_RATE)
            out = tmp / f"{face.stem}_by_{driver.stem}.mp4"
            result = ls.lipsync(face, wav, out, model)
            n_src = probe(face).n_frames
            order = np.arange(result.n_frames) if result.n_frames <= n_src else ls.pingpong_index(np.arange(result.n_frames), n_src)
            sync = check_sync(out, syncnet)
            real = check_sync(face, syncnet)
            silent_out = tmp / f"{face.stem}_silent.mp4"
            ls.lipsync(face, silent_wav, silent_out, model)
            silent_track, _ = track_video(silent_out)
            real_track, fps = tracks[face.name], probe(face).fps
            if abs(probe(driver).fps - fps) > 1e-3:  # the gap correlations pair frames by index
                raise SystemExit(f"error: {face.name} and {driver.name} differ in frame rate")
            out_track, out_fps = track_video(out)
            own = read_audio(face, sr=SAMPLE_RATE)
            row = {"face": face.name, "driver": driver.name, "extension": result.extension,
                   "offset_frames": sync.offset_frames, "confidence": sync.confidence,
                   "real_offset_frames": real.offset_frames, "real_confidence": real.confidence,
                   "opening_loudness_corr": opening_loudness_corr(out_track, out_fps, speech),
                   "real_opening_loudness_corr": opening_loudness_corr(real_track, fps, own),
                   "area_envelope_corr": area_envelope_corr(out_track, out_fps, speech),
                   "real_area_envelope_corr": area_envelope_corr(real_track, fps, own),
                   "driver_gap_corr": gap_corr(out_track, tracks[driver.name]),
                   "input_driver_gap_corr": gap_corr(real_track.lip_gap_ratio()[np.minimum(order, len(real_track) - 1)],
                                                     tracks[driver.name]),
                   "opening_std": float(np.nanstd(out_track.lip_gap_ratio())),
                   "real_opening_std": float(np.nanstd(real_track.lip_gap_ratio())),
                   "psnr_above_nose_db": psnr_above_nose(face, real_track, out, order),
                   "silent_gap_p90": float(np.nanpercentile(silent_track.lip_gap_ratio(), 90)),
                   "real_gap_p90": float(np.nanpercentile(real_track.lip_gap_ratio(), 90))}
            tqdm.write(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}))
            rows.append(row)
        recordings = sorted((args.media / "speech").glob("*"))
        n_speech = 0 if args.photos_only else min(args.speech_drivers, len(clips), len(recordings))
        picked = [recordings[round(k * len(recordings) / n_speech)] for k in range(n_speech)] if n_speech else []
        srows = speech_rows(clips[:n_speech], picked, model, syncnet, tmp)
        photos = sorted((args.media / "faces").glob("*"))[::args.photo_step] if args.photo_step > 0 else []
        prows = photo_rows(photos, clips, silent_wav, model, tmp, tracks)
    measured = [r for r in prows if "error" not in r]
    summary = {}
    if rows:
        summary.update({"cases": len(rows), **within_1(rows), **within_1(rows, "real_"), **medians(rows, (
            "confidence", "real_confidence", "opening_loudness_corr", "real_opening_loudness_corr", "area_envelope_corr",
            "real_area_envelope_corr", "driver_gap_corr", "input_driver_gap_corr", "opening_std", "real_opening_std",
            "psnr_above_nose_db", "silent_gap_p90", "real_gap_p90")),
            "psnr_above_nose_db_min": float(np.nanmin([r["psnr_above_nose_db"] for r in rows])),
            "silent_gap_p90_max": float(np.nanmax([r["silent_gap_p90"] for r in rows]))})
    if srows:
        summary.update({"speech_cases": len(srows), **within_1(srows, prefix="speech_"), **medians(srows, (
            "confidence", "opening_loudness_corr", "area_envelope_corr", "opening_std"), "speech_")})
    if measured:
        summary.update({"photos": len(measured), "photos_without_face": len(prows) - len(measured), **medians(measured, (
            "opening_loudness_corr", "area_envelope_corr", "driver_gap_corr", "opening_std", "silent_gap_p90"), "photo_"),
            "photo_silent_gap_p90_max": float(np.nanmax([r["silent_gap_p90"] for r in measured])),
            "photo_own_gap_median": float(np.nanmedian([r["photo_gap"] for r in measured]))})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": args.model, "summary": summary, "per_clip": rows,
                                         "per_speech_recording": srows, "per_photo": prows}, indent=1))
    for k, v in summary.items():
        print(f"  {k:38s} {v:.3f}" if isinstance(v, float) else f"  {k:38s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
