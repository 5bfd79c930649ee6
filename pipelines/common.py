"""The one shape every pipeline has. A new pipeline copies it.

* **Call**: ``run(inputs..., *, out_path, model=None, max_seconds=None, progress=None, **options)``.
  ``model`` is what the pipeline's ``load_model(dir_or_repo=None)`` returns (loaded once per process);
  ``max_seconds=None`` means the ``AVSTUDIO_MAX_SECONDS`` setting; ``progress(fraction, step)`` is called
  as the work advances, with ``step`` a short phrase that changes once per step.
* **Output**: a dataclass derived from :class:`PipelineOutput` (``output_path``, ``duration_s``,
  ``timings``, ``notes``, ``problem``, ``summary()``, ``message()``).
* **Errors**: input the pipeline cannot use raises a subclass of :class:`AVStudioError` whose message is
  meant for the user. The app and the CLIs catch that class only.
* **CLI**: ``python -m pipelines.NAME INPUTS... [--out OUT] [--model DIR_OR_HUB_ID] [--max-seconds S]
  [--json]`` through :func:`run_cli`: the result's message on stdout (with ``--json``: one JSON object as
  the last stdout line), progress and errors on stderr, exit status 2 for bad input.

Settings come from ``AVSTUDIO_*`` environment variables (:func:`settings`); a bad value is refused
with one clear line.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path

import numpy as np

from media.errors import AVStudioError

__all__ = ["AVStudioError", "ModelLoadError", "PipelineOutput", "Progress", "SettingsError", "Settings",
           "settings", "resolve_max_seconds", "resolve_bfloat16", "check_files", "prepare_out_path", "read_photo",
           "scaled_note", "read_audio_within",
           "load_pretrained", "fold_batchnorm", "timed", "run_cli", "cli_model", "loaded"]

Progress = Callable[[float, str], None]
MODELS = Path(__file__).resolve().parents[1] / "models" / "weights"


class SettingsError(AVStudioError):
    """An ``AVSTUDIO_*`` environment variable has a value AV Studio cannot use."""


class ModelLoadError(AVStudioError):
    """A model folder or Hub repo id could not be loaded."""


# ------------------------------------------------------------------------------------------------
# settings
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """What the environment may change. Each field's variable is ``AVSTUDIO_`` + its name in capitals."""

    max_seconds: float = 120.0  # longest clip or recording a pipeline accepts
    max_upload_mb: float = 200.0  # largest upload the app accepts
    max_side: int = 1920  # longer picture sides (photos, video frames) are scaled down to this
    queue_size: int = 16  # requests waiting in the app's queue before new ones are turned away
    sync_check: str = str(MODELS / "syncnet")  # Sync check's discriminator: a folder or Hub repo id
    lipsync: str = str(MODELS / "lipsync")  # the lip-sync network
    music_face: str = str(MODELS)  # Music to face: a folder holding audio_encoder/ and face_controls/
    bgm_fit: str = str(MODELS / "bgm_fit")  # BGM fit's network
    bgm_library: str = str(MODELS.parents[1] / "examples" / "bgm_library" / "index")  # BGM fit's default library index
    bgm_fit_max_seconds: float = 10800.0  # longest spoken recording BGM fit accepts (3 hours)
    soundtrack: str = str(MODELS / "soundtrack")  # Soundtrack's generator
    soundtrack_max_seconds: float = 60.0  # longest video (and hum) Soundtrack accepts


