"""AV Studio: the Gradio app. Wiring only: every tab calls a function of ``pipelines/``.

    python app.py            # http://localhost:7860

Environment: AVSTUDIO_MAX_SECONDS (longest accepted clip, default 120 s), AVSTUDIO_MAX_UPLOAD_MB
(largest upload, default 200 MB), AVSTUDIO_SYNCNET, AVSTUDIO_LIPSYNC, AVSTUDIO_AUDIO_ENCODER and
AVSTUDIO_FACE_CONTROLS (model folder or Hub repo id of the Sync check's discriminator, the lip-sync network,
the music-face audio encoder and its expression control vectors).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import gradio as gr

from pipelines import lipsync, music_face, sync_check

ROOT = Path(__file__).parent
EXAMPLES = ROOT / "examples"
MAX_UPLOAD_MB = float(os.environ.get("AVSTUDIO_MAX_UPLOAD_MB", 200))
SYNCNET = os.environ.get("AVSTUDIO_SYNCNET", str(sync_check.DEFAULT_WEIGHTS))
LIPSYNC = os.environ.get("AVSTUDIO_LIPSYNC", str(lipsync.DEFAULT_WEIGHTS))
AUDIO_ENCODER = os.environ.get("AVSTUDIO_AUDIO_ENCODER", str(music_face.ENCODER_WEIGHTS))
FACE_CONTROLS = os.environ.get("AVSTUDIO_FACE_CONTROLS", str(music_face.CONTROLS_WEIGHTS))
OUTPUT_TTL_S = 3600  # outputs (ours and Gradio's cached copies) are deleted after an hour


def new_output_dir() -> Path:
    """A fresh folder for one request's outputs; folders of earlier requests older than OUTPUT_TTL_S go."""
    root = Path(tempfile.gettempdir())
    for old in root.glob("avstudio_out_*"):
        if time.time() - old.stat().st_mtime > OUTPUT_TTL_S:
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix="avstudio_out_"))


def run_sync_check(video: str | None, fix: bool, progress=gr.Progress()):
    """Sync check tab: offset, confidence, distance curve and the re-synced video."""
    if not video:
        raise gr.Error("Upload a video of a talking face first.")
    out = None
    if fix:
        out = new_output_dir() / f"{Path(video).stem}_resynced.mp4"
    try:
        result = sync_check.check_sync(video, sync_check.load_model(SYNCNET), fix_path=out,
                                       progress=lambda f, msg: progress(f, desc=msg))
    except ValueError as err:  # SyncCheckError and MediaError carry user-facing messages
        raise gr.Error(str(err)) from None
    if result.fix_error:
        gr.Warning(result.fix_error)
    return (f"### {result.verdict()}\n{result.face_frames}/{result.n_frames} frames with a face, "
            f"{result.duration:.1f} s at {result.fps:.2f} fps. LSE-D {result.min_dist:.3f}, LSE-C {result.confidence:.3f}.",
            result.summary(), sync_check.plot_curve(result), result.fixed_path)


def sync_tab() -> None:
    gr.Markdown(
        "Upload a talking-face video with sound. The three-stage lip-sync discriminator (spec 04) compares the "
        "lips with the audio at shifts of up to 0.6 s (-15..+15 frames at 25 fps). **Offset k > 0: the audio is k frames early** (it leads "
        "the picture); the re-synced video delays it by k frames. Confidence is SyncNet's LSE-C "
        "(median minus minimum distance over the shifts): the higher, the clearer the minimum.")
    with gr.Row():
        with gr.Column():
            video = gr.Video(label="Talking-face video", sources=["upload"])
            fix = gr.Checkbox(value=True, label="Write the re-synced video")
            button = gr.Button("Check sync", variant="primary")
        with gr.Column():
            verdict = gr.Markdown()
            plot = gr.Plot(label="Distance over shifts, and per-frame confidence")
            fixed = gr.Video(label="Re-synced video")
            details = gr.JSON(label="Details")
    examples = sorted(EXAMPLES.glob("sync_*.mp4")) if EXAMPLES.is_dir() else []
    if examples:
        gr.Examples([[str(p), True] for p in examples], inputs=[video, fix],
                    example_labels=[p.stem.removeprefix("sync_").replace("_", " ") for p in examples])
    button.click(run_sync_check, [video, fix], [verdict, details, plot, fixed], api_name="sync_check")


def run_lipsync(face: str | None, speech: str | None, progress=gr.Progress()):
    """Lip sync tab: the face (video or photo) speaking the speech."""
    if not face:
        raise gr.Error("Upload a face video or photo first.")
    if not speech:
        raise gr.Error("Upload or record the speech first.")
    out = new_output_dir() / f"{Path(face).stem}_lipsync.mp4"
    try:
        result = lipsync.lipsync(face, speech, out, lipsync.load_model(LIPSYNC),
                                 progress=lambda f, msg: progress(f, desc=msg))
    except ValueError as err:  # LipSyncError, MediaError, NoFaceError carry user-facing messages
        raise gr.Error(str(err)) from None
    return result.path, result.message(), result.summary()


