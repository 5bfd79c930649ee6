"""Building a task's items from a media folder, a CSV/JSONL manifest or a Hub dataset, every file checked.

Sources (all paths relative to the media root; anything that resolves outside it is refused):

* **Folder**: Pair takes every video matching ``videos`` and draws ``candidates`` tracks per video from the
  library of tracks matching ``tracks`` (narrowed by ``track_filter``, words that must all appear in the
  track's path); BGM fit pairs every speech file matching ``speech`` with ``per_speech`` tracks matching
  ``music``.
* **Manifest** (``.csv`` or ``.jsonl``): one item per row. Pair: ``video`` and ``candidates`` (a JSON list or
  ``;``-separated); BGM fit: ``speech`` and ``bgm``. Optional ``key`` and ``gold`` (the known answer: a
  candidate's path or ``none``; a rating 1..5).
* **Hub dataset**: ``hub="user/name"`` downloads the dataset repo's files (``huggingface_hub``) under
  ``<data>/hub/`` and reads its ``metadata.jsonl`` / ``metadata.csv`` manifest, or else treats it as a folder.

Gold answers may also come from a separate ``gold`` file (CSV/JSONL with ``key`` and ``gold``). Every media
file is decoded before it is accepted (:func:`annotation.checks.check_media`); each refusal is listed with
its reason. For BGM fit the mix the annotator hears (matched loudness, music ducked under the voice) and
the two tracks alone are prepared once here, under ``<data>/mixes/<task>/``, with their gains.
"""
from __future__ import annotations

import csv
import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from annotation.checks import ImportRefusal, check_media
from annotation.errors import AnnotationError
from media.errors import AVStudioError

VIDEO_EXT = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"}
# what Chromium, Firefox and Safari all play: the annotators' browsers must play every video shown
BROWSER_VIDEO = {".mp4": {"h264", "av1", "vp9"}, ".m4v": {"h264"}, ".mov": {"h264"}, ".webm": {"vp8", "vp9", "av1"}}
AUDIO_EXT = {".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".aac"}


@dataclass
class ImportResult:
    items: list[dict]
    refusals: list[ImportRefusal] = field(default_factory=list)
    media_root: Path | None = None


def _inside(root: Path, rel: str) -> str:
    """``rel`` normalised, or an AnnotationError when it leaves the media root."""
    path = (root / rel).resolve()
    if not path.is_relative_to(root):
        raise AnnotationError("outside the media root")
    return path.relative_to(root).as_posix()


def _glob(root: Path, pattern: str, exts: set[str]) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.glob(pattern)
                  if p.is_file() and p.suffix.lower() in exts)


def _read_rows(path: Path) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise AnnotationError(f"cannot read the manifest {path.name}: {err.__class__.__name__}") from None
    if path.suffix.lower() == ".jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    raise AnnotationError(f"{path.name} line {n} is not JSON") from None
        return rows
    if path.suffix.lower() == ".csv":
        return list(csv.DictReader(text.splitlines()))
    raise AnnotationError(f"a manifest is a .csv or .jsonl file, not {path.suffix or 'a file without suffix'}")


def _candidates(value) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    value = str(value or "").strip()
    if value.startswith("["):
        return [str(v) for v in json.loads(value)]
    return [v.strip() for v in value.split(";") if v.strip()]


def _gold(kind: str, raw, candidates: list[str] | None = None):
    """A gold answer as the store keeps it: a candidate path or None (none fits); a rating 1..5."""
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return "absent"
    if kind == "pair":
        raw = str(raw).strip()
        if raw.lower() in ("none", "none fits"):
            return None
        if candidates is not None and raw not in candidates:
            raise AnnotationError(f"gold answer {raw!r} is not one of the item's candidates")
        return raw
    try:
        rating = int(float(raw))
    except ValueError:
        raise AnnotationError(f"gold rating {raw!r} is not a number 1 to 5") from None
    if not 1 <= rating <= 5:
        raise AnnotationError(f"gold rating {rating} is not 1 to 5")
    return rating


def _valid_key(raw) -> str | None:
    """A manifest's item key (letters, digits, ``_ . - + =``, 1 to 200), or None when it gives none."""
    if raw is None or str(raw).strip() == "":
        return None
    key = str(raw).strip()
    if not re.fullmatch(r"[\w.+=-]{1,200}", key) or key.startswith("."):
        raise AnnotationError(f"item key {key[:40]!r} may hold only letters, digits and _ . - + =")
    return key


def _key(*parts: str) -> str:
    stem = "+".join(Path(p).stem for p in parts)[:80]
    return f"{stem}-{hashlib.sha1('|'.join(parts).encode()).hexdigest()[:8]}"


class _Checker:
    """Checks each file once and remembers refusals."""

    def __init__(self, root: Path, max_seconds: float):
        self.root, self.max_seconds = root, max_seconds
        self.ok: dict[str, bool] = {}
        self.refusals: list[ImportRefusal] = []

    def __call__(self, rel: str, kind: str) -> str | None:
        try:
            rel = _inside(self.root, rel)
        except AnnotationError as err:
            self.refusals.append(ImportRefusal(rel, str(err)))
            return None
        if rel not in self.ok:
            try:
                check_media(self.root / rel, kind, media_root=self.root, max_seconds=self.max_seconds)
                if kind == "video":
                    _browser_playable(self.root / rel)
                self.ok[rel] = True
            except AnnotationError as err:
                self.ok[rel] = False
                self.refusals.append(ImportRefusal(rel, str(err)))
        return rel if self.ok[rel] else None


