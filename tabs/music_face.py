"""Music to face tab: a face photo whose expression follows the music."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from pipelines import music_face
from tabs.common import EXAMPLES, new_output_dir, require, run

TITLE = "Music to face"
ABOUT = (
    "A face photo and music: the face changes expression with the music. Every 100 ms of the music gets a "
    "weight between 0 (calm, soft) and 1 (tense, intense); the chosen expressions, measured on real faces, are "
    "scaled by it and applied to the mouth, eyes and brows of the photo. The face outline and everything "
    "around the face stay as they are. Photos larger than 1920 pixels a side are scaled down.")


def load() -> None:
    music_face.load_model()


def animate(photo: str | None, music: str | None, expressions: list[str] | None, strength: float, fps: float,
            progress=gr.Progress()):
    require(photo, "Upload a face photo first.")
    require(music, "Upload or record the music first.")
    require(expressions, "Choose at least one expression.")
    out = new_output_dir() / f"{Path(photo).stem}_music_face.mp4"
    result = run(music_face.music_face, photo, music, out_path=out, expression="+".join(expressions),
                 strength=float(strength), fps=float(fps), progress=progress)
    return result.output_path, music_face.plot_weights(result), result.message(), result.summary(paths=False)


def build() -> None:
    gr.Markdown(ABOUT)
    with gr.Row():
        with gr.Column():
            photo = gr.Image(label="Face photo", type="filepath", sources=["upload", "webcam"])
            music = gr.Audio(label="Music", sources=["upload", "microphone"], type="filepath")
            expressions = gr.CheckboxGroup([("Smile", "smile"), ("Open mouth", "open_mouth"),
                                            ("Raised brows", "raised_brows")], value=["smile", "open_mouth"],
                                           label="Expression")
            strength = gr.Slider(0.0, music_face.MAX_STRENGTH, value=1.0, step=0.1, label="Strength")
            fps = gr.Slider(10, 60, value=music_face.DEFAULT_FPS, step=1, label="Frames per second")
            button = gr.Button("Animate", variant="primary")
        with gr.Column():
            video = gr.Video(label="Result")
            plot = gr.Plot(label="Weight over time")
            message = gr.Markdown()
            details = gr.JSON(label="Details", open=False)
    photo_ex, music_ex = EXAMPLES / "lipsync_astronaut.jpg", EXAMPLES / "music_face_calm_to_intense.wav"
    if photo_ex.is_file() and music_ex.is_file():
        gr.Examples([[str(photo_ex), str(music_ex), ["smile", "open_mouth"], 1.0, 25]],
                    inputs=[photo, music, expressions, strength, fps])
    button.click(animate, [photo, music, expressions, strength, fps], [video, plot, message, details],
                 api_name="music_face")
