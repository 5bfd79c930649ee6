"""The shape the pipelines share: settings, the output base, the CLI's progress and errors. No media."""
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest

from media.errors import AVStudioError
from media.io import MediaError, read_image
from pipelines import lipsync, music_face, sync_check
from pipelines.common import CliProgress, PipelineOutput, SettingsError, read_settings, resolve_max_seconds, run_cli
from tests.conftest import ROOT


def test_settings_defaults_and_values(tmp_path):
    assert read_settings({}).max_seconds == 120
    s = read_settings({"AVSTUDIO_MAX_SECONDS": "30", "AVSTUDIO_MAX_SIDE": "1280", "AVSTUDIO_LIPSYNC": str(tmp_path),
                       "AVSTUDIO_SYNC_CHECK": "someone/syncnet"})
    assert (s.max_seconds, s.max_side, s.lipsync, s.sync_check) == (30.0, 1280, str(tmp_path), "someone/syncnet")


@pytest.mark.parametrize("env, phrase", [
    ({"AVSTUDIO_MAX_SECONDS": "two"}, "is not a number"),
    ({"AVSTUDIO_MAX_SECONDS": "-5"}, "at least"),
    ({"AVSTUDIO_MAX_SIDE": "1e3"}, "whole number"),
    ({"AVSTUDIO_LIPSYNC": "/no/such/folder"}, "neither a model folder"),
    ({"AVSTUDIO_MAX_SECOND": "30"}, "unknown setting AVSTUDIO_MAX_SECOND"),
    ({"AVSTUDIO_MAX_UPLOAD_MB": "inf"}, "not a finite number"),
    ({"AVSTUDIO_LIPSYNC": ""}, "neither a model folder"),
])
def test_bad_settings_are_refused_by_name(env, phrase):
    with pytest.raises(SettingsError, match=phrase) as err:
        read_settings(env)
    assert next(iter(env)) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("value", [float("nan"), 0, -5, "soon"])
def test_a_bad_length_limit_is_refused(value):
    with pytest.raises(SettingsError, match="max_seconds"):
        resolve_max_seconds(value)


def test_a_picture_that_declares_too_many_pixels_is_refused(tmp_path):
    """A few bytes of PNG header can declare a 100000 x 100000 image: refused before decoding, by name."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    with pytest.raises(MediaError, match="'bomb.png' has too many pixels") as err:
        read_image(bomb)
    assert str(tmp_path) not in str(err.value)


def test_a_bad_setting_stops_the_app_with_one_line():
    env = {**os.environ, "AVSTUDIO_MAX_UPLOAD_MB": "lots"}
    done = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == "error: AVSTUDIO_MAX_UPLOAD_MB='lots' is not a number"
    assert "Traceback" not in done.stderr


def test_every_user_facing_error_is_an_avstudio_error_and_nothing_else_is():
    for cls in (MediaError, sync_check.SyncCheckError, lipsync.LipSyncError, music_face.MusicFaceError, SettingsError):
        assert issubclass(cls, AVStudioError) and not issubclass(cls, ValueError)


@dataclass(kw_only=True)
class _Output(PipelineOutput):
    frames: int
    curve: np.ndarray = None

    def message(self):
        return f"{self.frames} frames"


def test_summary_is_json_ready_and_can_hide_paths():
    out = _Output(output_path="/srv/tmp/abc/out.mp4", duration_s=np.float32(1.23456), frames=np.int64(3),
                  timings={"total": 0.123456})
    assert json.loads(json.dumps(out.summary()))["duration_s"] == 1.2346
    assert out.summary(paths=False)["output_path"] == "out.mp4"


def test_cli_progress_is_one_line_per_step_without_a_terminal():
    stream = io.StringIO()
    progress = CliProgress("demo", stream)
    for i in range(50):
        progress(i / 100, "tracking the face")
    progress(0.5, "generating")
    progress(0.9, "generating")
    assert stream.getvalue().splitlines() == ["demo:   0% tracking the face", "demo:  50% generating"]


def _cli(argv, outcome):
    def run(args, progress):
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return run_cli(argv, name="demo", description="demo", add_arguments=lambda ap: ap.add_argument("x"),
                   run=run, out_help="out", out_required=False)


def test_cli_exit_status_and_streams(capsys):
    assert _cli(["in", "--json"], _Output(frames=2)) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "2 frames" and json.loads(out.splitlines()[-1])["frames"] == 2
    assert _cli(["in", "--json"], MediaError("'x.mp4' is empty")) == 2
    out, err = capsys.readouterr()
    assert json.loads(out.splitlines()[-1]) == {"error": "'x.mp4' is empty"} and "error: 'x.mp4' is empty" in err
    assert _cli(["in"], _Output(frames=1, problem="could not write")) == 2
    assert "error: could not write" in capsys.readouterr().err
    with pytest.raises(ZeroDivisionError):  # a bug is not the user's mistake: it keeps its traceback
        _cli(["in"], ZeroDivisionError("bug"))


def test_folded_batchnorm_gives_the_same_outputs_and_leaves_none():
    """pipelines.common.fold_batchnorm on both networks that have BatchNorms (trained statistics, not the
    initial ones): the same outputs to float rounding, and no BatchNorm left. The pipelines load them folded."""
    import torch

    from models.lipsync import LipSyncNet
    from models.syncnet import SyncNet
    from pipelines.common import fold_batchnorm

    torch.manual_seed(0)
    for cls, loader in ((LipSyncNet, lipsync.load_model), (SyncNet, sync_check.load_model)):
        model = cls.from_pretrained()
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
        folded = fold_batchnorm(cls.from_pretrained().train())
        assert not folded.training
        for net in (folded, loader()):
            assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
        with torch.no_grad():
            if cls is LipSyncNet:
                args = torch.rand(4, 5, 64, 128), torch.randn(4, 13, 16)
                pairs = [(model.generate(*args), folded.generate(*args))]
            else:
                video, mel = torch.randn(4, 5, 48, 96), torch.randn(4, 80, 16)
                pairs = [(model.embed_video(video), folded.embed_video(video)),
                         (model.embed_audio(mel), folded.embed_audio(mel))]
        for a, b in pairs:
            assert a.abs().max() > 0.1
            assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