def _browser_playable(path: Path) -> None:
    """Refuse a video that browsers cannot play (an AVI, a QuickTime ProRes, ...), with the fix."""
    import av

    codecs = BROWSER_VIDEO.get(path.suffix.lower(), set())
    with av.open(str(path)) as container:
        codec = container.streams.video[0].codec_context.name
    if codec not in codecs:
        raise AnnotationError(f"browsers cannot play {codec} video in a {path.suffix} file; re-encode it as "
                              "H.264 in .mp4 (ffmpeg -i IN -c:v libx264 -c:a aac -movflags +faststart OUT.mp4)")


def build_items(kind: str, media_root: str | Path, *, videos: str = "video/*", tracks: str = "music/**/*",
                track_filter: str = "", candidates: int = 4, speech: str = "speech/*", music: str = "music/**/*",
                per_speech: int = 2, manifest: str | Path | None = None, gold: str | Path | None = None,
                max_seconds: float = 600.0, seed: int = 0) -> ImportResult:
    """Items for a task of ``kind`` ("pair" or "bgm"), each file checked; see the module docstring."""
    root = Path(media_root).resolve()
    if not root.is_dir():
        raise AnnotationError("the media root is not a folder")
    check = _Checker(root, max_seconds)
    rng = random.Random(seed)
    items: list[dict] = []
    if manifest is not None:
        rows = _read_rows(Path(manifest))
        for n, row in tqdm(list(enumerate(rows, 1)), desc="checking media", unit="row", leave=False):
            try:
                items.append(_manifest_item(kind, row, check, n))
            except AnnotationError as err:
                check.refusals.append(ImportRefusal(f"manifest row {n}", str(err)))
        items = [item for item in items if item is not None]
    elif kind == "pair":
        words = track_filter.lower().split()
        library = [t for t in _glob(root, tracks, AUDIO_EXT) if all(w in t.lower() for w in words)]
        library = [t for t in tqdm(library, desc="checking tracks", unit="file", leave=False) if check(t, "audio")]
        if len(library) < 2:
            raise AnnotationError(f"the track library has {len(library)} usable tracks; a Pair item needs at "
                                  "least 2 candidates")
        for video in tqdm(_glob(root, videos, VIDEO_EXT), desc="checking videos", unit="file", leave=False):
            if check(video, "video"):
                chosen = rng.sample(library, min(candidates, len(library)))
                items.append({"key": _key(video), "payload": {"video": video, "candidates": chosen}})
    elif kind == "bgm":
        speeches = [s for s in tqdm(_glob(root, speech, AUDIO_EXT), desc="checking speech", unit="file",
                                    leave=False) if check(s, "audio")]
        library = [m for m in _glob(root, music, AUDIO_EXT) if check(m, "audio")]
        if not library:
            raise AnnotationError("no usable music tracks")
        for s in speeches:
            for m in rng.sample(library, min(per_speech, len(library))):
                items.append({"key": _key(s, m), "payload": {"speech": s, "bgm": m}})
    else:
        raise AnnotationError(f"task kind must be pair or bgm, not {kind!r}")
    if gold is not None:
        _apply_gold(kind, items, _read_rows(Path(gold)), check.refusals)
    if not items:
        raise AnnotationError("no item could be made: " + "; ".join(f"{r.path}: {r.reason}" for r in check.refusals[:5]))
    return ImportResult(items, check.refusals, root)


def _manifest_item(kind: str, row, check: _Checker, n: int) -> dict | None:
    if not isinstance(row, dict):
        raise AnnotationError("a row must be an object with named fields")
    try:
        return _manifest_fields(kind, row, check)
    except (ValueError, TypeError, AttributeError, OverflowError) as err:  # a field of the wrong type
        raise AnnotationError(f"a field has the wrong type or value ({err.__class__.__name__})") from None


def _manifest_fields(kind: str, row: dict, check: _Checker) -> dict | None:
    if kind == "pair":
        video = str(row.get("video") or "").strip()
        if not video:
            raise AnnotationError("no video")
        video_ok = check(video, "video")
        cands = [c for c in (check(c, "audio") for c in _candidates(row.get("candidates"))) if c]
        if not video_ok:
            return None
        if len(cands) < 2:
            raise AnnotationError("fewer than 2 usable candidate tracks")
        item = {"key": _valid_key(row.get("key")) or _key(video_ok), "payload": {"video": video_ok, "candidates": cands}}
        answer = _gold(kind, row.get("gold"), cands)
    else:
        s, m = str(row.get("speech") or "").strip(), str(row.get("bgm") or "").strip()
        if not s or not m:
            raise AnnotationError("a BGM-fit row needs speech and bgm")
        s_ok, m_ok = check(s, "audio"), check(m, "audio")
        if not s_ok or not m_ok:
            return None
        item = {"key": _valid_key(row.get("key")) or _key(s_ok, m_ok), "payload": {"speech": s_ok, "bgm": m_ok}}
        answer = _gold(kind, row.get("gold"))
    if answer != "absent":
        item["gold"] = answer
    return item


