"""The app as a Hugging Face Space: nothing but the repository (no ../shared, no AVSTUDIO_MEDIA), started
with the README's first command, serves every tab with its bundled examples."""
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
from gradio_client import Client, handle_file

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def repository_copy(dest):
    """The files git would ship (tracked and untracked, not ignored), copied to ``dest``."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    repo = repository_copy(tmp_path_factory.mktemp("space") / "repo")
    assert not (repo.parent / "shared").exists()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVSTUDIO_")}
    env.update(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), PYTHONPATH="")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=repo, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    client = None
    for _ in range(240):
        if proc.poll() is not None:
            pytest.fail(f"app.py exited with {proc.returncode}: {proc.stdout.read()[-3000:]}")
        try:
            client = Client(url, verbose=False)
            break
        except Exception:
            time.sleep(0.5)
    if client is None:
        proc.kill()
        pytest.fail("app.py did not serve within 120 s")
    yield repo, client
    proc.terminate()
    proc.wait(timeout=30)


def test_every_tab_serves_its_examples(space):
    repo, client = space
    examples = repo / "examples"
    verdict, details, _, fixed = client.predict(handle_file(str(examples / "sync_astronaut_audio_early.mp4")), True,
                                                api_name="/sync_check")
    assert details["offset_frames"] > 0 and "early" in verdict and fixed
    video, _, details = client.predict(handle_file(str(examples / "lipsync_astronaut.jpg")),
                                       handle_file(str(examples / "lipsync_speech.wav")), api_name="/lipsync")
    assert video and details["face_frames"] == details["n_frames"] > 0
    video, _, _, details = client.predict(handle_file(str(examples / "lipsync_astronaut.jpg")),
                                          handle_file(str(examples / "music_face_calm_to_intense.wav")),
                                          ["smile"], 1.0, 25, api_name="/music_face")
    assert video and details["n_frames"] == 300
    video, audio, _, details = client.predict(handle_file(str(examples / "soundtrack_hum_ode_to_joy.wav")),
                                              handle_file(str(examples / "sync_astronaut_in_sync.mp4")), 0,
                                              api_name="/soundtrack")
    assert video and audio and details["noise_free"]
