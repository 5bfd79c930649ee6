"""Write requirements.txt and requirements-dev.txt: the exact versions installed in the current environment of
every distribution the app needs (pyproject's dependencies and what they depend on), then what tests,
training and the example maker add. Run it in a venv where ``pip install . .[dev,train]`` has just resolved:

    python .ci/lock.py
"""
from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
HEADER = """# The app's dependencies, locked: every version tested together (CI and the README's commands use this file;
# a Hugging Face Space installs it). Direct dependencies and why they are pinned: pyproject.toml.
# Regenerate after changing pyproject.toml: python .ci/lock.py (see docs/testing.md).
# torch==2.13.0 takes the CPU wheel where one is at hand (this project's machines, or pip install
# torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu first); elsewhere pip takes PyPI's larger CUDA build.
"""


def closure(roots: list[str]) -> dict[str, str]:
    """{canonical name: "Name==version"} of ``roots`` and everything they require (markers evaluated here)."""
    seen: dict[str, str] = {}
    todo = [Requirement(r) for r in roots]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            continue
        seen[name] = f"{dist.metadata['Name']}=={dist.version}"
        todo += [r for r in map(Requirement, dist.requires or []) if r.marker is None or r.marker.evaluate({"extra": ""})]
    return seen


def main() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    app = closure(project["dependencies"])
    extra = [r for group in project["optional-dependencies"].values() for r in group]
    dev = {k: v for k, v in closure(project["dependencies"] + extra).items() if k not in app}
    pins = [v.split("+")[0] for _, v in sorted(app.items())]  # a local label (torch's +cpu) would need its index
    (ROOT / "requirements.txt").write_text(HEADER + "".join(f"{v}\n" for v in pins))
    (ROOT / "requirements-dev.txt").write_text("# Tests, training and example-making, locked on top of the app's lock.\n"
                                               "-r requirements.txt\n" + "".join(f"{v}\n" for _, v in sorted(dev.items())))


if __name__ == "__main__":
    main()
