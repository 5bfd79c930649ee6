"""Turn a folder of talking-face videos into a Hugging Face dataset (step 0 of spec 04).

A video is used with its own audio track, or, when it has none, with a side-car ``.wav`` of the
same name in the same folder (``clip.mp4`` + ``clip.wav``). Videos with neither are skipped and
listed. Media columns are stored with ``decode=False`` (Video / Audio features cast after the table
is built) and decoded later by our own PyAV code (media.io); ``save_to_disk`` embeds the files, so
the dataset is self-contained and can be pushed to the Hub.

Columns: video, audio (side-car wav or None), audio_source ("track" | "sidecar"), fps, duration,
n_frames, source (the file-name prefix before the first "_": the repository or data set the clip
comes from), speaker (the file stem without clip suffixes), subset (folder relative to the input).

    python -m training.make_talking_dataset ../shared/media/talking_video data/talking --exclude no_audio
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from tqdm import tqdm

from media.io import MediaError, probe

VIDEO_EXTENSIONS = {".mp4", ".mov", ".webm", ".avi", ".mkv", ".mpg", ".mpeg", ".m4v"}


def speaker_of(stem: str) -> str:
    """File stem without clip suffixes: ``styletalk_Obama_clip2`` -> ``styletalk_Obama``."""
    return re.sub(r"(_clip_?\d+)?(_short)?$", "", stem) or stem


def scan(folder: Path, exclude: list[str]) -> tuple[list[dict], list[dict]]:
    """Rows for every usable video under ``folder`` and the list of skipped files with reasons."""
    rows, skipped = [], []
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
    for path in tqdm(files, desc="probing", unit="file"):
        rel = path.relative_to(folder)
        if any(part in exclude for part in rel.parts[:-1]):
            continue
        try:
            info = probe(path)
        except MediaError as err:
            skipped.append({"file": str(rel), "reason": str(err)})
            continue
        if not info.has_video:
            skipped.append({"file": str(rel), "reason": "no video stream"})
            continue
        sidecar = path.with_suffix(".wav")
        if info.has_audio:
            audio, audio_source = None, "track"
        elif sidecar.exists():
            audio, audio_source = str(sidecar), "sidecar"
        else:
            skipped.append({"file": str(rel), "reason": "no audio track and no side-car .wav"})
            continue
        rows.append({
            "video": str(path), "audio": audio, "audio_source": audio_source,
            "fps": float(info.fps), "duration": float(info.duration), "n_frames": int(info.n_frames),
            "source": path.stem.split("_")[0], "speaker": speaker_of(path.stem),
            "subset": str(rel.parent) if str(rel.parent) != "." else "",
        })
    return rows, skipped


def build(folder: Path, out: Path, exclude: list[str]):
    from datasets import Audio, Dataset, Video

    rows, skipped = scan(folder, exclude)
    if not rows:
        raise SystemExit(f"error: no usable talking-face video under {folder}")
    table = {k: [r[k] for r in rows] for k in rows[0]}
    ds = Dataset.from_dict(table).cast_column("video", Video(decode=False)).cast_column("audio", Audio(decode=False))
    ds.save_to_disk(str(out))
    (out / "skipped.json").write_text(json.dumps(skipped, indent=2))
    return ds, skipped


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="folder of talking-face videos (searched recursively)")
    ap.add_argument("out", type=Path, help="output folder (datasets.save_to_disk)")
    ap.add_argument("--exclude", nargs="*", default=[], help="sub-folder names to leave out")
    args = ap.parse_args(argv)
    if not args.folder.is_dir():
        print(f"error: {args.folder} is not a folder", file=sys.stderr)
        return 2
    ds, skipped = build(args.folder, args.out, args.exclude)
    print(f"{len(ds)} clips from {len(set(ds['source']))} sources, {sum(ds['duration']):.0f} s; "
          f"{len(skipped)} skipped (see {args.out / 'skipped.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
