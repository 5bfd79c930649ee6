"""Where a results figure comes from: every results JSON (benchmarks, training reports) is written with this.

Each file under ``benchmarks/results/`` starts with

* ``command``: the command line as run (``python -m benchmarks.X ARGS``);
* ``git_commit``: ``{"head": the commit checked out, "dirty": whether the working tree differed from it,
  "changed": the paths that differed}`` (a dirty tree means the code measured is HEAD plus those changes);
* ``weights``: ``{name: sha256 of the model.safetensors measured}``, ``weights_config``: ``{name: sha256 of
  its config.json}`` (some settings live there, e.g. the lip predictor's gain) and ``weights_paths``:
  ``{name: the folder or Hub repo id it was loaded from}``, so a figure can be tied to the exact weights
  even after a folder is overwritten;
* ``date``: when the file was written (UTC, ISO 8601), and ``machine``: CPU count and the load average
  (1, 5, 15 min) at that moment, since other processes on the machine slow the timed benchmarks;

followed by the benchmark's own keys.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _local_folder(dir_or_repo: str | Path) -> Path:
    """The local folder of a model folder or Hub repo id, ``owner/name`` or ``owner/name/subfolder`` (the Hub
    copy is the cached one the model was loaded from)."""
    path = Path(dir_or_repo)
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    owner, name, *sub = str(dir_or_repo).split("/")
    prefix = "/".join(sub) + "/" if sub else ""
    root = snapshot_download(f"{owner}/{name}", allow_patterns=[f"{prefix}config.json", f"{prefix}{WEIGHTS_FILE}"])
    return Path(root, *sub)


def weights_sha256(weights: dict[str, str | Path]) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """({name: sha256 of model.safetensors}, {name: sha256 of config.json}, {name: path}) for each
    ``name -> model folder or Hub repo id``. A folder without a model.safetensors of its own but with
    sub-folders that hold one gives one entry per sub-folder, ``name/sub``."""
    shas, configs, paths = {}, {}, {}

    def add(key: str, folder: Path, shown: str) -> None:
        shas[key], paths[key] = sha256_file(folder / WEIGHTS_FILE), shown
        if (folder / CONFIG_FILE).is_file():
            configs[key] = sha256_file(folder / CONFIG_FILE)

    for name, where in weights.items():
        folder = _local_folder(where)
        if (folder / WEIGHTS_FILE).is_file():
            add(name, folder, shown_path(where))
            continue
        subs = sorted(p for p in folder.iterdir() if (p / WEIGHTS_FILE).is_file()) if folder.is_dir() else []
        if not subs:
            raise FileNotFoundError(f"no {WEIGHTS_FILE} in {where} or its sub-folders")
        for sub in subs:
            add(f"{name}/{sub.name}", sub, shown_path(sub))
    return shas, configs, paths


def shown_path(where: str | Path) -> str:
    """A local path relative to the repository when it lies inside it (how results name model folders);
    anything else (a Hub repo id) as given."""
    path = Path(where)
    if path.exists():
        try:
            return str(path.resolve().relative_to(REPO))
        except ValueError:
            return str(path.resolve())
    return str(where)


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], check=False, cwd=REPO, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_commit() -> dict:
    """{"head": HEAD's hash or None outside a git checkout, "dirty": bool, "changed": [paths]}."""
    head = _git("rev-parse", "HEAD")
    status = _git("--no-optional-locks", "status", "--porcelain", "--untracked-files=normal")  # takes no index lock
    changed = [line[3:] for line in (status or "").splitlines() if line.strip()]
    return {"head": head.strip() if head else None, "dirty": bool(changed), "changed": changed}


def command(module: str, argv: list[str] | None = None) -> str:
    """The command line as run: ``python -m MODULE ARGS`` (``argv``: the arguments given to ``main``, or the
    process's own when it was called without)."""
    import shlex

    args = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["python", "-m", module, *map(str, args)])


def subfolders(dir_or_repo: str | Path, names) -> dict[str, str]:
    """{name: the model ``name`` inside ``dir_or_repo``} (a folder, or a Hub repo id with sub-folders), for a
    pipeline whose model is several (Music to face: ``audio_encoder``, ``face_controls``)."""
    return {n: str(Path(dir_or_repo) / n) if Path(dir_or_repo).is_dir() else f"{dir_or_repo}/{n}" for n in names}


def provenance(module: str, argv: list[str] | None = None, weights: dict[str, str | Path] | None = None) -> dict:
    shas, configs, paths = weights_sha256(weights or {})
    return {"command": command(module, argv), "git_commit": git_commit(), "weights": shas,
            "weights_config": configs, "weights_paths": paths, "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "machine": {"cpu_count": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]}}


def save_results(path: str | Path, results: dict, *, module: str, argv: list[str] | None = None,
                 weights: dict[str, str | Path] | None = None) -> dict:
    """Write ``results`` to ``path`` as JSON, preceded by its provenance (see the module docstring); returns
    what was written. ``module``: the benchmark's module name (``__spec__.name``); ``argv``: the arguments
    its ``main`` got; ``weights``: ``{name: model folder or Hub repo id}`` of every model measured."""
    clash = {"command", "git_commit", "weights", "weights_config", "weights_paths", "date", "machine"} & set(results)
    if clash:
        raise ValueError(f"results may not use the provenance keys {sorted(clash)}")
    out = {**provenance(module, argv, weights), **results}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    return out
