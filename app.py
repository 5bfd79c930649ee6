"""AV Studio: the Gradio app and the labelling server. It only assembles the tabs of ``tabs/`` and
``annotation/``; the work is done by ``pipelines/`` and the label store.

    python app.py            # http://localhost:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT to change)

Settings are AVSTUDIO_* environment variables (pipelines.common.Settings); a bad value stops start-up with
one line. The label store loads before the app serves; the pipelines' models load in the background while it
already serves, so every tab answers at once and a first click waits only for its own model.
"""
from __future__ import annotations

import os
import sys
import threading

import gradio as gr
from fastapi import FastAPI

from annotation import admin_tab, label_tab
from annotation.api import mount
from annotation.service import store
from pipelines.common import AVStudioError, settings
from tabs import bgm_fit, lipsync, music_face, soundtrack, sync_check
from tabs.common import OUTPUT_TTL_S

TABS = (sync_check, lipsync, music_face, bgm_fit, soundtrack, label_tab, admin_tab)
MODEL_TABS = (sync_check, lipsync, music_face, bgm_fit, soundtrack)  # loaded in the background
INTRO = ("# AV Studio\nAudio-visual generation with real models that run on a laptop: check and fix lip sync, "
         "make a face speak new words, make a photo react to music, find background music for speech, turn a "
         "hummed melody into music for your video; and "
         "label the data they learn from.")


def load_models(tabs=TABS) -> None:
    """Load ``tabs``' models (the label store for the labelling tabs), once per process; failing raises
    AVStudioError."""
    for tab in tabs:
        tab.load()


def load_in_background(tabs=MODEL_TABS) -> threading.Thread:
    """Load ``tabs``' models one after another in a daemon thread. A request that needs a model still loading
    waits for that load (pipelines.common.load_pretrained), its progress saying "loading the model"; other
    requests do not wait. A model that fails to load is reported on stderr, and its tab shows the same error
    when used."""

    def work() -> None:
        for tab in tabs:
            try:
                tab.load()
            except AVStudioError as err:
                print(f"warning: the {tab.TITLE} tab's model did not load: {err}", file=sys.stderr, flush=True)

    thread = threading.Thread(target=work, name="avstudio-load-models", daemon=True)
    thread.start()
    return thread


def build_app(background: bool = True) -> gr.Blocks:
    """The app's Blocks. The label store is loaded first; the models load in the background
    (:func:`load_in_background`), or before this returns with ``background=False``. A tab's ``build()`` may
    return ``on_load(demo, tab)``, which wires what happens when a visitor opens the page (sign-in, a tab only
    admins see)."""
    settings()  # a bad AVSTUDIO_* value stops here, before anything loads
    load_models(tuple(t for t in TABS if t not in MODEL_TABS))
    if background:
        load_in_background()
    else:
        load_models(MODEL_TABS)
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
    except AVStudioError as err:  # a bad AVSTUDIO_* value, or a label store that cannot open
        print(f"error: {err}", file=sys.stderr)
        return 2
    host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    port = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    print(f"* Running on local URL:  http://{host}:{port}", flush=True)
    uvicorn.run(build_server(demo), host=host, port=port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
