"""Shared fixtures: the real media folder (AVSTUDIO_MEDIA, default ../shared/media)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def media_dir() -> Path:
    return Path(os.environ.get("AVSTUDIO_MEDIA", ROOT.parent / "shared" / "media")).resolve()


@pytest.fixture(scope="session")
def media() -> Path:
    """The real media folder; tests that need it skip only when it is absent (fail in CI)."""
    path = media_dir()
    if not path.is_dir():
        if os.environ.get("AVSTUDIO_REQUIRE_MEDIA"):
            pytest.fail(f"real media required but AVSTUDIO_MEDIA={path} is missing")
        pytest.skip(f"real media not found at {path} (set AVSTUDIO_MEDIA)")
    return path


def pytest_collection_modifyitems(config, items):
    """Tiers: a test that reads the real media is marked ``media``; tests of the launched app are marked
    ``slow`` in their modules. ``python -m pytest -m "not media and not slow"`` is the fast unit tier."""
    for item in items:
        if "media" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.media)
