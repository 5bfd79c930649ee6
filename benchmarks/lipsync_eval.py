"""Quality of the lip-sync pipeline on held-out faces driven by held-out speech of other speakers (issue 3 targets).

For every held-out clip (default: the PC-AVS source, never seen in training), the face video is
driven by the audio of the NEXT held-out clip (another speaker: cross-audio), and then by a
silent track. On each output:

* the Sync check with two discriminators. The headline is the INDEPENDENT JUDGE
  (``models/weights/syncnet_judge``, keys ``judge_*``): trained by the same recipe with another seed,
  never used in training any generator, and holding out the same PC-AVS clips. The bundled Sync check
  discriminator (``models/weights/syncnet``, keys ``training_judge_*``) is the one the generator's
  sync loss was trained against, so its verdict on the generator's output is circular; it is reported
  beside, marked as such. For each: offset within +/-1 frame (target: 80 % of cases) and confidence,
  beside what the same judge gives the real held-out clips with their own audio (``real_judge_*``,
  ``real_training_judge_*``);
* independent check: correlation between the mouth opening (face mesh on the output) and the
  driving audio's loudness envelope, per clip (target: median >= 0.3), beside the same figure
  on the real clips;
* the same, the way the audio-visual speech literature measures it: the inner-lip AREA against the
  Hilbert envelope of the 0.8-3 kHz band (Chandrasekaran et al. 2009, PLoS Comput Biol 5(7)),
  on the output and on the real clips;
* the mouth against the driving speaker's own (``driver_gap_corr``): the correlation, frame by frame,
  between the output's inner-lip gap and the gap of the real face that spoke the driving audio (its
  held-out video), beside the copying baseline (``input_driver_gap_corr``): the same for the input's
  own, unchanged mouth in the output's frame order (about 0: what a model that copies the input's mouth
  scores). Neither side involves a discriminator;
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

The file starts with its provenance (``models.provenance``: command, commit, sha256 of the
generator and of both judges) and a ``headline`` block.

    python -m benchmarks.lipsync_eval [--model DIR] [--judge DIR] [--training-judge DIR] [--out benchmarks/results/lipsync_eval.json]
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
from media.io import iter_video_frames, probe, read_audio, read_image, write_audio
from models.provenance import save_results, shown_path
from models.syncnet import prepare_clip, sync_score
from pipelines import lipsync as ls
from pipelines.common import AVStudioError, settings
from pipelines.sync_check import MAX_SHIFT_SECONDS
from pipelines.sync_check import load_model as load_syncnet

NOSE_TIP = 1
REPO = Path(__file__).resolve().parent.parent
JUDGE = REPO / "models" / "weights" / "syncnet_judge"  # the independent judge: never in any generator's training
JUDGE_NOTE = ("independent judge: same recipe as the Sync check's discriminator, another seed, the PC-AVS "
              "clips held out; never used in training any generator")
TRAINING_JUDGE_NOTE = ("training judge: the Sync check's bundled discriminator, whose sync loss the generator "
                       "was trained against, so its verdict on generated mouths is circular")


def judge_rows(video, judges: dict) -> dict:
    """{NAME_offset_frames, NAME_confidence} of the Sync check's offset search on ``video`` with each judge
    (the face is tracked once; each judge searches the same +/-0.6 s as the Sync check)."""
    x = prepare_clip(video)
    max_shift = max(1, round(MAX_SHIFT_SECONDS * x.fps))
    row = {}
    for name, model in judges.items():
        r = sync_score(model, x.gray, x.found, x.mel, x.fps, max_shift)
        row[f"{name}_offset_frames"], row[f"{name}_confidence"] = int(r["offset_frames"]), float(r["confidence"])
    return row


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
    image = read_image(photo)
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
            ls.lipsync(photo, wav, out_path=out, model=model)
        except AVStudioError as e:  # e.g. no face found: reported, not measured
            rows.append({"photo": photo.name, "error": str(e)})
            continue
        ls.lipsync(photo, silent_wav, out_path=silent_out, model=model)
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


def speech_rows(clips: list[Path], speech: list[Path], model, judges: dict, tmp: Path) -> list[dict]:
    """Sync (each judge) and loudness figures of each held-out face driven by a held-out speech recording."""
    rows = []
    for face, driver in tqdm(list(zip(clips, speech)), desc="faces x speech recordings", unit="clip"):
        audio = read_audio(driver, sr=SAMPLE_RATE)[: int(SPEECH_SECONDS * SAMPLE_RATE)]
        wav = tmp / f"speech_{driver.stem}.wav"
        write_audio(wav, audio, SAMPLE_RATE)
        out = tmp / f"{face.stem}_by_{driver.stem}.mp4"
        ls.lipsync(face, wav, out_path=out, model=model)
        track, fps = track_video(out)
        row = {"face": face.name, "driver": driver.name, **judge_rows(out, judges),
               "opening_loudness_corr": opening_loudness_corr(track, fps, audio),
               "area_envelope_corr": area_envelope_corr(track, fps, audio), "opening_std": float(np.nanstd(track.lip_gap_ratio()))}
        tqdm.write(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}))
        rows.append(row)
    return rows


def medians(rows: list[dict], keys, prefix: str = "") -> dict:
    """{prefix + key + "_median": the median of ``key`` over ``rows`` (NaN left out)} for each key."""
    return {f"{prefix}{k}_median": float(np.nanmedian([r[k] for r in rows])) for k in keys}


def within_1(rows: list[dict], judge: str, prefix: str = "") -> dict:
    """{prefix + judge + "_offset_within_1_frame": the share of ``rows`` whose Sync check offset by ``judge``
    (a row key prefix such as ``judge``, ``training_judge``, ``real_judge``) is within +/-1 frame}."""
    return {f"{prefix}{judge}_offset_within_1_frame": float(np.mean([abs(r[f"{judge}_offset_frames"]) <= 1 for r in rows]))}


def judged(rows: list[dict], judges, prefix: str = "") -> dict:
    """Offset accuracy and median confidence of every judge (``judges``: row key prefixes) over ``rows``."""
    out = {}
    for j in judges:
        out.update(within_1(rows, j, prefix))
        out.update(medians(rows, (f"{j}_confidence",), prefix))
    return out


def headline(summary: dict) -> dict:
    """The figures to lead with, grouped, each copied from ``summary`` (HEADLINE_KEYS names the summary key of
    each). The training judge's figures stand beside the independent judge's, never instead of them."""
    return {group: {"note": note, **{k: summary[key] for k, key in keys.items() if key in summary}} if note else
            {k: summary[key] for k, key in keys.items() if key in summary}
            for group, (note, keys) in HEADLINE_KEYS.items()}


HEADLINE_KEYS = {  # group -> (note, {name in the headline: key in the summary})
    "independent_judge": (JUDGE_NOTE, {
        "offset_within_1_frame": "judge_offset_within_1_frame",
        "confidence_median": "judge_confidence_median",
        "real_clips_offset_within_1_frame": "real_judge_offset_within_1_frame",
        "real_clips_confidence_median": "real_judge_confidence_median",
        "speech_recordings_offset_within_1_frame": "speech_judge_offset_within_1_frame",
        "speech_recordings_confidence_median": "speech_judge_confidence_median"}),
    "real_mouth": (("the output's inner-lip gap against the real mouth that said the driving words, frame by frame "
                    "(median correlation per clip), beside the copying baseline: the input's own mouth"), {
        "driver_gap_corr_median": "driver_gap_corr_median",
        "copying_baseline_input_driver_gap_corr_median": "input_driver_gap_corr_median",
        "photos_driver_gap_corr_median": "photo_driver_gap_corr_median"}),
    "training_judge": (TRAINING_JUDGE_NOTE, {
        "offset_within_1_frame": "training_judge_offset_within_1_frame",
        "confidence_median": "training_judge_confidence_median",
        "real_clips_offset_within_1_frame": "real_training_judge_offset_within_1_frame",
        "real_clips_confidence_median": "real_training_judge_confidence_median",
        "speech_recordings_offset_within_1_frame": "speech_training_judge_offset_within_1_frame",
        "speech_recordings_confidence_median": "speech_training_judge_confidence_median"}),
    "silence_and_identity": (None, {
        "silent_gap_p90_median": "silent_gap_p90_median",
        "silent_gap_p90_max": "silent_gap_p90_max",
        "real_gap_p90_median": "real_gap_p90_median",
        "psnr_above_nose_db_min": "psnr_above_nose_db_min",
        "psnr_above_nose_db_median": "psnr_above_nose_db_median"}),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--media", type=Path, default=Path(os.environ.get("AVSTUDIO_MEDIA", "../shared/media")))
    ap.add_argument("--holdout-source", nargs="+", default=["pcavs"])
    ap.add_argument("--model", default=None, help="lip-sync model folder or Hub id (default: the pipeline's)")
    ap.add_argument("--judge", default=str(JUDGE), help="the independent discriminator (headline figures)")
    ap.add_argument("--training-judge", default=None,
                    help="the discriminator the generator was trained against (default: the Sync check's)")
    ap.add_argument("--photo-step", type=int, default=3, help="measure every N-th photo of faces/ (0: no photos)")
    ap.add_argument("--speech-drivers", type=int, default=14,
                    help="drive this many held-out faces by speech/ recordings too (0: none)")
    ap.add_argument("--photos-only", action="store_true", help="skip the held-out videos")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/lipsync_eval.json"))
    args = ap.parse_args(argv)

    model_path = args.model or settings().lipsync
    training_judge_path = args.training_judge or settings().sync_check
    model = ls.load_model(model_path)
    judges = {"judge": load_syncnet(args.judge), "training_judge": load_syncnet(training_judge_path)}
    names = list(judges)
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
            result = ls.lipsync(face, wav, out_path=out, model=model)
            n_out, n_src = probe(out).n_frames, probe(face).n_frames
            order = np.arange(n_out) if n_out <= n_src else ls.pingpong_index(np.arange(n_out), n_src)
            silent_out = tmp / f"{face.stem}_silent.mp4"
            ls.lipsync(face, silent_wav, out_path=silent_out, model=model)
            silent_track, _ = track_video(silent_out)
            real_track, fps = tracks[face.name], probe(face).fps
            if abs(probe(driver).fps - fps) > 1e-3:  # the gap correlations pair frames by index
                raise SystemExit(f"error: {face.name} and {driver.name} differ in frame rate")
            out_track, out_fps = track_video(out)
            own = read_audio(face, sr=SAMPLE_RATE)
            real = {f"real_{k}": v for k, v in judge_rows(face, judges).items()}
            row = {"face": face.name, "driver": driver.name, "extension": result.extension,
                   **judge_rows(out, judges), **real,
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
        srows = speech_rows(clips[:n_speech], picked, model, judges, tmp)
        photos = sorted((args.media / "faces").glob("*"))[::args.photo_step] if args.photo_step > 0 else []
        prows = photo_rows(photos, clips, silent_wav, model, tmp, tracks)
    measured = [r for r in prows if "error" not in r]
    summary = {}
    if rows:
        summary.update({"cases": len(rows), **judged(rows, names), **judged(rows, [f"real_{n}" for n in names]),
                        **medians(rows, (
            "opening_loudness_corr", "real_opening_loudness_corr", "area_envelope_corr",
            "real_area_envelope_corr", "driver_gap_corr", "input_driver_gap_corr", "opening_std", "real_opening_std",
            "psnr_above_nose_db", "silent_gap_p90", "real_gap_p90")),
            "psnr_above_nose_db_min": float(np.nanmin([r["psnr_above_nose_db"] for r in rows])),
            "silent_gap_p90_max": float(np.nanmax([r["silent_gap_p90"] for r in rows])),
            "silent_gap_p90_at_most_0.02": int(sum(r["silent_gap_p90"] <= 0.02 for r in rows))})
    if srows:
        summary.update({"speech_cases": len(srows), **judged(srows, names, "speech_"), **medians(srows, (
            "opening_loudness_corr", "area_envelope_corr", "opening_std"), "speech_")})
    if measured:
        summary.update({"photos": len(measured), "photos_without_face": len(prows) - len(measured), **medians(measured, (
            "opening_loudness_corr", "area_envelope_corr", "driver_gap_corr", "opening_std", "silent_gap_p90"), "photo_"),
            "photo_silent_gap_p90_max": float(np.nanmax([r["silent_gap_p90"] for r in measured])),
            "photo_silent_gap_p90_at_most_0.02": int(sum(r["silent_gap_p90"] <= 0.02 for r in measured)),
            "photo_own_gap_median": float(np.nanmedian([r["photo_gap"] for r in measured]))})
    save_results(args.out, {
        "model": shown_path(model_path),
        "judges": {"judge": {"path": shown_path(args.judge), "note": JUDGE_NOTE},
                   "training_judge": {"path": shown_path(training_judge_path), "note": TRAINING_JUDGE_NOTE}},
        "headline": headline(summary), "summary": summary, "per_clip": rows, "per_speech_recording": srows,
        "per_photo": prows}, module=__spec__.name, argv=argv,
        weights={"lipsync": model_path, "judge": args.judge, "training_judge": training_judge_path})
    for k, v in summary.items():
        print(f"  {k:46s} {v:.3f}" if isinstance(v, float) else f"  {k:46s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
