"""What the pipelines share: limits read from the environment, and the CLI progress bar."""
from __future__ import annotations

import os
import sys
from functools import lru_cache


def env_float(name: str, default: float) -> float:
    """A number from the environment, or ``default`` (with a warning) when it is unset or not a number."""
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        print(f"warning: {name}={os.environ[name]!r} is not a number; using {default}", file=sys.stderr)
        return default


DEFAULT_MAX_SECONDS = env_float("AVSTUDIO_MAX_SECONDS", 120)


def cli_progress(desc: str):
    """(bar, callback): a tqdm bar on stderr in percent and a ``callback(fraction, message)`` that moves it."""
    from tqdm import tqdm

    bar = tqdm(total=100, desc=desc, unit="%", file=sys.stderr)

    def progress(frac: float, msg: str) -> None:
        bar.set_description(msg)
        bar.update(max(0, int(frac * 100) - bar.n))

    return bar, progress


def check_files(paths, error_cls: type[Exception]) -> None:
    """Raise ``error_cls`` with a clear message for a path that does not exist or is empty."""
    from pathlib import Path

    for p in map(Path, paths):
        if not p.is_file():
            raise error_cls(f"'{p.name}' does not exist")
        if p.stat().st_size == 0:
            raise error_cls(f"'{p.name}' is empty")


def read_audio_within(path, sr: int, max_seconds: float, error_cls: type[Exception], what: str = "audio"):
    """The mono audio of ``path`` at ``sr``, or ``error_cls`` with one clear message: unreadable, no audio
    track, or longer than ``max_seconds`` (refused from the container's duration before decoding it all,
    then checked on the decoded length)."""
    from pathlib import Path

    from media.io import MediaError, probe, read_audio

    path = Path(path)
    try:
        info = probe(path)
        if not info.has_audio:
            raise error_cls(f"'{path.name}' has no audio track")
        if info.duration > max_seconds + 1:
            raise error_cls(f"the {what} is {info.duration:.0f} s long; the limit is {max_seconds:.0f} s")
        wave = read_audio(path, sr=sr)
    except MediaError as err:
        raise error_cls(f"the {what} could not be read: {err}") from err
    if len(wave) / sr > max_seconds:
        raise error_cls(f"the {what} is {len(wave) / sr:.0f} s long; the limit is {max_seconds:.0f} s")
    return wave


@lru_cache(maxsize=8)
def load_pretrained(model_cls, dir_or_repo: str, error_cls: type[Exception], what: str):
    """``model_cls.from_pretrained(dir_or_repo)``, once per process; any failure (missing folder, offline
    Hub, wrong files) becomes one clear ``error_cls`` message naming ``what`` was being loaded."""
    try:
        return model_cls.from_pretrained(dir_or_repo)
    except Exception as err:
        raise error_cls(f"could not load the {what} '{dir_or_repo}': {type(err).__name__}: {err}") from err


def cli_error(bar, err: Exception, as_json: bool) -> int:
    """Close the progress bar, print ``error: ...`` on stderr (and ``{"error": ...}`` as the last stdout
    line with ``--json``) and return the CLI's exit status for bad input, 2."""
    import json

    bar.close()
    print(f"error: {err}", file=sys.stderr)
    if as_json:
        print(json.dumps({"error": str(err)}))
    return 2
