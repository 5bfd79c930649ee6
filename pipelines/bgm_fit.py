"""BGM fit (spec 02): rank background music for a long spoken recording, per segment, and mix it under the voice.

Two steps, two functions, one CLI each:

* :func:`index_library` (``python -m pipelines.bgm_fit index LIBRARY --out INDEX``): the fused feature
  vector (``media.fused``) of every 10 s window of every track, its deep feature from the model's music
  tower, and a cosine vector index over them (``models.bgm_index``, exact up to 50,000 windows, IVF above),
  saved in one folder with ``library.json`` (tracks, their descriptors, the model's SHA-256).
* :func:`fit_bgm` (``python -m pipelines.bgm_fit score SPEECH --library INDEX [--top 5] [--mix OUT]``):

  1. the speech's fused vectors, streamed window by window (bounded memory for a 3-hour file), each also
     checked for speech (:func:`speech_like`);
  2. segments (:func:`segment`): the recording is split where its deep features change (the cosine
     distance between the mean of the 3 windows before and after a window edge) and where it pauses,
     into segments of at least ``min_segment_s`` (30 s); each cut then moves to the longest pause within
     5 s of it;
  3. per segment: its speech deep feature searches the index for ``candidates`` (50) tracks by cosine; the
     model's head re-scores each candidate exactly (the fit averaged over the track's windows);
  4. the choice per segment (:func:`choose_tracks`): the best total fit minus ``switch_penalty`` per track
     change (dynamic programming), so the music changes only where the fit gain is worth it;
  5. the reasons (:func:`reasons`): the descriptors that agree or clash (energy, pace, obtrusiveness);
  6. with ``out_path``: the mix (``media.mix.mix_segments_file``): the chosen tracks under the voice,
     crossfaded at segment changes, ducked 15 dB while the voice speaks, at -16 LUFS and at most -1 dBTP;
     a video in gives a video out with its picture copied.
"""
from __future__ import annotations

import itertools
import json
import os
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipelines.common import (
    AVStudioError,
    PipelineOutput,
    Progress,
    check_files,
    cli_model,
    load_pretrained,
    loaded,
    run_cli,
    settings,
    timed,
)

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".oga", ".webm", ".mp4", ".mkv", ".mov"}
MIN_SEGMENT_S = 30.0
CANDIDATES = 50  # tracks fetched by vector search per segment, re-scored exactly by the head
SWITCH_PENALTY = 0.05  # fit units (0..1) a change of track must gain to be made
CHANGE_CONTEXT = 3  # windows each side of an edge compared for change points
SNAP_S = 5.0  # a cut moves to the longest pause within this many seconds
TRACK_MAX_SECONDS = 600.0  # only the first 10 minutes of a library track are indexed
# The baseline the model's speech detector is compared with (rule_speech_like): a window sounds like speech
# when 2 of these 3 hold: loudness varies like a voice between syllables and pauses, syllable-rate energy
# peaks, and pauses.
SPEECH_RULE = {"rms_db_std": 8.0, "speaking_rate_hz": 3.0, "pause_ratio": 0.08}
MIN_SPEECH_SHARE = 0.2  # below this share of speech-like windows, the file is refused as not speech
SILENT_DB = -60.0  # a window whose power-mean level is below this is silence


class BGMFitError(AVStudioError):
    """Input the BGM fit cannot use; the message is meant for the user."""


@dataclass(kw_only=True)
class IndexResult(PipelineOutput):
    """An indexed library: ``output_path`` is the index folder."""

    n_tracks: int
    n_windows: int
    tracks_per_s: float
    index_kind: str
    skipped: list[dict] = field(default_factory=list)  # {path, reason}

    def message(self) -> str:
        skipped = f"; {len(self.skipped)} file(s) skipped" if self.skipped else ""
        return (f"Indexed {self.n_tracks} tracks ({self.n_windows} windows, {self.index_kind} index) in "
                f"{self.timings.get('total', 0):.1f} s = {self.tracks_per_s:.1f} tracks/s{skipped} -> {self.output_path}")


