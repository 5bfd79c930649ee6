"""Sync check on real clips with the bundled discriminator: known shifts, the fix, the CLI, bad input."""
import json
import subprocess
import sys

import numpy as np
import pytest

from media.io import mux_audio, probe, read_audio, read_video, write_video
from pipelines.common import AVStudioError
from pipelines.sync_check import (
    TRACK_EVERY,
    SyncCheckError,
    check_sync,
    load_model,
    resync,
)
from tests.bad_inputs import make_bad_inputs
from tests.conftest import ROOT

# a clip of a source held out of the bundled model's training (see models/weights/syncnet/config.json)
HELD_OUT = "talking_video/pcavs_Audio_Source_681100216.mp4"


def shifted_clip(src, out, frames_early: int, fps: float = 25.0):
    """Copy of ``src`` whose audio is ``frames_early`` frames early, as lossless PCM (no AAC delay)."""
    return mux_audio(src, out, read_audio(src, sr=16000), sr=16000, delay_s=-frames_early / fps)


def test_bundled_model_never_saw_the_test_source():
    meta = load_model().training_metadata
    assert "pcavs" in meta["holdout_sources"] and "pcavs" not in meta["train_sources"]


@pytest.mark.parametrize("shift", [0, 6, -6])
def test_recovers_a_known_shift(media, tmp_path, shift):
    clip = shifted_clip(media / HELD_OUT, tmp_path / f"shift{shift}.mkv", shift)
    result = check_sync(clip)
    assert abs(result.offset_frames - shift) <= 1, result.summary()
    assert result.offset_ms == pytest.approx(result.offset_frames * 40.0)
    assert result.confidence > 0 and result.curve.shape == (31,)
    assert result.frame_confidence.shape == (result.n_frames,)


def test_bfloat16_gives_the_float32_offsets(media):
    """The discriminator in bfloat16 (NETWORK_BFLOAT16, on CPUs that compute it natively): the same embeddings to
    about 1 %, the same curve's minimum."""
    from models.syncnet import embed_video_windows, prepare_clip, sync_score

    model, x = load_model(), prepare_clip(media / HELD_OUT, track_every=TRACK_EVERY)
    full, half = (embed_video_windows(model, x.gray, x.found, x.fps, bfloat16=b) for b in (False, True))
    assert half.dtype == np.float32 and np.abs(half - full).max() < 0.02 * np.abs(full).max()
    scores = [sync_score(model, x.gray, x.found, x.mel, x.fps, bfloat16=b) for b in (False, True)]
    assert scores[0]["offset_frames"] == scores[1]["offset_frames"]
    assert scores[1]["confidence"] == pytest.approx(scores[0]["confidence"], abs=0.01)


def test_fix_resyncs_and_copies_the_picture(media, tmp_path):
    clip = shifted_clip(media / HELD_OUT, tmp_path / "early.mkv", 6)
    result = check_sync(clip, out_path=tmp_path / "fixed.mp4")
    fixed = probe(result.output_path)
    assert fixed.n_frames == probe(clip).n_frames and fixed.video_codec == probe(clip).video_codec
    again = check_sync(result.output_path)
    assert abs(again.offset_frames) <= 1, again.summary()


def test_cli_json_and_fix(media, tmp_path):
    clip = shifted_clip(media / HELD_OUT, tmp_path / "late.mkv", -6)
    out = tmp_path / "cli_fixed.mp4"
    proc = subprocess.run([sys.executable, "-m", "pipelines.sync_check", str(clip), "--json", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ["offset_frames", "offset_ms", "confidence", "min_dist", "fps"]:
        assert key in data
    assert abs(data["offset_frames"] + 6) <= 1 and data["fps"] == 25.0
    assert out.exists() and probe(out).has_audio


def test_too_long_is_refused_with_the_limit(media):
    with pytest.raises(SyncCheckError, match="limit is 3 s"):
        check_sync(media / HELD_OUT, max_seconds=3)


def test_bad_inputs_get_clear_messages(media, tmp_path):
    for name, (path, phrase) in make_bad_inputs(tmp_path, media).items():
        with pytest.raises(AVStudioError, match=phrase):
            check_sync(path)
        proc = subprocess.run([sys.executable, "-m", "pipelines.sync_check", str(path)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, name
        assert "Traceback" not in proc.stderr and phrase in proc.stderr, (name, proc.stderr[-1000:])


@pytest.mark.slow
def test_the_tab_examples_show_what_they_say():
    """The examples are made by examples/make_examples.py: the Lip sync pipeline's output on the portrait, then
    the same with the audio 8 frames early."""
    examples = ROOT / "examples"
    in_sync = check_sync(examples / "sync_astronaut_in_sync.mp4")
    early = check_sync(examples / "sync_astronaut_audio_early.mp4")
    assert (in_sync.offset_frames, early.offset_frames) == (0, 8)
    assert in_sync.reliable and early.reliable


def test_30fps_clip_with_sidecar_audio(media, tmp_path):
    folder = media / "talking_video" / "paired_audio"
    clip = mux_audio(folder / "styletalk_feifeili_clip3.mp4", tmp_path / "early.mkv", folder / "styletalk_feifeili_clip3.wav",
                     sr=16000, delay_s=-6 / 30)
    result = check_sync(clip)
    assert result.fps == pytest.approx(30.0, abs=0.01)
    assert abs(result.offset_frames - 6) <= 1, result.summary()
    assert result.offset_ms == pytest.approx(result.offset_frames * 1000 / 30, abs=0.2)
    assert result.curve.shape == (2 * 18 + 1,)  # +/-0.6 s at 30 fps


def test_a_still_face_is_not_trusted_and_not_fixed(media, tmp_path):
    src = media / HELD_OUT
    frames, fps = read_video(src, max_frames=1)
    still = tmp_path / "still.mp4"
    write_video(still, (frames[0] for _ in range(200)), fps, audio=read_audio(src)[: 8 * 16000], sr=16000)
    result = check_sync(still, out_path=tmp_path / "fixed.mp4")
    assert not result.reliable and "No reliable" in result.verdict()
    assert result.output_path is None and not (tmp_path / "fixed.mp4").exists() and result.problem


def test_resync_reencodes_pictures_browsers_cannot_play(media, tmp_path):
    """An MPEG-4 Part 2 (LRS2) picture is re-encoded to H.264; the audio moves by exactly the offset."""
    src = media / "talking_video" / "lrs2_deepavsr_00016.mp4"
    out = resync(src, 2, 25.0, tmp_path / "fixed.mp4")
    info, orig = probe(out), probe(src)
    assert orig.video_codec == "mpeg4" and info.video_codec == "h264" and info.n_frames == orig.n_frames
    a, b = read_audio(src), read_audio(out)
    n = min(len(a), len(b))
    lag = int(np.argmax(np.correlate(b[:n], a[:n], "full"))) - (n - 1)
    assert abs(lag - 2 * 640) <= 16, lag  # 2 frames = 80 ms = 1280 samples later