def preview_features(face: str | None):
    """The mouth-blur image, gradient map and keypoints of the first frame with a face."""
    if not face:
        return None, None, None
    try:
        images = lipsync.preview(face)
    except ValueError as err:
        gr.Warning(str(err))
        return None, None, None
    return images["blur"], images["gradient"], images["keypoints"]


def lipsync_tab() -> None:
    gr.Markdown(
        "A face video or a photo, and speech: the mouth is regenerated to say it (spec 05: mouth-blur guidance). "
        "The output keeps the input's size and frame rate and lasts as long as the speech; a shorter video is "
        "played forward and back, a longer one is cut. Frames without a face pass through unchanged.")
    with gr.Row():
        with gr.Column():
            face = gr.File(label="Face video or photo", file_types=["video", "image"], type="filepath")
            speech = gr.Audio(label="Speech", sources=["upload", "microphone"], type="filepath")
            button = gr.Button("Lip-sync", variant="primary")
        with gr.Column():
            video = gr.Video(label="Result")
            message = gr.Markdown()
            details = gr.JSON(label="Details")
    with gr.Accordion("What the network sees (one frame)", open=False), gr.Row():
        blur = gr.Image(label="Mouth-blur image")
        grad = gr.Image(label="Gradient map")
        keys = gr.Image(label="Mouth keypoints")
    examples = sorted(EXAMPLES.glob("lipsync_*")) if EXAMPLES.is_dir() else []
    faces = [p for p in examples if p.suffix in {".png", ".jpg", ".mp4"}]
    speeches = [p for p in examples if p.suffix == ".wav"]
    if faces and speeches:
        gr.Examples([[str(f), str(speeches[0])] for f in faces], inputs=[face, speech])
    face.change(preview_features, face, [blur, grad, keys])
    button.click(run_lipsync, [face, speech], [video, message, details], api_name="lipsync")


def run_music_face(photo: str | None, music: str | None, expressions: list[str] | None, strength: float,
                   fps: float, progress=gr.Progress()):
    """Music to face tab: the photo's expression following the music, and the weight curve."""
    if not photo:
        raise gr.Error("Upload a face photo first.")
    if not music:
        raise gr.Error("Upload or record the music first.")
    if not expressions:
        raise gr.Error("Choose at least one expression.")
    out = new_output_dir() / f"{Path(photo).stem}_music_face.mp4"
    try:
        result = music_face.music_face(photo, music, out, "+".join(expressions), float(strength), float(fps),
                                       encoder=music_face.load_encoder(AUDIO_ENCODER),
                                       controls=music_face.load_controls(FACE_CONTROLS),
                                       progress=lambda f, msg: progress(f, desc=msg))
    except ValueError as err:  # MusicFaceError and MediaError carry user-facing messages
        raise gr.Error(str(err)) from None
    for note in result.notes:
        gr.Info(note)
    return result.out_path, music_face.plot_weights(result), result.message(), result.summary()


def music_face_tab() -> None:
    gr.Markdown(
        "A face photo and music: the face changes expression with the music (spec 03). An audio encoder turns "
        "every 100 ms of the music into a weight between 0 (calm, soft) and 1 (tense, intense); the chosen "
        "expressions, measured on real faces, are scaled by it and added to the mouth, eyes and brows of the "
        "photo's face mesh, and the photo is warped to match. The face outline and everything around the face "
        "stay as they are.")
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
            details = gr.JSON(label="Details")
    photo_ex, music_ex = EXAMPLES / "lipsync_astronaut.jpg", EXAMPLES / "music_face_calm_to_intense.wav"
    if photo_ex.is_file() and music_ex.is_file():
        gr.Examples([[str(photo_ex), str(music_ex), ["smile", "open_mouth"], 1.0, 25]],
                    inputs=[photo, music, expressions, strength, fps])
    button.click(run_music_face, [photo, music, expressions, strength, fps], [video, plot, message, details],
                 api_name="music_face")


def build_app() -> gr.Blocks:
    with gr.Blocks(title="AV Studio", delete_cache=(OUTPUT_TTL_S, OUTPUT_TTL_S)) as demo:
        gr.Markdown("# AV Studio\nAudio-visual generation and labelling, with real models that run on a laptop.")
        with gr.Tab("Sync check"):
            sync_tab()
        with gr.Tab("Lip sync"):
            lipsync_tab()
        with gr.Tab("Music to face"):
            music_face_tab()
    return demo


if __name__ == "__main__":
    build_app().queue().launch(max_file_size=f"{MAX_UPLOAD_MB:g}mb")
