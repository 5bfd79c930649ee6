"""Soundtrack tab: music made from a hummed melody, fitted to the user's video."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from pipelines import soundtrack
from tabs.common import EXAMPLES, new_output_dir, require, run

TITLE = "Soundtrack"
ABOUT = (
    "Hum or sing a melody (or upload a recording), and upload or shoot a video of up to 60 s. You get music "
    "built from your melody that fits the video: as long as it, its accents on the video's cuts and moves, "
    "its dynamics steered by the video's motion. The generator writes a lead, chords, bass and the accompaniment's "
    "rhythm from your notes and the video's events; a General MIDI SoundFont plays them, at -14 LUFS. "
    "Another seed gives another arrangement of the same hum and video. The model learned from pop songs' "
    "melodies and piano accompaniments (POP909) until people pair hums and videos with music in the "
    "labelling suite.")


def load() -> None:
    soundtrack.load_model()


def make(hum: str | None, video: str | None, seed: float | None, progress=gr.Progress()):
    require(hum, "Hum or sing a melody first (record it or upload it).")
    require(video, "Upload or shoot a video first.")
    folder = new_output_dir()
    stem = Path(video).stem
    result = run(soundtrack.soundtrack, hum, video, out_path=folder / f"{stem}_soundtrack.mp4",
                 audio_out=folder / f"{stem}_soundtrack.wav", seed=int(seed) if seed else None,
                 progress=progress)
    return result.output_path, result.audio_path, soundtrack.plot_result(result), result.summary(paths=False)


def build() -> None:
    gr.Markdown(ABOUT)
    with gr.Row():
        with gr.Column():
            hum = gr.Audio(label="Your melody (hum or sing)", sources=["microphone", "upload"], type="filepath")
            video = gr.Video(label="Your video", sources=["upload", "webcam"])
            seed = gr.Number(label="Seed (0: the arrangement your hum and video fix; any other number: another one)",
                             value=0, precision=0)
            button = gr.Button("Make the soundtrack", variant="primary")
        with gr.Column():
            out_video = gr.Video(label="Your video with its soundtrack")
            out_audio = gr.Audio(label="The music", type="filepath")
            plot = gr.Plot(show_label=False)
            details = gr.JSON(label="Details", open=False)
    hum_example, video_example = EXAMPLES / "soundtrack_hum_ode_to_joy.wav", EXAMPLES / "sync_astronaut_in_sync.mp4"
    if hum_example.is_file() and video_example.is_file():
        gr.Examples([[str(hum_example), str(video_example), 0]], inputs=[hum, video, seed])
    button.click(make, [hum, video, seed], [out_video, out_audio, plot, details], api_name="soundtrack",
                 concurrency_limit=1)
