"""What the tabs share: a folder per request for outputs, the progress adapter, and the one error rule
(an AVStudioError is the user's to fix and is shown as such; anything else is a bug, logged by Gradio)."""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import gradio as gr

from pipelines.common import AVStudioError, PipelineOutput

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
OUTPUT_TTL_S = 3600  # outputs (ours and Gradio's cached copies) are deleted after an hour


def new_output_dir() -> Path:
    """A fresh folder for one request's outputs; folders of earlier requests older than OUTPUT_TTL_S go."""
    root = Path(tempfile.gettempdir())
    for old in root.glob("avstudio_out_*"):
        try:  # another request may be removing it at the same moment
            if time.time() - old.stat().st_mtime > OUTPUT_TTL_S:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    return Path(tempfile.mkdtemp(prefix="avstudio_out_"))


def require(value, message: str):
    """``value``, or a gr.Error with ``message`` when the input is missing."""
    if value is None or value == "" or value == []:
        raise gr.Error(message)
    return value


def run(pipeline, *inputs, progress: gr.Progress, **options) -> PipelineOutput:
    """``pipeline(*inputs, progress=..., **options)``; its AVStudioError becomes a gr.Error with the same
    message, and the result's notes and problem are shown as info and warning pop-ups."""
    try:
        result = pipeline(*inputs, progress=lambda fraction, step: progress(fraction, desc=step), **options)
    except AVStudioError as err:
        raise gr.Error(str(err)) from None
    for note in result.notes:
        gr.Info(note)
    if result.problem:
        gr.Warning(result.problem)
    return result
