"""Shared persistence of the project's models: a folder with config.json + model.safetensors (+ README.md, the
model card), local or on the Hugging Face Hub.

* ``config.json`` holds the constructor arguments only (and ``model_type`` and the training metadata);
* ``model.safetensors`` holds every tensor, among them the numbers fitted in training that are not trained
  by gradient descent (a gain, bounds, a mean shape: registered buffers of the model);
* ``README.md`` is the Hugging Face model card, written by each model's ``model_card(metadata)``.

Folders written before the fitted numbers became buffers kept them in config.json; each ``from_pretrained``
moves them into the buffers (:func:`legacy_fitted`), so such a folder loads with the same outputs.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

FILES = ("config.json", "model.safetensors", "README.md")


def resolve_folder(dir_or_repo: str | Path, subfolder: str | None = None) -> Path:
    """The folder holding config.json: ``dir_or_repo[/subfolder]`` when ``dir_or_repo`` is a local folder,
    else a Hugging Face Hub repo id, downloaded (only the model files, only under ``subfolder``) or taken
    from the Hub cache (``HF_HUB_CACHE``; with ``HF_HUB_OFFLINE=1`` never from the network)."""
    import re

    sub = subfolder.strip("/") if subfolder else ""
    path = Path(dir_or_repo)
    if not path.is_dir():
        if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", str(dir_or_repo)):
            raise FileNotFoundError(f"no model folder {dir_or_repo} (and it is not a Hub repo id, owner/name)")
        from huggingface_hub import snapshot_download

        patterns = [f"{sub}/{f}" if sub else f for f in FILES]
        path = Path(snapshot_download(str(dir_or_repo), allow_patterns=patterns))
    path = path / sub if sub else path
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in {path}")
    return path


def load_folder(dir_or_repo: str | Path, map_location: str = "cpu",
                subfolder: str | None = None) -> tuple[Path, dict, dict]:
    """(folder, config dict, state dict) of a local folder or a Hugging Face Hub repo id (see :func:`resolve_folder`)."""
    from safetensors.torch import load_file

    path = resolve_folder(dir_or_repo, subfolder)
    raw = json.loads((path / "config.json").read_text())
    return path, raw, load_file(str(path / "model.safetensors"), device=map_location)


def config_fields(raw: dict, config_cls) -> dict:
    """The entries of a config.json that the dataclass ``config_cls`` knows."""
    return {k: v for k, v in raw.items() if k in config_cls.__dataclass_fields__}


def legacy_fitted(raw: dict, names: dict[str, str]) -> dict:
    """Old layout: fitted numbers stored in config.json. ``names`` maps each old config key to its buffer;
    returns {buffer: float64 tensor} of those present (and not null) in ``raw``, to be loaded with the
    state dict (a state dict entry, the new layout, wins)."""
    import torch

    return {buffer: torch.tensor(raw[key], dtype=torch.float64)
            for key, buffer in names.items() if raw.get(key) is not None}


def load_state(model, state: dict, raw: dict, legacy: dict[str, str], optional_prefixes: tuple[str, ...] = ()) -> None:
    """Load ``state`` (plus the old layout's fitted numbers from ``raw``, see :func:`legacy_fitted`) into
    ``model``. Missing keys are allowed only under ``optional_prefixes`` (parts used in training only) and
    for fitted buffers (a folder from before a number was fitted: it keeps its "not fitted" default)."""
    state = {**legacy_fitted(raw, legacy), **state}
    missing, unexpected = model.load_state_dict(state, strict=False)
    fitted = set(legacy.values())
    bad = [k for k in missing if k not in fitted and not k.startswith(optional_prefixes)]
    if unexpected or bad:
        raise ValueError(f"the weights do not fit the {type(model).__name__}: missing {bad}, unexpected {unexpected}")


def save_folder(directory: str | Path, model_type: str, config: dict, state: dict, metadata: dict | None = None,
                card: str | None = None) -> None:
    """Write ``config.json`` ({"model_type", **config, "training": metadata}), ``model.safetensors`` and,
    given ``card``, ``README.md`` (the model card)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"model_type": model_type, **config}
    if metadata:
        config["training"] = metadata
    tmp = directory / "model.safetensors.tmp"  # written aside, then swapped in (re-saving a folder in place)
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp))
    os.chmod(tmp, 0o644)  # safetensors creates the file private to its owner
    os.replace(tmp, directory / "model.safetensors")
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if card is not None:
        (directory / "README.md").write_text(card)