@dataclass(kw_only=True)
class BGMFitResult(PipelineOutput):
    """The timeline: one entry per segment, ``{start_s, end_s, tracks: [{path, score}], chosen: {path, score},
    reasons: [...]}``; ``chosen`` lists the chosen track per segment; ``mix`` the mix's loudness, true peak
    and ducking when one was written (``output_path``)."""

    segments: list[dict]
    chosen: list[str]
    library: str
    n_tracks: int
    speech_share: float  # share of non-silent windows that sound like speech
    mix: dict | None = None

    def message(self) -> str:
        lines = [f"{len(self.segments)} segment(s) over {self.duration_s / 60:.1f} min; library of {self.n_tracks} tracks."]
        for s in self.segments:
            lines.append(f"  {_clock(s['start_s'])}-{_clock(s['end_s'])}  {Path(s['chosen']['path']).name} "
                         f"(fit {s['chosen']['score']:.2f})")
        if self.mix:
            lines.append(f"Mix: {self.mix['loudness_lufs']:.1f} LUFS, true peak {self.mix['true_peak_dbtp']:.1f} dBTP, "
                         f"music ducked {abs(self.mix['duck_db']):.0f} dB under the voice -> {self.output_path}")
        return "\n".join(lines)


def _clock(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


# ------------------------------------------------------------------------------------------------
# model and library
# ------------------------------------------------------------------------------------------------
def load_model(dir_or_repo: str | Path | None = None):
    """The fit network, loaded once per process: the bundled one, AVSTUDIO_BGM_FIT, or ``dir_or_repo``."""
    from models.bgm_fit import BGMFitNet

    return load_pretrained(BGMFitNet, str(dir_or_repo or settings().bgm_fit), "BGM fit model")


@lru_cache(maxsize=8)
def _model_sha(model) -> str:
    """SHA-256 of the model's tensors (what an index was built with); once per model object."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _library_files(library: str | Path) -> tuple[Path, list[Path]]:
    """(root folder, audio files under it) of a folder or a Hub dataset repo id."""
    where = Path(library)
    if not where.is_dir():
        from pipelines.common import _HUB_ID

        if not _HUB_ID.match(str(library)) or where.exists():
            raise BGMFitError(f"the library '{library}' is neither a folder nor a Hugging Face Hub dataset id")
        try:
            from huggingface_hub import snapshot_download

            where = Path(snapshot_download(str(library), repo_type="dataset"))
        except Exception as err:  # noqa: BLE001 - offline, no such repo, no access: one message
            raise BGMFitError(f"could not fetch the library '{library}' from the Hub: {type(err).__name__}: {err}") from None
    files = sorted(p for p in where.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise BGMFitError(f"the library '{library}' holds no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})")
    return where, files


def describe(vectors: np.ndarray) -> dict:
    """The few descriptors the reasons are written from, of a (n, D) block of fused vectors (their mean)."""
    from media.fused import FEATURE_INDEX as idx
    from media.fused import summary

    v = summary(vectors)
    keys = ("rms_db_std", "tempo_bpm", "onset_rate_hz", "beat_strength", "centroid_mean_hz", "f0_range_st",
            "speaking_rate_hz", "pause_ratio")
    return {k: round(float(v[idx[k]]), 3) for k in keys}


def index_library(library: str | Path, *, out_path: str | Path, model=None, max_seconds: float | None = None,
                  progress: Progress | None = None, kind: str = "auto") -> IndexResult:
    """Index every audio file under ``library`` (a folder or a Hub dataset id) into the folder ``out_path``.

    ``max_seconds`` is how much of each track is indexed (default 600 s). Unreadable or too-short files are
    skipped and listed; BGMFitError when the library holds no usable track.
    """
    from media.errors import AVStudioError as MediaAVError
    from media.fused import iter_fused

    say = progress or (lambda f, m: None)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if out_path is None:
        raise BGMFitError("give the index folder (out_path)")
    out = Path(out_path)
    model = model or load_model()
    _, files = _library_files(library)
    limit = float(max_seconds or TRACK_MAX_SECONDS)
    vectors, tracks, skipped = [], [], []
    with timed(timings, "features"):
        for n, path in enumerate(files):
            say(0.9 * n / len(files), f"reading track {n + 1} of {len(files)}")
            try:
                rows = np.stack([v for _, v in iter_fused(path, speech=False, max_seconds=limit)])
            except (MediaAVError, ValueError) as err:
                skipped.append({"path": str(path), "reason": str(err)})
                continue
            vectors.append(rows)
            tracks.append({"path": os.path.relpath(path.resolve(), out.resolve()), "n_windows": len(rows),
                           "descriptors": describe(rows)})
    if not tracks:
        raise BGMFitError(f"none of the {len(files)} audio files in '{library}' could be read: "
                          f"{skipped[0]['reason'] if skipped else 'no audio'}")
    say(0.92, "computing deep features")
    with timed(timings, "index"):
        index = write_index(out, model, vectors, tracks, library=library, skipped=skipped, kind=kind)
    timings["total"] = time.perf_counter() - t0
    say(1.0, "done")
    return IndexResult(output_path=str(out), n_tracks=len(tracks), n_windows=len(index), index_kind=index.kind,
                       tracks_per_s=len(tracks) / max(timings["features"] + timings["index"], 1e-9),
                       skipped=skipped, timings=timings,
                       notes=[f"{len(skipped)} file(s) could not be read and were skipped."] if skipped else [])


def write_index(out: Path, model, vectors: list[np.ndarray], tracks: list[dict], *, library: str | Path,
                skipped: list[dict] | None = None, kind: str = "auto"):
    """Write an index folder from each track's fused window vectors (``vectors[i]``: (n_i, D) of
    ``tracks[i]``, a dict with ``path`` relative to ``out``, ``n_windows`` and ``descriptors``): the
    TrackIndex of their deep features, ``embeddings.npy`` and ``library.json``. Returns the TrackIndex."""
    from models.bgm_index import TrackIndex

    out = Path(out)
    deep = model.music_features(np.concatenate(vectors))
    ids = np.concatenate([np.full(len(v), i) for i, v in enumerate(vectors)])
    index = TrackIndex(deep, ids, [t["path"] for t in tracks], kind=kind)
    index.save(out)
    np.save(out / "embeddings.npy", deep.astype(np.float32))
    meta = {"format": 1, "model_sha256": _model_sha(model), "library": str(library), "tracks": tracks,
            "skipped": skipped or [], "window_s": 10.0, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (out / "library.json").write_text(json.dumps(meta, indent=1) + "\n")
    return index


@dataclass
class Library:
    """A loaded index folder: the vector index, every window's deep feature and the tracks' metadata."""

    folder: Path
    index: object
    embeddings: np.ndarray
    track_ids: np.ndarray
    tracks: list[dict]

    def path(self, t: int) -> str:
        return str((self.folder / self.tracks[t]["path"]).resolve())


def load_library(folder: str | Path | None = None, model=None) -> Library:
    """An index written by :func:`index_library` (default: the bundled one, AVSTUDIO_BGM_LIBRARY); BGMFitError
    when it is missing, broken, or built with other model weights than ``model``. Loaded once per process
    and folder (again when its library.json changes)."""
    folder = Path(folder or settings().bgm_library).resolve()
    meta_path = folder / "library.json"
    if not meta_path.is_file():
        raise BGMFitError(f"'{folder}' is not a BGM library index (no library.json): build one with "
                          "`python -m pipelines.bgm_fit index LIBRARY --out INDEX`")
    lib, sha = _read_library(folder, meta_path.stat().st_mtime_ns)
    if model is not None and sha != _model_sha(model):
        raise BGMFitError(f"the library index '{folder}' was built with other model weights: rebuild it with "
                          "`python -m pipelines.bgm_fit index`")
    return lib


@lru_cache(maxsize=8)
def _read_library(folder: Path, mtime_ns: int) -> tuple[Library, str | None]:
    """(the library, the SHA-256 of the weights it was built with); ``mtime_ns`` keys the cache."""
    from models.bgm_index import TrackIndex, TrackIndexError

    meta_path = folder / "library.json"
    try:
        meta = json.loads(meta_path.read_text())
        index = TrackIndex.load(folder)
        embeddings = np.load(folder / "embeddings.npy")
    except (OSError, ValueError, KeyError, TrackIndexError) as err:
        raise BGMFitError(f"the library index '{folder}' is broken: {err}") from None
    if not meta.get("tracks") or len(embeddings) != len(index.track_ids):
        raise BGMFitError(f"the library index '{folder}' is empty or incomplete: rebuild it")
    return Library(folder, index, embeddings, index.track_ids, meta["tracks"]), meta.get("model_sha256")


# ------------------------------------------------------------------------------------------------
# speech, segments, choice, reasons
# ------------------------------------------------------------------------------------------------
def speech_like(model, vectors: np.ndarray) -> np.ndarray:
    """(n,) bool: which fused vectors (computed with ``speech=True``) the model's speech detector calls speech."""
    return model.speech_probability(vectors) >= 0.5


