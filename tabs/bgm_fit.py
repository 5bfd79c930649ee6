"""BGM fit tab: background music ranked for each part of a spoken recording, and the mix to listen to."""
from __future__ import annotations

import shutil
from pathlib import Path

import gradio as gr

from pipelines import bgm_fit
from tabs.common import EXAMPLES, new_output_dir, require, run

TITLE = "BGM fit"
ABOUT = (
    "Upload or record a spoken recording (a podcast, an audiobook chapter, a narration; audio or video, up to "
    "3 hours). It is split where it changes (pauses and changes of delivery; segments of at least 30 s), and "
    "for each segment the library's tracks are ranked by how well they fit it, 0 to 1, with the reasons. The "
    "mix puts the chosen tracks under the voice, crossfaded where the track changes, 15 dB down while the "
    "voice speaks and back up in pauses longer than about 1.5 s, at -16 LUFS. A video comes back as a video "
    "with its picture unchanged. The bundled library is 14 short excerpts of freely licensed game and library "
    "music; upload your own tracks to rank those instead. The model imitates a rule built from emotion labels "
    "until people's fit ratings (the labelling suite's BGM fit task) replace it.")
LIBRARIES = ["Bundled library", "My uploaded tracks"]


def load() -> None:
    model = bgm_fit.load_model()
    bgm_fit.load_library(None, model)


def _timeline_markdown(result) -> str:
    rows = ["| time | chosen track (fit) | next best | why |", "|---|---|---|---|"]
    for s in result.segments:
        others = "<br>".join(f"{Path(t['path']).stem} ({t['score']:.2f})"
                             for t in [t for t in s["tracks"] if t["path"] != s["chosen"]["path"]][:3]) or "-"
        rows.append(f"| {bgm_fit._clock(s['start_s'])}&#8209;{bgm_fit._clock(s['end_s'])} | "
                    f"**{Path(s['chosen']['path']).stem}** ({s['chosen']['score']:.2f}) | {others} | "
                    f"{'<br>'.join(s['reasons'])} |")
    return "\n".join(rows)


def score(audio: str | None, video: str | None, library: str, tracks: list[str] | None, duck_db: float,
          progress=gr.Progress()):
    speech = video or audio
    require(speech, "Upload or record the speech first (or upload a video).")
    folder = new_output_dir()
    index = None
    if library == LIBRARIES[1]:
        require(tracks, "Upload some music tracks, or choose the bundled library.")
        lib = folder / "tracks"
        lib.mkdir()
        for path in tracks:
            shutil.copy(path, lib / Path(path).name)
        index = folder / "index"
        run(bgm_fit.index_library, lib, out_path=index,
            progress=lambda f, desc: progress(0.3 * f, desc=f"indexing your tracks: {desc}"))
    out = folder / (f"{Path(speech).stem}_bgm.mp4" if video else f"{Path(speech).stem}_bgm.wav")
    result = run(bgm_fit.fit_bgm, speech, out_path=out, library=index, duck_db=float(duck_db), progress=progress)
    mix = result.output_path
    return (bgm_fit.plot_timeline(result), _timeline_markdown(result), mix if mix and not video else None,
            mix if mix and video else None, _names_only(result.summary(paths=False)))


def _names_only(details: dict) -> dict:
    """The result for the browser: library tracks by file name (key ``track``), not by their path on the
    server (and not under a ``path`` key, which Gradio's client would take for a file to download)."""
    for seg in details["segments"]:
        for track in [*seg["tracks"], seg["chosen"]]:
            track["track"] = Path(track.pop("path")).name
    details["chosen"] = [Path(p).name for p in details["chosen"]]
    details["library"] = Path(details["library"]).name
    return details


def build() -> None:
    gr.Markdown(ABOUT)
    with gr.Row():
        with gr.Column():
            audio = gr.Audio(label="Speech", sources=["upload", "microphone"], type="filepath")
            video = gr.Video(label="...or a video with speech", sources=["upload"])
            library = gr.Radio(LIBRARIES, value=LIBRARIES[0], label="Library")
            tracks = gr.File(label="Your tracks (for 'My uploaded tracks')", file_count="multiple",
                             file_types=["audio"])
            duck = gr.Slider(-24, -6, value=-15, step=1, label="Music level under the voice (dB)")
            button = gr.Button("Find music", variant="primary")
        with gr.Column():
            plot = gr.Plot(show_label=False)
            timeline = gr.Markdown()
            mix_audio = gr.Audio(label="Mix", type="filepath")
            mix_video = gr.Video(label="Mix (when the speech came as a video)")
            details = gr.JSON(label="Details", open=False)
    example = EXAMPLES / "bgm_speech.ogg"
    if example.is_file():
        gr.Examples([[str(example), None, LIBRARIES[0], None, -15]], inputs=[audio, video, library, tracks, duck])
    button.click(score, [audio, video, library, tracks, duck], [plot, timeline, mix_audio, mix_video, details],
                 api_name="bgm_fit", concurrency_limit=1)
