"""Build the small BGM library that ships with the app (``examples/bgm_library``), and its index.

    python -m training.make_bgm_library            # excerpts + NOTICE, then the index with the bundled model

Only tracks whose licence allows redistribution are taken (GPL game soundtracks from Debian, CC BY, public
domain; see :data:`TRACKS`), as excerpts of at most ``EXCERPT_S`` seconds from a quarter of the way in,
mono Opus at ``BITRATE`` bit/s, faded in and out over 1 s. ``NOTICE`` lists each excerpt with its source file,
origin and licence (from the media collection's ``MANIFEST.tsv``). The whole folder stays under 5 MB.
Rebuild the index (``python -m pipelines.bgm_fit index examples/bgm_library/tracks --out
examples/bgm_library/index``) whenever the bundled model changes: an index built with other weights is
refused.
"""
from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import av
import numpy as np

from media.io import probe, read_audio

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "examples" / "bgm_library"
EXAMPLE = REPO / "examples" / "bgm_speech.ogg"
EXCERPT_S = 40.0
BITRATE = 40_000
SR = 48_000
# files of the media collection's music/ whose licence allows redistribution with attribution
TRACKS = [
    "etr_race1-jt.ogg", "etr_spunkyrace-ks.ogg", "etr_start1-jt.ogg", "frozenbubble_introzik.ogg",
    "librosa_Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_string_o.ogg", "librosa_Karissa_Hobbs_-_Lets_Go_Fishin.ogg",
    "lincity_RobertvanHerk_ArchitecturalContemplations.ogg", "lincity_RobertvanHerk_CityBlues.ogg",
    "warzone2100_ost_track3.opus", "wesnoth_elf-land.ogg", "wesnoth_loyalists.ogg", "wesnoth_main_menu.ogg",
    "wesnoth_revelation.ogg", "wesnoth_transience.ogg",
]


def write_opus(path: Path, audio: np.ndarray, sr: int = SR, bitrate: int = BITRATE) -> None:
    """Mono float audio in [-1, 1] as an Ogg Opus file."""
    with av.open(str(path), "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=sr)
        stream.bit_rate = bitrate
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.clip(audio, -1, 1).astype(np.float32)[None], format="flt", layout="mono")
        frame.sample_rate = sr
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def main() -> int:
    media = Path(os.environ.get("AVSTUDIO_MEDIA", REPO.parent / "shared" / "media"))
    manifest = {}
    with open(media / "MANIFEST.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            manifest[row["path"]] = row
    tracks = OUT / "tracks"
    tracks.mkdir(parents=True, exist_ok=True)
    notice = ["Background-music excerpts bundled with AV Studio (the BGM fit tab's default library).",
              "Each is an excerpt of at most 40 s, mono Opus 40 kbit/s, faded in and out, cut from the file named.",
              "They keep their original licences, listed here; the GPL and CC BY licences require this attribution.",
              ""]
    for name in TRACKS:
        src = media / "music" / name
        dur = probe(src).duration
        start = 0.0 if dur <= EXCERPT_S else min(dur * 0.25, dur - EXCERPT_S)
        y = read_audio(src, sr=SR, start=start, end=start + EXCERPT_S)
        fade = np.linspace(0, 1, SR)
        y[:SR] *= fade
        y[-SR:] *= fade[::-1]
        target = tracks / (Path(name).stem + ".opus")
        write_opus(target, y)
        row = manifest.get(f"music/{name}", {})
        origin = row.get("origin", "origin not recorded")
        notice.append(f"{target.name}\n  from: music/{name} ({origin}), {start:.1f}-{start + len(y) / SR:.1f} s\n"
                      f"  licence: {row.get('license', 'see MANIFEST.tsv')}\n")
        print(f"{target.name}: {target.stat().st_size / 1024:.0f} KB")
    # the tab's example: LJSpeech (public domain) audiobook narration, 12 clips end to end
    parts = sorted((media / "speech").glob("ljspeech_LJ001-00*.wav"))
    speech = np.concatenate([read_audio(p, sr=SR) for p in parts])
    write_opus(EXAMPLE, speech / max(1e-9, float(np.abs(speech).max())) * 0.9, bitrate=32_000)
    notice.append(f"../{EXAMPLE.name} (the BGM fit tab's example speech)\n  from: {', '.join(p.name for p in parts)} "
                  "(LJSpeech 1.1, Keith Ito)\n  licence: public domain\n")
    (OUT / "NOTICE").write_text("\n".join(notice))
    total = sum(p.stat().st_size for p in tracks.iterdir())
    print(f"{len(TRACKS)} excerpts, {total / 1e6:.2f} MB")
    from pipelines.bgm_fit import main as bgm_main

    return bgm_main(["index", str(tracks), "--out", str(OUT / "index")])


if __name__ == "__main__":
    sys.exit(main())
