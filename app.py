"""AV Studio: the Gradio app. It only assembles the tabs of ``tabs/``; the work is done by ``pipelines/``.

    python app.py            # http://localhost:7860

Settings are AVSTUDIO_* environment variables (pipelines.common.Settings); a bad value stops start-up with
one line. Every model loads at start-up, so the first click does not wait for it.
"""
from __future__ import annotations

import sys

import gradio as gr

from pipelines.common import AVStudioError, settings
from tabs import lipsync, music_face, sync_check
from tabs.common import OUTPUT_TTL_S

TABS = (sync_check, lipsync, music_face)
INTRO = ("# AV Studio\nAudio-visual generation with real models that run on a laptop: check and fix lip sync, "
         "make a face speak new words, make a photo react to music.")


def load_models() -> None:
    """Load every tab's models (once per process); a model that cannot load raises AVStudioError."""
    for tab in TABS:
        tab.load()


def build_app() -> gr.Blocks:
    """The app's Blocks, with every model loaded."""
    load_models()
    with gr.Blocks(title="AV Studio", delete_cache=(OUTPUT_TTL_S, OUTPUT_TTL_S)) as demo:
        gr.Markdown(INTRO)
        for tab in TABS:
            with gr.Tab(tab.TITLE):
                tab.build()
    return demo.queue(max_size=settings().queue_size)


def main() -> int:
    try:
        demo = build_app()
    except AVStudioError as err:  # a bad AVSTUDIO_* value or a model that cannot load
        print(f"error: {err}", file=sys.stderr)
        return 2
    demo.launch(max_file_size=int(settings().max_upload_mb * 1024 * 1024))  # in bytes
    return 0


if __name__ == "__main__":
    sys.exit(main())