def rule_speech_like(vectors: np.ndarray) -> np.ndarray:
    """(n,) bool: the hand-written baseline (SPEECH_RULE, 2 of 3)."""
    from media.fused import FEATURE_INDEX as idx

    votes = sum((np.asarray(vectors)[:, idx[k]] > v).astype(int) for k, v in SPEECH_RULE.items())
    return votes >= 2


def _silent(vectors: np.ndarray) -> np.ndarray:
    from media.fused import FEATURE_INDEX

    return np.asarray(vectors)[:, FEATURE_INDEX["loudness_db"]] < SILENT_DB


def speech_share(model, vectors: np.ndarray) -> float | None:
    """Share of the non-silent windows (fused vectors computed with ``speech=True``) that the speech detector
    calls speech; None when every window is silent. A file is refused below MIN_SPEECH_SHARE."""
    loud = ~_silent(vectors)
    return float(speech_like(model, np.asarray(vectors)[loud]).mean()) if loud.any() else None


def change_scores(deep: np.ndarray, context: int = CHANGE_CONTEXT) -> np.ndarray:
    """(n,) score of a cut before window i: cosine distance between the mean deep features of the
    ``context`` windows before and after (0 at i = 0)."""
    n = len(deep)
    out = np.zeros(n)
    for i in range(1, n):
        a = deep[max(0, i - context):i].mean(0)
        b = deep[i:i + context].mean(0)
        out[i] = 1.0 - float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))
    return out


