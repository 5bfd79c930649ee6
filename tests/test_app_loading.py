"""The app serves while its models load: each tab answers at once, and a click waits only for its own model."""
import threading
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

import app as app_module
from media.io import probe

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_a_tab_answers_while_another_tabs_model_is_still_loading(monkeypatch):
    started, gate = threading.Event(), threading.Event()

    def slow_load():  # the lip-sync tab's model takes as long as this test wants
        started.set()
        gate.wait(300)

    monkeypatch.setattr(app_module.lipsync, "load", slow_load)
    demo = app_module.build_app()
    try:
        assert started.wait(120), "the background loader never reached the lip-sync model"
        _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
        client = Client(url, verbose=False)
        # Music to face loads after lip sync in the background; a click loads it at once, not after lip sync
        video, *_ = client.predict(handle_file(str(EXAMPLES / "lipsync_astronaut.jpg")),
                                   handle_file(str(EXAMPLES / "music_face_calm_to_intense.wav")),
                                   ["smile"], 1.0, 25, api_name="/music_face")
        assert probe(video["video"] if isinstance(video, dict) else video).has_audio
        assert not gate.is_set()  # ... while the lip-sync model was still loading
    finally:
        gate.set()
        demo.close()
