"""Shared persistence of the project's models: a folder with config.json + model.safetensors, local or on the Hub."""
from __future__ import annotations

import json
from pathlib import Path


def load_folder(dir_or_repo: str | Path, map_location: str = "cpu") -> tuple[Path, dict, dict]:
    """(folder, config dict, state dict) of a local folder or a Hugging Face Hub repo id (downloaded only then)."""
    from safetensors.torch import load_file

    path = Path(dir_or_repo)
    if not path.is_dir():
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(str(dir_or_repo), allow_patterns=["config.json", "model.safetensors"]))
    raw = json.loads((path / "config.json").read_text())
    return path, raw, load_file(str(path / "model.safetensors"), device=map_location)


def config_fields(raw: dict, config_cls) -> dict:
    """The entries of a config.json that the dataclass ``config_cls`` knows."""
    return {k: v for k, v in raw.items() if k in config_cls.__dataclass_fields__}


def save_folder(directory: str | Path, model_type: str, config: dict, state: dict, metadata: dict | None = None) -> None:
    """Write ``config.json`` ({"model_type", **config, "training": metadata}) and ``model.safetensors``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"model_type": model_type, **config}
    if metadata:
        config["training"] = metadata
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(directory / "model.safetensors"))