def segment(starts: np.ndarray, duration_s: float, deep: np.ndarray, pause: np.ndarray, *,
            min_segment_s: float = MIN_SEGMENT_S, threshold: float | None = None) -> list[tuple[float, float]]:
    """Segments ``[(start_s, end_s)]`` covering ``[0, duration_s]``, cut at window starts.

    A cut before window i scores its change (:func:`change_scores`) plus half the pause share of the windows
    at the edge; cuts are taken best first when they score above ``threshold`` (default: the median score
    plus twice the median absolute deviation, so only stand-out changes cut) and keep every segment at
    least ``min_segment_s`` long."""
    n = len(starts)
    if n < 2 or duration_s < 2 * min_segment_s:
        return [(0.0, float(duration_s))]
    score = change_scores(deep) + 0.5 * np.maximum(pause, np.roll(pause, 1))
    score[0] = -np.inf
    body = score[1:]
    if threshold is None:
        med = float(np.median(body))
        threshold = med + 2.0 * float(np.median(np.abs(body - med))) + 1e-6
    cuts: list[float] = []
    for i in np.argsort(-score):
        if score[i] <= threshold:
            break
        t = float(starts[i])
        edges = sorted([0.0, float(duration_s), *cuts, t])
        if min(np.diff(edges)) >= min_segment_s:
            cuts.append(t)
    edges = sorted([0.0, float(duration_s), *cuts])
    return list(itertools.pairwise(edges))


