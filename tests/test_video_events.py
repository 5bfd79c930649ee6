"""Visual events for a soundtrack: cuts, visual beats, energy, brightness and colour on synthesised clips."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from media.io import MediaError, write_audio, write_video
from media.video_events import NoFramesError, VideoEvents, video_events

FPS = 30
W, H = 128, 96
FRAME_S = 1 / FPS


def texture(seed: int, width: int, colour: tuple[float, float, float], height: int = H) -> np.ndarray:
    """A smooth random texture (blobs of a few px) tinted with ``colour`` (RGB 0..1), float32 0..255."""
    rng = np.random.default_rng(seed)
    grey = cv2.GaussianBlur(rng.random((height, width), np.float32), (0, 0), 3)
    grey = (grey - grey.min()) / (grey.max() - grey.min() + 1e-9)
    return (0.25 + 0.75 * grey)[..., None] * np.array(colour, np.float32) * 255


def panning(tex: np.ndarray, n: int, speed: int, first: int = 0) -> list[np.ndarray]:
    """``n`` frames of a camera panning over ``tex`` by ``speed`` px per frame."""
    return [tex[:, (first + i) * speed:(first + i) * speed + W].astype(np.uint8) for i in range(n)]


def clip(tmp_path, name: str, frames: list[np.ndarray], fps: float = FPS) -> str:
    path = str(tmp_path / name)
    write_video(path, frames, fps)
    return path


def jumping_square(n: int, every: int, square: bool = True) -> tuple[list[np.ndarray], list[int]]:
    """A still textured background with a white square that jumps to a new place every ``every`` frames."""
    background = texture(3, W, (0.6, 0.7, 0.6)).astype(np.uint8)
    places = [(10, 10), (80, 50), (20, 60), (90, 8), (50, 30)]
    frames, jumps = [], list(range(every, n, every))
    for i in range(n):
        frame = background.copy()
        if square:
            x, y = places[(i // every) % len(places)]
            frame[y:y + 24, x:x + 24] = 255
        frames.append(frame)
    return frames, jumps


def test_a_hard_cut_is_found_within_a_frame(tmp_path):
    scene_a = panning(texture(1, W + 200, (1.0, 0.55, 0.3)), 60, 1)  # warm, slow pan
    scene_b = panning(texture(2, W + 200, (0.3, 0.6, 1.0)), 60, 1)  # cool, another place
    ev = video_events(clip(tmp_path, "cut.mp4", scene_a + scene_b))
    assert len(ev.cuts) == 1
    assert abs(ev.cuts[0] - 2.0) <= FRAME_S + 1e-6
    assert ev.duration_s == pytest.approx(4.0, abs=1e-6) and ev.fps == pytest.approx(FPS)
    assert len(ev.times) == 120 and ev.times.dtype == np.float64
    assert len(ev.beats) == 0  # the cut is not also a beat, and a steady pan has none
    assert np.all((ev.energy > 0.1) & (ev.energy < 0.4))  # a slow pan of a contrasty texture: calm
    assert ev.motion.max() < 2 * np.median(ev.motion)  # the change of scene is not motion


def test_a_steady_pan_is_not_a_cut(tmp_path):
    frames = panning(texture(4, W + 6 * 120, (0.8, 0.6, 0.4)), 120, 6)  # 6 px per frame: a brisk pan
    ev = video_events(clip(tmp_path, "pan.mp4", frames))
    assert len(ev.cuts) == 0 and len(ev.beats) == 0
    assert ev.energy.mean() > 0.5  # busy: the fixed scale is not the clip's own maximum


def test_visual_beats_land_on_jumps_and_energy_rises(tmp_path):
    frames, jumps = jumping_square(120, 15)  # a jump every 0.5 s
    ev = video_events(clip(tmp_path, "jumps.mp4", frames))
    still = video_events(clip(tmp_path, "still.mp4", jumping_square(120, 15, square=False)[0]))
    jump_s = np.array(jumps) / FPS
    assert len(ev.beats) == len(jump_s)
    assert np.abs(ev.beats - jump_s).max() <= 2 * FRAME_S + 1e-6
    assert np.all((ev.beat_strength > 0) & (ev.beat_strength <= 1))
    assert len(ev.cuts) == 0  # a small object jumping is motion, not a new shot
    assert ev.energy.mean() > still.energy.mean() + 0.02
    assert len(still.beats) == 0 and still.energy.max() < 0.02


def test_high_frame_rates_are_subsampled_to_30_per_second(tmp_path):
    frames, jumps = jumping_square(120, 30)  # 2 s at 60 fps, a jump every 0.5 s
    ev = video_events(clip(tmp_path, "fast.mp4", frames, fps=60))
    assert ev.fps == pytest.approx(60) and len(ev.times) == 60
    assert np.allclose(np.diff(ev.times), 1 / 30)
    assert np.abs(ev.beats - np.array(jumps) / 60).max() <= 2 / 30 + 1e-6


def test_a_single_frame_video(tmp_path):
    ev = video_events(clip(tmp_path, "one.mp4", jumping_square(1, 15)[0]))
    assert len(ev.times) == 1 and ev.duration_s == pytest.approx(FRAME_S)
    assert len(ev.events()) == 0 and ev.motion.tolist() == [0.0]


def test_brightness_and_colourfulness_are_ordered(tmp_path):
    def flat(rgb: tuple[int, int, int], seed: int) -> list[np.ndarray]:
        noise = np.random.default_rng(seed).normal(0, 4, (H, W, 1))
        return [np.clip(np.array(rgb) + noise, 0, 255).astype(np.uint8) for _ in range(15)]

    dark = video_events(clip(tmp_path, "dark.mp4", flat((30, 30, 30), 0)))
    bright = video_events(clip(tmp_path, "bright.mp4", flat((220, 220, 220), 1)))
    assert dark.brightness.mean() < 0.2 and bright.brightness.mean() > 0.8
    grey = video_events(clip(tmp_path, "grey.mp4", flat((128, 128, 128), 2)))
    stripes = np.zeros((H, W, 3), np.uint8)
    for k, colour in enumerate([(230, 20, 20), (20, 200, 30), (30, 40, 230), (240, 220, 20)]):
        stripes[:, k * W // 4:(k + 1) * W // 4] = colour
    vivid = video_events(clip(tmp_path, "vivid.mp4", [stripes] * 15))
    assert grey.colourfulness.max() < 0.1 and vivid.colourfulness.min() > 0.6
    assert np.all((vivid.colourfulness >= 0) & (vivid.colourfulness <= 1))


def test_events_and_summary():
    times = np.arange(10) / 10
    ev = VideoEvents(duration_s=1.0, fps=10.0, times=times, motion=np.ones(10), energy=np.full(10, 0.5),
                     brightness=np.full(10, 0.4), colourfulness=np.full(10, 0.2), cuts=np.array([0.5]),
                     beats=np.array([0.2, 0.8]), beat_strength=np.array([0.3, 0.9]))
    assert ev.events().tolist() == [[0.2, 0.3], [0.5, 1.0], [0.8, 0.9]]
    summary = json.loads(json.dumps(ev.summary()))
    assert summary["cuts"] == 1 and summary["beats"] == 2 and summary["mean_energy"] == 0.5
    empty = VideoEvents(1.0, 10.0, times, np.zeros(10), np.zeros(10), np.zeros(10), np.zeros(10),
                        np.zeros(0), np.zeros(0), np.zeros(0))
    assert empty.events().shape == (0, 2)


def test_max_seconds_and_size(tmp_path):
    frames, _ = jumping_square(120, 15)
    ev = video_events(clip(tmp_path, "jumps.mp4", frames), max_seconds=1.0, size=64)
    assert len(ev.times) == 30 and ev.times[-1] < 1.0 and ev.duration_s == pytest.approx(1.0)


def test_audio_only_and_garbage_files_are_refused(tmp_path):
    wav = tmp_path / "hum.wav"
    write_audio(wav, 0.1 * np.sin(np.linspace(0, 2000, 16000)), 16000)
    with pytest.raises(NoFramesError, match="hum.wav.*no video frames"):
        video_events(wav)
    garbage = tmp_path / "junk.mp4"
    garbage.write_bytes(b"this is not a video" * 100)
    with pytest.raises(MediaError, match="junk.mp4"):
        video_events(garbage)
    with pytest.raises(MediaError, match="does not exist"):
        video_events(tmp_path / "missing.mp4")


@pytest.mark.parametrize("name", ["moviepy_chaplin.mp4", "mmaction2_demo_armwrestling.mp4"])
def test_a_real_video(media, name):
    ev = video_events(media / "video" / name, max_seconds=8.0)
    assert 7.5 <= ev.duration_s <= 8.0 + 1e-6 and ev.fps > 0
    for arr in (ev.times, ev.motion, ev.energy, ev.brightness, ev.colourfulness, ev.beat_strength):
        assert np.all(np.isfinite(arr))
    assert len(ev.times) == len(ev.motion) == len(ev.energy) == len(ev.brightness) == len(ev.colourfulness)
    assert np.all(np.diff(ev.times) > 0) and ev.times[0] >= 0 and ev.times[-1] < ev.duration_s
    assert np.all((ev.energy >= 0) & (ev.energy <= 1)) and np.all(ev.motion >= 0)
    events = ev.events()
    assert np.all(np.diff(events[:, 0]) >= 0) and np.all((events[:, 0] >= 0) & (events[:, 0] < ev.duration_s))
    assert len(ev.beats) >= 3  # people move
    json.dumps(ev.summary())