# read by the annotation suite (annotation.db, annotation.backup), the tests and the benchmarks
OTHER_VARIABLES = {"AVSTUDIO_MEDIA", "AVSTUDIO_REQUIRE_MEDIA", "AVSTUDIO_DATA", "AVSTUDIO_DB_URL",
                   "AVSTUDIO_BACKUP_REPO", "AVSTUDIO_BACKUP_MINUTES", "AVSTUDIO_SECRET", "AVSTUDIO_TEST_PG_URL",
                   "AVSTUDIO_REQUIRE_PG", "AVSTUDIO_PG_BIN", "AVSTUDIO_REQUIRE_BROWSER", "AVSTUDIO_CHROMIUM",
                   "AVSTUDIO_CHROMEDRIVER"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _parse(name: str, raw: str, kind: type, low: float):
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not {'a whole number' if kind is int else 'a number'}") from None
    if not math.isfinite(value):
        raise SettingsError(f"{name}={raw!r} is not a finite number")
    if not value >= low:
        raise SettingsError(f"{name}={raw!r} must be at least {low:g}")
    return value


def _model_location(name: str, raw: str) -> str:
    if raw and (Path(raw).is_dir() or (_HUB_ID.match(raw) and not Path(raw).exists())):
        return raw
    raise SettingsError(f"{name}={raw!r} is neither a model folder nor a Hugging Face Hub repo id (owner/name)")


def read_settings(environ=None) -> Settings:
    """The settings from ``environ`` (default ``os.environ``); SettingsError names the first bad variable."""
    environ = os.environ if environ is None else environ
    known = {f"AVSTUDIO_{f.name.upper()}": f for f in fields(Settings)}
    unknown = sorted(k for k in environ if k.startswith("AVSTUDIO_") and k not in known and k not in OTHER_VARIABLES)
    if unknown:
        raise SettingsError(f"unknown setting {unknown[0]}; known: {', '.join(sorted(known))}")
    values = {}
    for name, f in known.items():
        if name not in environ:
            continue
        raw = environ[name].strip()
        if f.type == "float":
            values[f.name] = _parse(name, raw, float, 1e-3)
        elif f.type == "int":
            values[f.name] = _parse(name, raw, int, 64 if f.name == "max_side" else 1)
        else:
            values[f.name] = _model_location(name, raw)
    return Settings(**values)


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process's settings, read once from the environment."""
    return read_settings()


def resolve_max_seconds(max_seconds: float | None) -> float:
    """``max_seconds``, or the AVSTUDIO_MAX_SECONDS setting when it is None; SettingsError unless it is a
    positive, finite number of seconds."""
    if max_seconds is None:
        return settings().max_seconds
    try:
        value = float(max_seconds)
    except (TypeError, ValueError):
        raise SettingsError(f"max_seconds={max_seconds!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise SettingsError(f"max_seconds must be a positive number of seconds, got {max_seconds!r}")
    return value


# ------------------------------------------------------------------------------------------------
# output
# ------------------------------------------------------------------------------------------------
def _plain(value):
    """JSON-ready copy: floats rounded to 4 decimals, numpy scalars and arrays as Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return round(float(value), 4)
    return value


@dataclass(kw_only=True)
class PipelineOutput:
    """What every pipeline returns. Subclasses add their own fields (those with ``repr=False`` are
    per-frame arrays, left out of :meth:`summary`) and write :meth:`message`."""

    output_path: str | None = None  # the file written (None when nothing was asked or could be written)
    duration_s: float = 0.0  # length of the input that was processed, or of the output written
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step, and "total"
    notes: list[str] = field(default_factory=list)  # things the user should know (scaled down, several faces)
    problem: str | None = None  # a part that was asked for and could not be done; the rest of the result stands

    def summary(self, paths: bool = True) -> dict:
        """JSON-ready fields. ``paths=False`` keeps only file names (for results shown in a browser)."""
        out = {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.repr}
        if not paths and out.get("output_path"):
            out["output_path"] = Path(out["output_path"]).name
        return out

    def message(self) -> str:
        """One paragraph for the user."""
        raise NotImplementedError


def resolve_bfloat16(setting: bool | None) -> bool:
    """Whether a network runs in bfloat16 under a pipeline's NETWORK_BFLOAT16 ``setting``: as set, or where it is
    None, whether this CPU computes bfloat16 natively (:func:`native_bfloat16`)."""
    return native_bfloat16() if setting is None else setting


@lru_cache(maxsize=1)
def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (x86 AVX512-BF16 or AMX; elsewhere oneDNN emulates it, slower
    than float32)."""
    import torch

    caps = torch.cpu.get_capabilities()
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


_TIMED = threading.Lock()  # timed() may add to one step from several threads (lip sync's stages)


@contextmanager
def timed(timings: dict[str, float], step: str):
    """Add the seconds the block takes to ``timings[step]`` (safe from several threads at once)."""
    t = time.perf_counter()
    try:
        yield
    finally:
        seconds = time.perf_counter() - t
        with _TIMED:
            timings[step] = timings.get(step, 0.0) + seconds


# ------------------------------------------------------------------------------------------------
# input checks shared by the pipelines
# ------------------------------------------------------------------------------------------------
def check_files(paths, error_cls: type[AVStudioError]) -> None:
    """Raise ``error_cls`` with a clear message for a path that does not exist or is empty."""
    for p in map(Path, paths):
        if not p.is_file():
            raise error_cls(f"'{p.name}' does not exist")
        if p.stat().st_size == 0:
            raise error_cls(f"'{p.name}' is empty")


def prepare_out_path(out_path, error_cls: type[AVStudioError], suffixes=(".mp4",)) -> Path:
    """``out_path`` as a Path with its folder created; refused unless it ends in one of ``suffixes``."""
    if out_path is None:
        raise error_cls("give the output file (out_path)")
    out = Path(out_path)
    if out.suffix.lower() not in suffixes:
        raise error_cls(f"the output must be a {' or '.join(suffixes)} file, got '{out.name}'")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise error_cls(f"cannot create the folder for '{out.name}': {err.strerror}") from err
    return out


def scaled_note(what: str, size: tuple[int, int], new_size: tuple[int, int]) -> str:
    """The note a result carries when a picture was scaled down to the AVSTUDIO_MAX_SIDE setting."""
    return f"The {size[0]} x {size[1]} {what} was scaled to {new_size[0]} x {new_size[1]}."


def read_photo(path, error_cls: type[AVStudioError], max_side: int, notes: list[str] | None = None) -> np.ndarray:
    """A photo as RGB uint8, scaled down so that no side exceeds ``max_side`` (with a note added to ``notes``);
    ``error_cls`` for a file that is not a readable image or too small to hold a face."""
    from media.io import MediaError, fit_within, read_image

    try:
        image = read_image(path)
    except MediaError as err:
        raise error_cls(str(err)) from err
    if min(image.shape[:2]) < 32:
        raise error_cls(f"the photo is {image.shape[1]} x {image.shape[0]} pixels: too small for a face")
    scaled = fit_within(image, max_side)
    if scaled.shape != image.shape and notes is not None:
        notes.append(scaled_note("photo", image.shape[1::-1], scaled.shape[1::-1]))
    return scaled


def read_audio_within(path, sr: int, max_seconds: float, error_cls: type[AVStudioError], what: str = "audio"):
    """The mono audio of ``path`` at ``sr``, or ``error_cls`` with one clear message: unreadable, no audio
    track, or longer than ``max_seconds`` (refused from the container's duration before decoding it all,
    then checked on the decoded length)."""
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


_LOADED: dict[tuple, object] = {}  # load_pretrained's models, by (class, location, subfolder)
_LOADING: dict[tuple, threading.Lock] = {}
_LOADING_GUARD = threading.Lock()


def load_pretrained(model_cls, dir_or_repo: str, what: str, subfolder: str | None = None, prepare=None):
    """``model_cls.from_pretrained(dir_or_repo, subfolder=...)``, once per process; any failure (missing
    folder, offline Hub, wrong files) becomes one clear :class:`ModelLoadError` naming what was loaded.
    ``prepare(model) -> model``, given, readies it for inference (:func:`fold_batchnorm`, a memory layout) once,
    before any caller sees it (the first load's ``prepare`` holds for the process: one loader per model).

    Thread-safe: a second caller of a model being loaded (the app loads models in the background while it
    serves) waits for that load instead of starting another; callers of other models do not wait."""
    key = (model_cls, str(dir_or_repo), subfolder)
    if key in _LOADED:
        return _LOADED[key]
    with _LOADING_GUARD:
        lock = _LOADING.setdefault(key, threading.Lock())
    with lock:
        if key not in _LOADED:
            model = _load_pretrained(model_cls, dir_or_repo, what, subfolder)
            _LOADED[key] = prepare(model) if prepare else model
    return _LOADED[key]


def fold_batchnorm(model):
    """Inference only: each BatchNorm2d that follows a Conv2d in an ``nn.Sequential`` folded into that
    convolution (its running statistics become the convolution's weights and bias; the BatchNorm becomes an
    Identity). The same outputs to float rounding, one pass over the activations fewer per layer: the lip-sync
    generator alone took 8-15 % less time in float32, 7-11 % in bfloat16 (docs/performance.md).
    In place; returns ``model``, in eval mode."""
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model.eval()
    for seq in [m for m in model.modules() if isinstance(m, torch.nn.Sequential)]:
        for i in range(len(seq) - 1):
            if isinstance(seq[i], torch.nn.Conv2d) and isinstance(seq[i + 1], torch.nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1])
                seq[i + 1] = torch.nn.Identity()
    return model


def _load_pretrained(model_cls, dir_or_repo: str, what: str, subfolder: str | None):
    from huggingface_hub.errors import HfHubHTTPError
    from safetensors import SafetensorError

    try:
        return model_cls.from_pretrained(dir_or_repo, subfolder=subfolder)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError, HfHubHTTPError) as err:
        where = f"'{dir_or_repo}'" + (f" (subfolder {subfolder})" if subfolder else "")
        raise ModelLoadError(f"could not load the {what} {where}: {type(err).__name__}: {err}") from err


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------
class CliProgress:
    """A ``progress(fraction, step)`` for CLIs: a tqdm bar when stderr is a terminal; otherwise one line
    per step (when the step's phrase changes), so logs are not flooded."""

    def __init__(self, name: str, stream=None):
        self.stream = stream or sys.stderr
        self.name = name
        self.last = None
        self.bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=100, desc=name, unit="%", file=self.stream)

    def __call__(self, fraction: float, step: str) -> None:
        if self.bar is not None:
            self.bar.set_description(step)
            self.bar.update(max(0, int(fraction * 100) - self.bar.n))
        elif step != self.last:
            print(f"{self.name}: {int(fraction * 100):3d}% {step}", file=self.stream, flush=True)
        self.last = step

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def loaded(model, load: Callable, progress: Progress):
    """``model``, or, when it is None, ``load()`` after a "loading the model" step: every pipeline's first words
    when it loads its own model (torch is imported then, not before)."""
    if model is None:
        progress(0.0, "loading the model")
        model = load()
    return model