def snap_to_pauses(frame_db: np.ndarray, cuts: list[float], window_s: float = SNAP_S, hop_s: float = 0.01) -> list[float]:
    """Each cut moved to the middle of the longest pause within ``window_s`` of it: frames (``frame_db``,
    media.mix.frame_rms_db every ``hop_s`` of the whole recording) 25 dB below the loud frames around the
    cut (their 95th percentile), or below -60 dBFS; a pause must last 150 ms. A cut with none stays."""
    out = []
    for t in cuts:
        lo = max(0, int((t - window_s) / hop_s))
        db = frame_db[lo:int((t + window_s) / hop_s)]
        if not len(db):
            out.append(t)
            continue
        quiet = db < max(np.percentile(db, 95) - 25.0, -60.0)
        best, best_len, run = None, 0, 0
        for k, q in enumerate(np.append(quiet, False)):
            if q:
                run += 1
            else:
                if run > best_len:
                    best, best_len = k - run / 2, run
                run = 0
        out.append((lo + best) * hop_s if best is not None and best_len * hop_s >= 0.15 else t)
    return out


def choose_tracks(scores: np.ndarray, switch_penalty: float = SWITCH_PENALTY) -> np.ndarray:
    """(S,) chosen column per segment of a (segments, tracks) fit matrix: the path maximising the total fit
    minus ``switch_penalty`` per change of track (Viterbi)."""
    s, m = scores.shape
    total = scores[0].copy()
    back = np.zeros((s, m), dtype=np.int64)
    for i in range(1, s):
        best_prev = int(np.argmax(total))
        stay = total
        switch = total[best_prev] - switch_penalty
        back[i] = np.where(stay >= switch, np.arange(m), best_prev)
        total = np.maximum(stay, switch) + scores[i]
    path = [int(np.argmax(total))]
    for i in range(s - 1, 0, -1):
        path.append(int(back[i][path[-1]]))
    return np.array(path[::-1])


def _level(value: float, mean: float, std: float) -> float:
    return (value - mean) / (std + 1e-9)


def reasons(model, speech: dict, track: dict) -> list[str]:
    """Short sentences on the descriptors that agree or clash between a speech segment and a track, each
    judged against the training set's spread (the model's standardisation buffers)."""
    from media.fused import FEATURE_INDEX as i

    sm, ss = model.speech_mean.numpy(), model.speech_std.numpy()
    mm, ms = model.music_mean.numpy(), model.music_std.numpy()
    s_energy = np.mean([_level(speech[k], sm[i[k]], ss[i[k]]) for k in ("rms_db_std", "f0_range_st", "speaking_rate_hz")])
    m_energy = np.mean([_level(track[k], mm[i[k]], ms[i[k]]) for k in ("onset_rate_hz", "tempo_bpm", "centroid_mean_hz")])
    busy = np.mean([_level(track[k], mm[i[k]], ms[i[k]]) for k in ("rms_db_std", "beat_strength")])

    def word(z: float, low: str, mid: str, high: str) -> str:
        return low if z < -0.5 else high if z > 0.5 else mid

    out = []
    agree = abs(s_energy - m_energy) < 1.0
    out.append(f"{'agrees' if agree else 'clashes'}: {word(s_energy, 'calm', 'moderate', 'energetic')} speech, "
               f"{word(m_energy, 'calm', 'moderate', 'energetic')} music "
               f"({track['tempo_bpm']:.0f} BPM, {track['onset_rate_hz']:.1f} onsets/s)")
    out.append(f"{'agrees' if busy < 0.5 else 'clashes'}: the music is "
               f"{word(busy, 'steady', 'fairly steady', 'busy')} under a voice "
               f"(level swings {track['rms_db_std']:.1f} dB, beat strength {track['beat_strength']:.1f})")
    if speech.get("pause_ratio", 0) > 0.3:
        out.append(f"note: the speech pauses {speech['pause_ratio']:.0%} of the time, so the music is heard a lot")
    return out


