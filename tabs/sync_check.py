"""Sync check tab: how far a talking-face video's audio is off its lips, and the re-synced video."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from pipelines import sync_check
from tabs.common import EXAMPLES, new_output_dir, require, run

TITLE = "Sync check"
ABOUT = (
    "Upload a video of a person talking, with its sound. A lip-sync discriminator compares the lips with the "
    "audio at shifts of up to 0.6 s each way and finds where they match best. **Offset k > 0: the audio is k "
    "frames early** (it is heard before the lips move); the re-synced video delays it by k frames. The "
    "confidence is how clearly one shift wins (SyncNet's LSE-C): below 0.05 there is no reliable signal (the "
    "face may not be speaking, or the sound may belong to someone else), and no re-synced video is written.")


def load() -> None:
    sync_check.load_model()


def check(video: str | None, fix: bool, progress=gr.Progress()):
    require(video, "Upload a video of a talking face first.")
    out = new_output_dir() / f"{Path(video).stem}_resynced.mp4" if fix else None
    result = run(sync_check.check_sync, video, out_path=out, progress=progress)
    return f"### {result.verdict()}\n{result.facts()}", result.summary(paths=False), \
        sync_check.plot_curve(result), result.output_path


def build() -> None:
    gr.Markdown(ABOUT)
    with gr.Row():
        with gr.Column():
            video = gr.Video(label="Talking-face video", sources=["upload"])
            fix = gr.Checkbox(value=True, label="Write the re-synced video")
            button = gr.Button("Check sync", variant="primary")
        with gr.Column():
            verdict = gr.Markdown()
            plot = gr.Plot(show_label=False)
            fixed = gr.Video(label="Re-synced video")
            details = gr.JSON(label="Details", open=False)
    examples = sorted(EXAMPLES.glob("sync_*.mp4"))
    if examples:
        gr.Examples([[str(p), True] for p in examples], inputs=[video, fix],
                    example_labels=[p.stem.removeprefix("sync_").replace("_", " ") for p in examples])
    button.click(check, [video, fix], [verdict, details, plot, fixed], api_name="sync_check")
