"""The app's API through gradio_client against a launched app."""
import pytest
from gradio_client import Client, handle_file

from app import build_app
from media.io import probe
from tests.bad_inputs import make_bad_inputs
from tests.test_sync_check import HELD_OUT, shifted_clip

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client():
    demo = build_app()
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    yield Client(url, verbose=False)
    demo.close()


def test_api_lists_sync_check(client):
    assert "/sync_check" in client.view_api(return_format="dict", print_info=False)["named_endpoints"]


def test_sync_check_through_the_api(client, media, tmp_path):
    clip = shifted_clip(media / HELD_OUT, tmp_path / "early.mov", 6)
    verdict, details, plot, fixed = client.predict(handle_file(str(clip)), True, api_name="/sync_check")
    assert abs(details["offset_frames"] - 6) <= 1, details
    assert "early" in verdict
    fixed_path = fixed["video"] if isinstance(fixed, dict) else fixed
    assert fixed_path.endswith(".mp4") and probe(fixed_path).has_audio
    assert plot is not None


def test_bad_inputs_through_the_api(client, media, tmp_path):
    for name, (path, phrase) in make_bad_inputs(tmp_path, media).items():
        with pytest.raises(Exception, match=phrase):
            client.predict(handle_file(str(path)), False, api_name="/sync_check")


def test_api_lists_lipsync(client):
    assert "/lipsync" in client.view_api(return_format="dict", print_info=False)["named_endpoints"]


def test_lipsync_through_the_api(client, media):
    from pathlib import Path

    examples = Path(__file__).resolve().parents[1] / "examples"
    video, message, details = client.predict(handle_file(str(examples / "lipsync_astronaut.jpg")),
                                             handle_file(str(examples / "lipsync_speech.wav")), api_name="/lipsync")
    path = video["video"] if isinstance(video, dict) else video
    info = probe(path)
    assert path.endswith(".mp4") and info.has_audio and details["source"] == "photo"
    assert details["output_path"] == "lipsync_astronaut_lipsync.mp4"  # a file name, no server path
    assert abs(info.n_frames - details["n_frames"]) <= 1 and "fps" in message


def test_lipsync_bad_input_through_the_api(client, media, tmp_path):
    bad = make_bad_inputs(tmp_path, media)
    path, phrase = bad["no_face"]
    with pytest.raises(Exception, match=phrase):
        client.predict(handle_file(str(path)), handle_file(str(bad["audio_only"][0])), api_name="/lipsync")


def test_music_face_through_the_api(client):
    from pathlib import Path

    examples = Path(__file__).resolve().parents[1] / "examples"
    video, plot, message, details = client.predict(
        handle_file(str(examples / "lipsync_astronaut.jpg")), handle_file(str(examples / "music_face_calm_to_intense.wav")),
        ["smile", "open_mouth"], 1.0, 25, api_name="/music_face")
    path = video["video"] if isinstance(video, dict) else video
    info = probe(path)
    assert path.endswith(".mp4") and info.has_audio and abs(info.n_frames - details["n_frames"]) <= 1
    weights = details["weights"]
    assert len(weights) == details["n_frames"] == 300 and plot is not None
    # the example is six calm seconds, then six intense ones
    assert sum(weights[150:]) / 150 > sum(weights[:150]) / 150 + 0.1


def test_music_face_bad_input_through_the_api(client, tmp_path):
    from pathlib import Path

    import numpy as np

    from media.io import write_audio

    silent = tmp_path / "silent.wav"
    write_audio(silent, np.zeros(32000, np.float32), 16000)
    examples = Path(__file__).resolve().parents[1] / "examples"
    with pytest.raises(Exception, match="silent"):
        client.predict(handle_file(str(examples / "lipsync_astronaut.jpg")), handle_file(str(silent)),
                       ["smile"], 1.0, 25, api_name="/music_face")


def test_bgm_fit_through_the_api(client, media, tmp_path):
    from pathlib import Path

    examples = Path(__file__).resolve().parents[1] / "examples"
    plot, timeline, mix, mix_video, details = client.predict(
        handle_file(str(examples / "bgm_speech.ogg")), None, "Bundled library", None, -15, api_name="/bgm_fit")
    assert plot is not None and mix_video is None and "| time |" in timeline
    assert details["segments"] and details["mix"]["duck_db"] == -15 and abs(details["mix"]["loudness_lufs"] + 16) < 0.5
    assert probe(mix).duration == pytest.approx(details["duration_s"], abs=0.2)
    # your own tracks: indexed on the spot, and only they are ranked
    tracks = [handle_file(str(media / "music" / n)) for n in ("wesnoth_elf-land.ogg", "etr_race1-jt.ogg")]
    _, timeline, _, _, details = client.predict(handle_file(str(examples / "bgm_speech.ogg")), None,
                                                "My uploaded tracks", tracks, -12, api_name="/bgm_fit")
    names = {t["track"] for s in details["segments"] for t in s["tracks"]}
    assert names <= {"wesnoth_elf-land.ogg", "etr_race1-jt.ogg"} and details["mix"]["duck_db"] == -12
    with pytest.raises(Exception, match="not speech"):
        client.predict(handle_file(str(media / "music" / "wesnoth_loyalists.ogg")), None, "Bundled library", None,
                       -15, api_name="/bgm_fit")



def test_soundtrack_through_the_api(client, tmp_path):
    from pathlib import Path

    import numpy as np

    from media.io import write_audio

    examples = Path(__file__).resolve().parents[1] / "examples"
    clip = examples / "sync_astronaut_in_sync.mp4"
    video, audio, plot, details = client.predict(handle_file(str(examples / "soundtrack_hum_ode_to_joy.wav")),
                                                 handle_file(str(clip)), 0, api_name="/soundtrack")
    video = video["video"] if isinstance(video, dict) else video
    assert probe(video).has_audio and audio and plot is not None and details["noise_free"]
    assert abs(details["loudness_lufs"] + 14) < 0.5 and details["notes_by_part"]["lead"] > 0
    write_audio(tmp_path / "silence.wav", np.zeros(32000, np.float32), 16000)
    with pytest.raises(Exception, match="no pitched sound"):
        client.predict(handle_file(str(tmp_path / "silence.wav")), handle_file(str(clip)), None, api_name="/soundtrack")