def _apply_gold(kind: str, items: list[dict], rows: list[dict], refusals: list[ImportRefusal]) -> None:
    by_key = {item["key"]: item for item in items}
    for row in rows:
        key = str(row.get("key") or "")
        if key not in by_key:
            refusals.append(ImportRefusal(f"gold {key!r}", "no item with this key"))
            continue
        item = by_key[key]
        try:
            answer = _gold(kind, row.get("gold"), item["payload"].get("candidates"))
        except AnnotationError as err:
            refusals.append(ImportRefusal(f"gold {key!r}", str(err)))
            continue
        if answer != "absent":
            item["gold"] = answer


def prepare_mixes(task: str, items: list[dict], media_root: Path, data: Path,
                  max_seconds: float = 600.0) -> list[ImportRefusal]:
    """For BGM-fit items: the mix at matched loudness with the music ducked under the voice, and both tracks
    alone at the gains of the mix, under ``<data>/mixes/<task>/``; an item whose mix fails is dropped."""
    from media.mix import mix_files

    refusals, kept = [], []
    folder = data / "mixes" / task
    folder.mkdir(parents=True, exist_ok=True)
    for item in tqdm(items, desc="mixing", unit="item"):
        payload = item["payload"]
        try:
            # files named by a hash of the key: a key from a manifest never becomes a path
            name = hashlib.sha1(item["key"].encode()).hexdigest()[:20]
            out = mix_files(media_root / payload["speech"], media_root / payload["bgm"], folder / f"{name}.wav",
                            max_seconds=max_seconds)
        except AVStudioError as err:  # e.g. a silent track: its loudness cannot be matched
            refusals.append(ImportRefusal(item["key"], str(err)))
            continue
        slots = {"mix": "mix_path", "speech": "speech_track_path", "bgm": "bgm_track_path"}
        payload["prepared"] = {slot: Path(out[key]).relative_to(data).as_posix() for slot, key in slots.items()}
        payload["gains"] = {k: v for k, v in out.items() if k not in slots.values()}
        kept.append(item)
    items[:] = kept
    return refusals


def from_hub(repo_id: str, data: Path) -> tuple[Path, Path | None]:
    """Download a Hub dataset repo's files; returns its folder and its manifest (None: use folder rules)."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, repo_type="dataset", local_dir=data / "hub" / repo_id.replace("/", "__")))
    except Exception as err:  # noqa: BLE001 - the Hub client raises many kinds; the admin needs one line
        raise AnnotationError(f"cannot download the Hub dataset {repo_id}: {err.__class__.__name__}") from None
    for name in ("metadata.jsonl", "metadata.csv", "manifest.jsonl", "manifest.csv"):
        if (folder / name).is_file():
            return folder, folder / name
    return folder, None


def create_task(store, name: str, kind: str, *, media_root: str | Path | None = None, hub: str | None = None,
                manifest: str | Path | None = None, instructions: str = "", per_item: int = 3,
                gold_rate: float = 0.1, gold_threshold: float = 0.6, lease_s: float = 120.0,
                min_play_s: float = 8.0, max_seconds: float = 600.0, **sources) -> dict:
    """Import a task into ``store``: build and check its items (:func:`build_items`, ``sources`` are its
    folder options and ``gold``), prepare the BGM-fit mixes, and create it. Returns
    ``{"task": meta, "gold": n, "refused": [{"path", "reason"}, ...]}``."""
    from annotation.tasks import DEFAULT_INSTRUCTIONS

    if any(t["name"] == name for t in store.tasks()):  # before any mixing: nothing of a task in use is rewritten
        raise AnnotationError(f"a task named {name!r} exists already")
    if not re.fullmatch(r"[\w.-]{1,100}", name or ""):
        raise AnnotationError("a task name may hold only letters, digits and _ . - (1 to 100)")
    root = media_root
    if hub:
        root, manifest = from_hub(hub, store.data)
    if root is None:
        raise AnnotationError("give a media root (or set AVSTUDIO_MEDIA)")
    result = build_items(kind, root, manifest=manifest, max_seconds=max_seconds, **sources)
    if kind == "bgm":
        result.refusals += prepare_mixes(name, result.items, result.media_root, store.data, max_seconds)
    meta = store.create_task(name, kind, result.items, media_root=result.media_root,
                             instructions=instructions or DEFAULT_INSTRUCTIONS[kind], per_item=per_item,
                             gold_rate=gold_rate, gold_threshold=gold_threshold, lease_s=lease_s,
                             min_play_s=min_play_s if kind == "bgm" else 0.0, source=hub or str(manifest or root))
    return {"task": meta, "gold": sum(1 for item in result.items if "gold" in item),
            "refused": [{"path": r.path, "reason": r.reason} for r in result.refusals]}
