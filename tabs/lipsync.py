"""Lip sync tab: a face video or photo, and speech; the face speaks it."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from pipelines import lipsync
from pipelines.common import AVStudioError
from tabs.common import EXAMPLES, new_output_dir, require, run

TITLE = "Lip sync"
ABOUT = (
    "A face video or a photo, and speech: the mouth is redrawn to say it. The output keeps the input's frame "
    "rate and size (up to 1920 pixels a side) and lasts as long as the speech: a shorter video is played "
    "forward and back, a longer one is cut, a photo is held. Frames without a face pass through unchanged; "
    "with several faces, the largest one speaks.")


def load() -> None:
    lipsync.load_model()


def generate(face: str | None, speech: str | None, progress=gr.Progress()):
    require(face, "Upload a face video or photo first.")
    require(speech, "Upload or record the speech first.")
    out = new_output_dir() / f"{Path(face).stem}_lipsync.mp4"
    result = run(lipsync.lipsync, face, speech, out_path=out, progress=progress)
    return result.output_path, result.message(), result.summary(paths=False)


def preview(face: str | None):
    """The face input's first frame with a face, its mouth keypoints marked, and what the network sees."""
    if not face:
        return None, None, None, None
    try:
        images = lipsync.preview(face)
    except AVStudioError as err:
        gr.Warning(str(err))
        return None, None, None, None
    return images["keypoints"], images["blur"], images["gradient"], images["keypoints"]


def build() -> None:
    gr.Markdown(ABOUT)
    with gr.Row():
        with gr.Column():
            face = gr.File(label="Face video or photo", file_types=["video", "image"], type="filepath")
            shown = gr.Image(label="Face preview (mouth keypoints marked)", interactive=False, height=240)
            speech = gr.Audio(label="Speech", sources=["upload", "microphone"], type="filepath")
            button = gr.Button("Lip-sync", variant="primary")
        with gr.Column():
            video = gr.Video(label="Result")
            message = gr.Markdown()
            details = gr.JSON(label="Details", open=False)
    with gr.Accordion("What the network sees (one frame)", open=False), gr.Row():
        blur = gr.Image(label="Mouth-blur image")
        grad = gr.Image(label="Gradient map")
        keys = gr.Image(label="Mouth keypoints")
    examples = sorted(EXAMPLES.glob("lipsync_*"))
    faces = [p for p in examples if p.suffix in {".png", ".jpg", ".mp4"}]
    speeches = [p for p in examples if p.suffix == ".wav"]
    if faces and speeches:
        gr.Examples([[str(f), str(speeches[0])] for f in faces], inputs=[face, speech])
    face.change(preview, face, [shown, blur, grad, keys], api_name="lipsync_preview")
    button.click(generate, [face, speech], [video, message, details], api_name="lipsync")
