"""AV Studio: the Gradio app and the labelling server. It only assembles the tabs of ``tabs/`` and
``annotation/``; the work is done by ``pipelines/`` and the label store.

    python app.py            # http://localhost:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT to change)

Settings are AVSTUDIO_* environment variables (pipelines.common.Settings); a bad value stops start-up with
one line. Every model loads at start-up, so the first click does not wait for it.
"""
from __future__ import annotations

import os
import sys

import gradio as gr
from fastapi import FastAPI

from annotation import admin_tab, label_tab
from annotation.api import mount
from annotation.service import store
from pipelines.common import AVStudioError, settings
from tabs import bgm_fit, lipsync, music_face, soundtrack, sync_check
from tabs.common import OUTPUT_TTL_S

TABS = (sync_check, lipsync, music_face, bgm_fit, soundtrack, label_tab, admin_tab)
INTRO = ("# AV Studio\nAudio-visual generation with real models that run on a laptop: check and fix lip sync, "
         "make a face speak new words, make a photo react to music, find background music for speech, turn a "
         "hummed melody into music for your video; and "
         "label the data they learn from.")


def load_models() -> None:
    """Load every tab's models and the label store (once per process); failing raises AVStudioError."""
    for tab in TABS:
        tab.load()


def build_app() -> gr.Blocks:
    """The app's Blocks, with every model loaded. A tab's ``build()`` may return ``on_load(demo, tab)``,
    which wires what happens when a visitor opens the page (sign-in, a tab only admins see)."""
    load_models()
    with gr.Blocks(title="AV Studio", delete_cache=(OUTPUT_TTL_S, OUTPUT_TTL_S)) as demo:
        gr.Markdown(INTRO)
        on_loads = []
        for tab in TABS:
            with gr.Tab(tab.TITLE, visible=getattr(tab, "VISIBLE", True)) as component:
                on_load = tab.build()
            if on_load is not None:
                on_loads.append((on_load, component))
        for on_load, component in on_loads:
            on_load(demo, component)
    return demo.queue(max_size=settings().queue_size)


def build_server(demo: gr.Blocks) -> FastAPI:
    """The labelling API at /annotate and the Gradio app at /, on one server."""
    server = mount(FastAPI(title="AV Studio"), store())
    return gr.mount_gradio_app(server, demo, path="/", max_file_size=int(settings().max_upload_mb * 1024 * 1024))


def main() -> int:
    import uvicorn

    try:
        demo = build_app()
    except AVStudioError as err:  # a bad AVSTUDIO_* value or a model that cannot load
        print(f"error: {err}", file=sys.stderr)
        return 2
    host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    port = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    print(f"* Running on local URL:  http://{host}:{port}", flush=True)
    uvicorn.run(build_server(demo), host=host, port=port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
