"""Bad inputs shared by the pipeline, CLI and app tests: each must get a clear message."""
from pathlib import Path

import numpy as np

from media.io import write_audio, write_video


def make_bad_inputs(folder: Path, media: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a phrase its error message must contain)."""
    folder.mkdir(parents=True, exist_ok=True)
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    corrupt = folder / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    audio_only = folder / "speech_only.wav"
    write_audio(audio_only, 0.3 * np.sin(2 * np.pi * 220 * np.arange(32000) / 16000), 16000)
    no_face = folder / "no_face.mp4"
    rng = np.random.default_rng(1)
    frames = (np.clip(rng.normal(128, 40, (96, 128, 3)), 0, 255).astype(np.uint8) for _ in range(50))
    write_video(no_face, frames, 25, audio=0.3 * np.sin(2 * np.pi * 220 * np.arange(32000) / 16000), sr=16000)
    return {
        "empty": (empty, "empty"),
        "corrupt": (corrupt, "not a media file"),
        "audio_only": (audio_only, "no video"),
        "no_audio": (media / "talking_video" / "no_audio" / "dreamtalk_MEAD_M030_front_happy_level3_001.mp4", "no audio"),
        "no_face": (no_face, "no face"),
        "silent": (media / "talking_video" / "no_audio" / "liveportrait_d9.mp4", "silent"),
    }