# ------------------------------------------------------------------------------------------------
# the pipeline
# ------------------------------------------------------------------------------------------------
def _read_speech(speech: Path, max_seconds: float, say) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """(duration, window starts, fused speech vectors, 10 ms frame levels in dBFS) of a file, streamed in one
    decoding pass; BGMFitError when unusable."""
    from media.fused import iter_fused
    from media.io import MediaError, probe

    check_files([speech], BGMFitError)
    try:
        info = probe(speech)
    except MediaError as err:
        raise BGMFitError(f"'{speech.name}' could not be read: {err}") from None
    if not info.has_audio:
        raise BGMFitError(f"'{speech.name}' has no audio track")
    if info.duration > max_seconds + 1:
        raise BGMFitError(f"the recording is {info.duration / 60:.1f} min long; the limit is {max_seconds / 60:.0f} min "
                          "(AVSTUDIO_BGM_FIT_MAX_SECONDS or --max-seconds)")
    from media.mix import frame_rms_db

    starts, rows, envelope = [], [], []

    def tap(chunk: np.ndarray) -> None:  # 10 ms frame levels of the whole file, in the same decoding pass
        envelope.append(frame_rms_db(chunk, 16000).astype(np.float32))

    try:
        for start, vec in iter_fused(speech, speech=True, max_seconds=max_seconds + 1, tap=tap):
            starts.append(start)
            rows.append(vec)
            say(0.05 + 0.7 * min(1.0, start / max(info.duration, 1e-9)), "reading the speech")
    except MediaError as err:
        raise BGMFitError(f"'{speech.name}': {err}") from None
    vectors = np.stack(rows)
    duration = min(info.duration, float(starts[-1]) + 10.0) if info.duration else float(starts[-1]) + 10.0
    return duration, np.array(starts), vectors, np.concatenate(envelope)


