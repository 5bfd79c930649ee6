"""Tests for media.io: real encodes and decodes with PyAV, no mocks."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from media.io import (
    MediaError,
    iter_audio_chunks,
    iter_video_frames,
    mux_audio,
    prefetch,
    probe,
    read_audio,
    read_video,
    shift_audio,
    write_audio,
    write_video,
)

SR = 16000
FLASH = 20  # index of the only bright frame; the audio burst starts at its time
W, H = 128, 96


def flash_frames(n: int):
    """n dark frames, frame FLASH bright; a generator, as write_video must accept."""
    for k in range(n):
        yield np.full((H, W, 3), 230 if k == FLASH else 10, np.uint8)


def burst(n_samples: int, onset: int, sr: int = SR) -> np.ndarray:
    """Silence with a 10 ms 1 kHz burst starting (at full amplitude) at sample ``onset``."""
    audio = np.zeros(n_samples, np.float32)
    t = np.arange(sr // 100) / sr
    audio[onset:onset + len(t)] = 0.5 * np.cos(2 * np.pi * 1000 * t)
    return audio


def onset_of(audio: np.ndarray) -> int:
    loud = np.flatnonzero(np.abs(audio) > 0.1)
    assert loud.size, "burst not found"
    return int(loud[0])


def brightest(frames: np.ndarray) -> int:
    return int(frames.reshape(len(frames), -1).mean(axis=1).argmax())


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("n, fps, sr", [(50, 25.0, 16000), (30, 29.97, 16000), (50, 25.0, 48000)])
def test_write_read_round_trip_is_aligned(tmp_path, n, fps, sr):
    rate = Fraction(30000, 1001) if fps == 29.97 else Fraction(fps)
    onset = round(FLASH / rate * sr)
    path = tmp_path / "clip.mp4"
    # A little more audio than video: write_video cuts it to the video duration.
    write_video(path, flash_frames(n), fps, audio=burst(round(n / rate * sr) + 3000, onset, sr),
                sr=sr)

    info = probe(path)
    assert info.n_frames == n
    assert info.fps == pytest.approx(float(rate), abs=1e-9)
    assert info.duration == pytest.approx(n / rate, abs=0.05)
    assert info.has_video and info.has_audio
    assert (info.width, info.height, info.video_codec, info.audio_codec) == (W, H, "h264", "aac")
    assert info.audio_sample_rate == sr and info.audio_channels == 1

    frames, read_fps = read_video(path)
    assert frames.shape == (n, H, W, 3) and frames.dtype == np.uint8
    assert read_fps == pytest.approx(float(rate))
    assert brightest(frames) == FLASH
    assert frames[FLASH].mean() > 200 and frames[FLASH - 1].mean() < 40
    times = [t for _, t, _ in iter_video_frames(path)]
    np.testing.assert_allclose(times, np.arange(n) / float(rate), atol=1e-6)

    audio = read_audio(path, sr=sr)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - n / rate * sr) <= 1024
    error = onset_of(audio) - onset
    print(f"{fps} fps @ {sr} Hz: A/V onset error {error} samples, "
          f"length {len(audio)} vs {float(n / rate * sr):.1f}")
    assert abs(error) <= 1024  # one AAC frame; measured 0


def test_write_video_pads_odd_sizes_and_checks_frames(tmp_path):
    path = tmp_path / "odd.mp4"
    write_video(path, (np.full((5, 7, 3), 128, np.uint8) for _ in range(3)), 25)
    frames, _ = read_video(path)
    assert frames.shape == (3, 6, 8, 3)
    assert abs(int(frames[0, 5, 7, 0]) - 128) < 8  # padding repeats the edge pixels

    with pytest.raises(MediaError, match="frame 1"):
        write_video(tmp_path / "bad.mp4", [np.zeros((6, 8, 3), np.uint8),
                                           np.zeros((8, 8, 3), np.uint8)], 25)
    with pytest.raises(MediaError, match="no video frames"):
        write_video(tmp_path / "none.mp4", [], 25)
    with pytest.raises(MediaError, match="24001 Hz"):
        write_video(tmp_path / "sr.mp4", [np.zeros((6, 8, 3), np.uint8)], 25,
                    audio=np.zeros(100, np.float32), sr=24001)


def test_read_ranges_and_seeking(tmp_path):
    path = tmp_path / "ramp.mp4"
    write_video(path, (np.full((H, W, 3), 4 * k, np.uint8) for k in range(60)), 25,
                audio=np.linspace(-0.5, 0.5, round(60 / 25 * SR), dtype=np.float32))
    everything, _ = read_video(path)
    part, _ = read_video(path, start=1.0, end=1.5)
    np.testing.assert_array_equal(part, everything[25:38])  # 1.00 s ... 1.48 s
    items = list(iter_video_frames(path, start=1.0, end=1.5, size=(64, 48)))
    assert [i for i, _, _ in items] == list(range(25, 38))
    assert items[0][2].shape == (48, 64, 3)
    assert read_video(path, max_frames=7)[0].shape[0] == 7
    assert read_video(path, start=5.0)[0].shape == (0, H, W, 3)

    audio = read_audio(path)
    clip = read_audio(path, start=0.5, end=1.25)
    assert len(clip) == round(0.75 * SR)
    np.testing.assert_allclose(clip, audio[SR // 2:SR // 2 + len(clip)], atol=1e-6)


# ----------------------------------------------------------------------------- other containers


def _encode(path, fmt, vcodec, acodec, *, video_start=0.0, audio_start=0.0, asr=48000, fps=25,
            n=50):
    """Write a flash/burst clip with plain PyAV, as other tools would, in any container."""
    burst_time = video_start + FLASH / fps  # on the file's clock, with the flash
    with av.open(str(path), "w", format=fmt) as out:
        video = out.add_stream(vcodec, rate=fps)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        audio = out.add_stream(acodec, rate=asr, layout="stereo")
        for k, rgb in enumerate(flash_frames(n)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = k + round(video_start * fps)
            frame.time_base = Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        signal = burst(round(n / fps * asr), round((burst_time - audio_start) * asr), asr)
        size = audio.codec_context.frame_size or 1024
        for i in range(0, len(signal), size):
            chunk = np.ascontiguousarray(np.stack([signal[i:i + size]] * 2))
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate, frame.time_base = asr, Fraction(1, asr)
            frame.pts = i + round(audio_start * asr)
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))


@pytest.mark.parametrize("name, fmt, vcodec, acodec, tolerance", [
    ("clip.webm", "webm", "libvpx-vp9", "libopus", 0),
    ("clip.mkv", "matroska", "libx264", "aac", 0),
    ("clip.mov", "mov", "libx264", "aac", 0),
    ("clip.mpg", "mpeg", "mpeg1video", "mp2", 0),
    ("clip.avi", "avi", "mpeg4", "pcm_s16le", 0),
    ("hevc.mp4", "mp4", "libx265", "aac", 0),
    # AVI cannot record the MP3 encoder delay (1105 samples at 48 kHz = 368 at 16 kHz).
    ("mp3.avi", "avi", "mpeg4", "libmp3lame", 400),
])
def test_reads_other_containers(tmp_path, name, fmt, vcodec, acodec, tolerance):
    if vcodec not in av.codecs_available or acodec not in av.codecs_available:
        pytest.skip(f"this FFmpeg build lacks {vcodec} or {acodec}")
    path = tmp_path / name
    _encode(path, fmt, vcodec, acodec)
    info = probe(path)
    # The frame count comes from the header; FFmpeg's AVI muxer with MP3 says 51.
    assert abs(info.n_frames - 50) <= 1 and info.fps == 25.0 and info.has_audio
    frames, _ = read_video(path)
    assert len(frames) == 50 and brightest(frames) == FLASH
    audio = read_audio(path)
    assert abs(len(audio) - 2 * SR) <= 1152
    assert abs(onset_of(audio) - FLASH / 25 * SR) <= tolerance


@pytest.mark.parametrize("video_start, audio_start", [(0.4, 0.0), (0.0, 0.3)])
def test_audio_is_aligned_to_first_video_frame(tmp_path, video_start, audio_start):
    """Audio before the first video frame is trimmed; a late audio start is padded."""
    path = tmp_path / "offset.mkv"
    _encode(path, "matroska", "libx264", "aac", video_start=video_start,
            audio_start=audio_start)
    frames, _ = read_video(path)
    assert brightest(frames) == FLASH
    audio = read_audio(path)
    # Relative to the first video frame the burst is at FLASH / 25 s, whatever the start times.
    assert abs(onset_of(audio) - round(FLASH / 25 * SR)) <= 1
    if audio_start > video_start:
        assert not audio[: round((audio_start - video_start) * SR) - 1].any()


# ----------------------------------------------------------------------------- muxing


def test_mux_audio_copies_video_and_shifts_audio(tmp_path):
    n, onset = 50, round(FLASH / 25 * SR)
    silent = tmp_path / "silent.mp4"
    write_video(silent, flash_frames(n), 25)
    signal = burst(3 * SR, onset)  # longer than the 2 s video
    source = probe(silent)

    def video_packets(path):
        with av.open(str(path)) as container:
            return [bytes(p) for p in container.demux(video=0) if p.size]

    for delay in (0.0, 0.2, -0.2):
        out = mux_audio(silent, tmp_path / f"muxed{delay}.mp4", signal, delay_s=delay)
        info = probe(out)
        assert (info.n_frames, info.width, info.height, info.video_codec) == \
            (source.n_frames, source.width, source.height, source.video_codec)
        assert video_packets(out) == video_packets(silent)
        audio = read_audio(out)
        assert len(audio) == 2 * SR  # cut to the video duration
        error = onset_of(audio) - (onset + round(delay * SR))
        print(f"mux delay {delay:+.1f} s: onset error {error} samples")
        assert abs(error) <= 1024

    # Audio given as a file, at another AAC rate.
    wav = tmp_path / "burst.wav"
    write_audio(wav, signal, SR)
    out = mux_audio(silent, tmp_path / "from_wav.mp4", wav, sr=48000)
    assert probe(out).audio_sample_rate == 48000
    assert abs(onset_of(read_audio(out)) - onset) <= 1

    with pytest.raises(MediaError, match="over its own input"):
        mux_audio(out, out, signal)


def test_shift_audio():
    x = np.arange(1, 6, dtype=np.float32)
    np.testing.assert_array_equal(shift_audio(x, 1, 2), [0, 0, 1, 2, 3])
    np.testing.assert_array_equal(shift_audio(x, 1, -2), [3, 4, 5, 0, 0])
    np.testing.assert_array_equal(shift_audio(x, 1, 0), x)
    np.testing.assert_array_equal(shift_audio(x, 1, 9), np.zeros(5))


def test_write_audio_round_trip(tmp_path):
    signal = burst(SR, 4000)
    write_audio(tmp_path / "a.wav", signal, SR)
    back = read_audio(tmp_path / "a.wav")
    np.testing.assert_allclose(back, signal, atol=1e-4)


# ----------------------------------------------------------------------------- real media


def test_real_talking_video(media):
    path = media / "talking_video/pcavs_Input_00010.mp4"
    info = probe(path)
    assert info.fps == 25.0 and info.video_codec == "h264" and info.audio_sample_rate == 16000
    assert info.n_frames == pytest.approx(info.duration * 25, rel=0.02)
    frames, fps = read_video(path)
    assert fps == 25.0 and len(frames) == info.n_frames
    assert frames.shape[1:] == (info.height, info.width, 3)
    audio = read_audio(path)
    assert len(audio) == pytest.approx(info.duration * 16000, rel=0.02)
    assert np.abs(audio).max() > 0.05
    # Seeking gives the same frames as decoding from the start.
    part = [rgb for _, _, rgb in iter_video_frames(path, start=2.0, end=2.4)]
    np.testing.assert_array_equal(np.stack(part), frames[50:60])


def test_real_mpeg4_video_and_mux(media, tmp_path):
    path = media / "talking_video/lrs2_deepavsr_00001.mp4"
    info = probe(path)
    assert info.video_codec == "mpeg4"
    frames, fps = read_video(path)
    assert len(frames) == info.n_frames > 0 and fps == 25.0
    speech = read_audio(path)
    out = mux_audio(path, tmp_path / "remux.mp4", speech, delay_s=0.1)
    remuxed = probe(out)
    assert (remuxed.video_codec, remuxed.n_frames) == ("mpeg4", info.n_frames)
    np.testing.assert_allclose(read_audio(out)[1600:], speech[:-1600], atol=0.05)


def test_real_ogg_and_chunks(media):
    path = media / "music/etr_race1-jt.ogg"
    assert len(read_audio(path, start=0, end=5)) == 5 * SR
    info = probe(path)
    chunks = list(iter_audio_chunks(path, sr=SR, chunk_s=10.0))
    assert all(len(c) == 10 * SR for c in chunks[:-1]) and 0 < len(chunks[-1]) <= 10 * SR
    assert all(c.dtype == np.float32 and c.ndim == 1 for c in chunks)
    assert sum(map(len, chunks)) == pytest.approx(info.duration * SR, rel=0.01)


# ----------------------------------------------------------------------------- errors


def _raises_media_error(func, path, match):
    with pytest.raises(MediaError, match=match) as caught:
        func(path)
    assert type(caught.value) is MediaError  # not a PyAV exception
    assert Path(path).name in str(caught.value)


def test_errors_are_media_errors(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.touch()
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).bytes(20000))
    wav = tmp_path / "speech.wav"
    write_audio(wav, np.zeros(SR, np.float32), SR)
    silent = tmp_path / "silent.mp4"
    write_video(silent, flash_frames(5), 25)

    for func in (probe, read_video, read_audio, iter_video_frames, iter_audio_chunks):
        _raises_media_error(func, empty, "empty")
        _raises_media_error(func, garbage, "Could not read")
        _raises_media_error(func, tmp_path / "missing.mp4", "does not exist")
    _raises_media_error(read_video, wav, "no video")
    _raises_media_error(iter_video_frames, wav, "no video")
    _raises_media_error(read_audio, silent, "no audio")
    _raises_media_error(iter_audio_chunks, silent, "no audio")
    with pytest.raises(MediaError, match="no video"):
        mux_audio(wav, tmp_path / "out.mp4", np.zeros(SR, np.float32))


def test_real_video_without_audio(media):
    path = media / "talking_video/no_audio/dreamtalk_MEAD_M030_front_happy_level3_001.mp4"
    _raises_media_error(read_audio, path, "no audio")


def _write_rotated(path):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(90)  # counter-clockwise
        for k in range(3):
            rgb = np.zeros((32, 64, 3), np.uint8)
            rgb[:16, :16] = 255  # marker in the stored top-left corner
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = k
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def test_rotated_video_is_read_upright(tmp_path):
    """A phone-style display rotation is applied on reading and kept by mux_audio."""
    path = tmp_path / "rotated.mp4"
    _write_rotated(path)
    info = probe(path)
    assert (info.width, info.height) == (32, 64)
    frames, _ = read_video(path)
    assert frames.shape == (3, 64, 32, 3)
    assert frames[0, -8:, :8].mean() > 200 and frames[0, :8, :8].mean() < 50  # now bottom-left
    assert read_video(path, size=(16, 32))[0].shape == (3, 32, 16, 3)
    muxed = mux_audio(path, tmp_path / "muxed.mp4", np.zeros(SR, np.float32))
    np.testing.assert_array_equal(read_video(muxed)[0], frames)
    plane, table = next(iter_video_frames(path, lazy=True))[2].luma()  # the luma plane is turned the same way
    assert plane.shape == (64, 32) and table[plane[-8:, :8]].mean() > 200 and table[plane[:8, :8]].mean() < 50


def test_prefetch_keeps_order_and_runs_ahead_at_most_depth():
    import threading
    import time

    produced = []
    main = threading.get_ident()

    def items():
        for i in range(20):
            produced.append((i, threading.get_ident()))
            yield i

    it = prefetch(items(), depth=3)
    assert next(it) == 0
    deadline = time.monotonic() + 30
    while len(produced) < 5 and time.monotonic() < deadline:  # the producer fills the queue...
        time.sleep(0.01)
    time.sleep(0.2)  # ...and then waits
    assert len(produced) == 5  # one taken, three waiting, one in hand
    assert list(it) == list(range(1, 20))
    assert all(tid != main for _, tid in produced)  # made in another thread


def test_prefetch_raises_the_producers_error_after_the_items_before_it():
    def items():
        yield 1
        yield 2
        raise MediaError("broken frame")

    got = []
    with pytest.raises(MediaError, match="broken frame"):
        got.extend(prefetch(items()))
    assert got == [1, 2]


def test_prefetch_stopped_early_closes_its_source():
    closed = []

    def items():
        try:
            yield from range(1000)
        finally:
            closed.append(True)

    it = prefetch(items(), depth=2)
    assert next(it) == 0
    it.close()  # the consumer gives up: the producer stops and closes the source in its own thread
    assert closed == [True]


def test_written_video_from_a_prefetched_decode_matches(tmp_path):
    src = tmp_path / "src.mp4"
    frames = [np.full((H, W, 3), 10 * i, np.uint8) for i in range(12)]
    write_video(src, frames, 25)
    direct = [f for _, _, f in iter_video_frames(src)]
    ahead = list(prefetch(f for _, _, f in iter_video_frames(src)))
    assert len(ahead) == len(direct) == 12
    assert all(np.array_equal(a, b) for a, b in zip(ahead, direct))


def test_lazy_frames_convert_on_demand_to_the_same_arrays(tmp_path):
    src = tmp_path / "src.mp4"
    write_video(src, [np.full((H, W, 3), 10 * i, np.uint8) for i in range(6)], 25)
    eager = [f for _, _, f in iter_video_frames(src, size=(64, 48))]
    lazy = [f for _, _, f in iter_video_frames(src, size=(64, 48), lazy=True)]
    assert all(f.shape == (48, 64, 3) for f in lazy)
    # the decoder has finished (its file closed) before these convert, in any order
    for k in (5, 0, 3):
        assert np.array_equal(np.asarray(lazy[k]), eager[k])
    assert np.asarray(lazy[0]) is np.asarray(lazy[0])  # converted once
    assert np.array(lazy[0]) is not np.asarray(lazy[0])  # a copy when one is asked for


def test_luma_is_the_grey_of_the_rgb_without_converting(tmp_path):
    src = tmp_path / "src.mp4"
    rng = np.random.default_rng(0)
    colours = [cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (W, H), interpolation=cv2.INTER_LINEAR)
               for _ in range(4)]
    write_video(src, colours, 25)
    for _, _, frame in iter_video_frames(src, lazy=True):
        plane, table = frame.luma()
        assert frame._rgb is None  # read from the decoded picture's luma plane, not from the RGB array
        rgb = np.asarray(frame).astype(np.float64)
        grey = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
        assert plane.shape == (H, W) and plane.dtype == np.uint8
        assert np.abs(table[plane] - grey).mean() < 1.5
        assert table[plane].std() == pytest.approx(grey.std(), rel=0.03)  # video range (16-235) stretched to 0-255
        assert plane.std() < 0.9 * grey.std()  # (the plane itself is not)


def test_a_file_written_again_is_probed_again(tmp_path):
    """The first frame's time and rotation are remembered per file, and forgotten when the file changes."""
    path = tmp_path / "clip.mp4"
    write_video(path, [np.zeros((32, 64, 3), np.uint8)] * 3, 25)
    assert (probe(path).width, probe(path).height) == (64, 32)
    _write_rotated(path)  # the same name, now a phone video turned by 90 degrees
    assert (probe(path).width, probe(path).height) == (32, 64)