def cli_model(args: argparse.Namespace, progress: Progress, load: Callable):
    """The model a command's ``--model`` names (:func:`loaded`); None without one, so that the pipeline loads
    its bundled model after its own first progress line (a CLI speaks before torch is imported)."""
    return loaded(None, lambda: load(args.model), progress) if args.model else None


def run_cli(argv, *, name: str, description: str, add_arguments: Callable[[argparse.ArgumentParser], None],
            run: Callable[[argparse.Namespace, Progress], PipelineOutput], out_help: str,
            out_required: bool = True) -> int:
    """The CLI of every pipeline: its own arguments (``add_arguments``), then the shared ``--out``,
    ``--model``, ``--max-seconds`` and ``--json``; ``run(args, progress)`` does the work. Returns the exit
    status: 0, or 2 for bad input (and when the result reports a ``problem``)."""
    ap = argparse.ArgumentParser(prog=f"python -m pipelines.{name}", description=description)
    add_arguments(ap)
    ap.add_argument("--out", required=out_required, help=out_help)
    ap.add_argument("--model", default=None,
                    help=f"model folder or Hugging Face Hub repo id (default: the bundled one, or AVSTUDIO_{name.upper()})")
    ap.add_argument("--max-seconds", type=float, default=None,
                    help="longest input accepted, in seconds (default: AVSTUDIO_MAX_SECONDS, 120)")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    args = ap.parse_args(argv)
    progress = CliProgress(name.replace("_", " "))
    try:
        settings()
        result = run(args, progress)
    except AVStudioError as err:
        progress.close()
        print(f"error: {err}", file=sys.stderr)
        if args.json:
            print(json.dumps({"error": str(err)}))
        return 2
    progress.close()
    print(result.message())
    if args.json:
        print(json.dumps(result.summary()))
    if result.problem:
        print(f"error: {result.problem}", file=sys.stderr)
        return 2
    return 0