def fit_bgm(speech: str | Path, *, out_path: str | Path | None = None, model=None, max_seconds: float | None = None,
            progress: Progress | None = None, library: str | Path | None = None, top: int = 5,
            min_segment_s: float = MIN_SEGMENT_S, switch_penalty: float = SWITCH_PENALTY,
            candidates: int = CANDIDATES, **mix_options) -> BGMFitResult:
    """Rank the library's tracks for each segment of ``speech`` (audio or video) and, with ``out_path``
    (``.wav``, or ``.mp4``/``.mov``/``.mkv`` for a video input), write the mix.

    ``library``: an index folder (default the bundled one); ``top``: tracks listed per segment;
    ``mix_options`` go to :func:`media.mix.segment_mix` (``duck_db``, ``target_lufs``, ...). Raises
    BGMFitError for input it cannot use: no speech, music instead of speech, over the length limit, an
    empty or broken library. When only the mix fails, the ranking is returned and ``problem`` says why.
    """
    say = progress or (lambda f, m: None)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    speech = Path(speech)
    limit = float(max_seconds) if max_seconds is not None else settings().bgm_fit_max_seconds
    if not limit > 0:
        raise BGMFitError(f"max_seconds must be positive, got {max_seconds}")
    if out_path is not None and Path(out_path).suffix.lower() not in (".wav", ".mp4", ".mov", ".mkv"):
        raise BGMFitError(f"write the mix as .wav (or .mp4 for a video), got '{Path(out_path).name}'")
    if not 1 <= int(top) <= 50:
        raise BGMFitError("top must be between 1 and 50")
    model = loaded(model, load_model, say)
    say(0.0, "loading the library")
    with timed(timings, "library"):
        lib = load_library(library, model)
    with timed(timings, "features"):
        duration, starts, vectors, frame_db = _read_speech(speech, limit, say)
    share = speech_share(model, vectors)
    if share is None:
        raise BGMFitError(f"no speech in '{speech.name}': it is silent")
    if share < MIN_SPEECH_SHARE:
        raise BGMFitError(f"'{speech.name}' sounds like music or noise, not speech ({share:.0%} of it sounds "
                          "like a voice): give a spoken recording")
    from media.fused import FEATURE_INDEX, summary

    silent = _silent(vectors)
    pause = vectors[:, FEATURE_INDEX["pause_ratio"]].copy()
    pause[silent] = 1.0
    say(0.78, "finding segments")
    with timed(timings, "segments"):
        deep = model.speech_features(vectors)
        bounds = segment(starts, duration, deep, pause, min_segment_s=min_segment_s)
        if len(bounds) > 1:
            cuts = snap_to_pauses(frame_db, [b[0] for b in bounds[1:]])
            edges = [0.0, *cuts, duration]
            bounds = list(itertools.pairwise(edges))
    say(0.82, "ranking tracks")
    with timed(timings, "ranking"):
        # the windows of each segment (by their centre), the silent ones left out where there are others
        masks = [(starts + 5.0 >= lo) & (starts + 5.0 < hi) for lo, hi in bounds]
        masks = [m & ~silent if (m & ~silent).any() else (m if m.any() else np.ones(len(starts), bool))
                 for m in masks]
        q = model.speech_features(np.stack([summary(vectors[m]) for m in masks]))
        k = min(int(candidates), len(lib.tracks))
        _, found = lib.index.search(q, k)
        pool = sorted({int(t) for row in found for t in row if t >= 0})
        fit = np.zeros((len(bounds), len(pool)), np.float32)
        for c, t in enumerate(pool):
            b = lib.embeddings[lib.track_ids == t]
            fit[:, c] = model.fit(q[:, None, :], b[None, :, :]).mean(axis=1)
        in_top = np.zeros_like(fit, dtype=bool)
        col = {t: c for c, t in enumerate(pool)}
        for i, row in enumerate(found):
            in_top[i, [col[int(t)] for t in row if t >= 0]] = True
        chosen_cols = choose_tracks(np.where(in_top, fit, fit - 1.0), switch_penalty)
    segments = []
    for i, (lo, hi) in enumerate(bounds):
        order = np.argsort(-np.where(in_top[i], fit[i], -1.0))[:top]
        c = int(chosen_cols[i])
        t = pool[c]
        speech_desc = describe(vectors[masks[i]])
        segments.append({
            "start_s": round(float(lo), 2), "end_s": round(float(hi), 2),
            "tracks": [{"path": lib.path(pool[int(o)]), "score": round(float(fit[i, o]), 4)} for o in order],
            "chosen": {"path": lib.path(t), "score": round(float(fit[i, c]), 4)},
            "reasons": reasons(model, speech_desc, lib.tracks[t]["descriptors"]),
        })
    result = BGMFitResult(segments=segments, chosen=[s["chosen"]["path"] for s in segments], library=str(lib.folder),
                          n_tracks=len(lib.tracks), speech_share=share, duration_s=duration, timings=timings)
    if out_path is not None:
        say(0.88, "mixing")
        from media.mix import mix_segments_file

        with timed(timings, "mix"):
            try:
                info = mix_segments_file(speech, [(s["start_s"], s["end_s"], s["chosen"]["path"]) for s in segments],
                                         out_path, max_seconds=limit, **mix_options)
                result.output_path = info["mix_path"]
                result.mix = {k: info[k] for k in ("loudness_lufs", "target_lufs", "true_peak_dbtp", "duck_db",
                                                   "attack_s", "release_s", "hold_s", "crossfade_s", "voice_fraction")
                              if k in info}
            except AVStudioError as err:  # the ranking stands; only the mix is missing
                result.problem = f"no mix: {err}"
    timings["total"] = time.perf_counter() - t0
    say(1.0, "done")
    return result


def plot_timeline(result: BGMFitResult):
    """A bare matplotlib Figure: one bar per segment, coloured by chosen track, labelled with its name and fit."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 1.9))
    ax = fig.subplots()
    names = list(dict.fromkeys(result.chosen))
    colours = [f"C{names.index(c) % 10}" for c in result.chosen]
    for s, colour in zip(result.segments, colours):
        ax.barh(0, s["end_s"] - s["start_s"], left=s["start_s"], color=colour, edgecolor="white")
        ax.text((s["start_s"] + s["end_s"]) / 2, 0, f"{Path(s['chosen']['path']).stem[:22]}\n{s['chosen']['score']:.2f}",
                ha="center", va="center", fontsize=7, color="white")
    ax.set_yticks([])
    ax.set_xlim(0, max(result.duration_s, 1e-3))
    ax.set_xlabel("time (s)")
    ax.set_title("chosen background music per segment (fit 0-1)", fontsize=9)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------
def _index_arguments(ap) -> None:
    ap.add_argument("library", help="a folder of music files, or a Hugging Face Hub dataset id")
    ap.add_argument("--kind", choices=("auto", "flat", "ivf", "hnsw"), default="auto",
                    help="vector index: exact (flat) up to 50,000 windows, IVF above, by default")


def _run_index(args, progress: Progress) -> IndexResult:
    return index_library(args.library, out_path=args.out, model=load_model(args.model), progress=progress,
                         max_seconds=args.max_seconds, kind=args.kind)


def _score_arguments(ap) -> None:
    ap.add_argument("speech", help="a spoken recording, audio or video")
    ap.add_argument("--library", default=None, help="an index folder from `index` (default: the bundled library)")
    ap.add_argument("--top", type=int, default=5, help="tracks listed per segment")
    ap.add_argument("--mix", default=None, help="write the mix here (.wav; .mp4 for a video)")
    ap.add_argument("--min-segment", type=float, default=MIN_SEGMENT_S, help="shortest segment, in seconds")
    ap.add_argument("--switch-penalty", type=float, default=SWITCH_PENALTY,
                    help="fit a change of track must gain (0-1): higher keeps tracks longer")
    ap.add_argument("--duck-db", type=float, default=-15.0, help="music level under the voice, dB (e.g. -12 to -18)")
    ap.add_argument("--target-lufs", type=float, default=-16.0, help="loudness of the mix, LUFS")


def _run_score(args, progress: Progress) -> BGMFitResult:
    return fit_bgm(args.speech, out_path=args.mix or args.out, model=cli_model(args, progress, load_model),
                   max_seconds=args.max_seconds, progress=progress, library=args.library, top=args.top,
                   min_segment_s=args.min_segment, switch_penalty=args.switch_penalty, duck_db=args.duck_db,
                   target_lufs=args.target_lufs)


USAGE = """usage: python -m pipelines.bgm_fit index LIBRARY --out INDEX [--json]
       python -m pipelines.bgm_fit score SPEECH [--library INDEX] [--top 5] [--mix OUT] [--json]"""


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("index", "score"):
        print(USAGE, file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    if argv[0] == "index":
        return run_cli(argv[1:], name="bgm_fit index", description="Index a music library for the BGM fit.",
                       add_arguments=_index_arguments, run=_run_index, out_help="the index folder to write")
    return run_cli(argv[1:], name="bgm_fit score",
                   description="Rank background music for each segment of a spoken recording, and mix it.",
                   add_arguments=_score_arguments, run=_run_score, out_required=False,
                   out_help="same as --mix")


if __name__ == "__main__":
    sys.exit(main())
