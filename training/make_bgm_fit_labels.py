"""Bootstrap BGM-fit labels (spec 02) from human EMOTION labels, with a rule a reader can inspect.

No human ratings of how well music fits speech exist yet. Human emotion labels do: EmoDB's acted speech
emotions, PANDA's valence/arousal quadrants and Emotify's GEMS-9 ratings of music. This script turns them,
plus descriptors measured on the audio (``media.fused``), into graded fit ratings 1..5 and writes them as
the BGM-fit labelling task's export (``annotation.export``: a ``bgm_fit`` DatasetDict with splits
``labels`` and ``items``), every label marked ``label_source = "rule"`` and annotated by ``"rule"``.
``training/train_bgm_fit.py --dataset OUT`` reads it exactly as it reads human ratings.

    python -m training.make_bgm_fit_labels --out data/bgm_fit/labels [--tracks-per-utterance 10]

The rule (every constant is below, in this file)
------------------------------------------------
Speech (an EmoDB utterance):

* valence and arousal of its emotion label, on Russell's circumplex (:data:`SPEECH_MOOD`);
* measured energy: the mean z-score, within its speaker, of f0 level, f0 range, f0 spread, loudness
  variation and speaking rate, squashed by ``tanh(z / 1.5)``: raised, agitated delivery reads high;
* the arousal the music should match: ``0.5 * label arousal + 0.5 * measured energy``.

Music (a PANDA or Emotify excerpt):

* valence and arousal: PANDA's quadrant as +-0.7; Emotify's GEMS shares (the fraction of listeners who
  chose each emotion) weighted by :data:`GEMS_VALENCE` / :data:`GEMS_AROUSAL` and divided by the sum of
  the shares;
* measured energy: mean z-score of onset rate, spectral centroid and roll-off, squashed likewise;
  arousal = ``0.6 * label arousal + 0.4 * measured energy``;
* obtrusiveness under a voice: mean z-score of loudness variation (dB std and p95-p10 range) and of the
  spread of the spectral centroid (sudden swells and timbre changes pull attention from a voice).

Fit = ``0.40 * mood agreement + 0.35 * arousal match + 0.25 * unobtrusiveness`` with mood agreement
``1 - |valence_speech - valence_music| / 2``, arousal match ``1 - |arousal_target - arousal_music| / 2`` and
unobtrusiveness ``1 - sigmoid(obtrusiveness)``. Ratings are the quintile of the fit among all pairs made
(1 = lowest fifth ... 5 = highest), so the five grades are used equally.

What the rule does NOT know (on purpose): drums. Percussion under speech is left for human ratings to
teach (the simulated-annotator experiment in ``docs/bgm_fit.md``).

Speech samples are ~10 s of one speaker in one emotion (:func:`speech_samples`). Pairs: every sample with
``--tracks-per-utterance`` tracks drawn at random from all tracks. Nothing is
held out here: ``train_bgm_fit.py`` holds out whole speakers and whole tracks.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from media.fused import FEATURE_INDEX, summary

REPO = Path(__file__).resolve().parents[1]
TASK = "bgm_fit"

# Russell circumplex placements of EmoDB's seven emotions (valence, arousal), in -1..1
SPEECH_MOOD = {
    "anger": (-0.6, 0.8), "fear": (-0.7, 0.6), "disgust": (-0.7, 0.2), "happiness": (0.8, 0.6),
    "neutral": (0.0, -0.2), "boredom": (-0.3, -0.7), "sadness": (-0.8, -0.6),
}
# GEMS-9 emotion -> weight on valence / arousal, in -1..1
GEMS_VALENCE = {"amazement": 0.6, "solemnity": 0.1, "tenderness": 0.7, "nostalgia": -0.1, "calmness": 0.5,
                "power": 0.3, "joyful_activation": 0.9, "tension": -0.8, "sadness": -0.9}
GEMS_AROUSAL = {"amazement": 0.6, "solemnity": -0.3, "tenderness": -0.6, "nostalgia": -0.5, "calmness": -0.9,
                "power": 0.9, "joyful_activation": 0.8, "tension": 0.7, "sadness": -0.6}
PANDA_LEVEL = 0.7
SPEECH_ENERGY = ("f0_median_st", "f0_range_st", "f0_std_st", "rms_db_std", "speaking_rate_hz")
MUSIC_ENERGY = ("onset_rate_hz", "centroid_mean_hz", "rolloff_mean_hz")
OBTRUSIVE = ("rms_db_std", "rms_db_range", "centroid_std_hz")
WEIGHTS = {"mood": 0.40, "arousal": 0.35, "unobtrusive": 0.25}


def media_root() -> Path:
    return Path(os.environ.get("AVSTUDIO_MEDIA", REPO.parent / "shared" / "media")).resolve()


def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(0)) / (x.std(0) + 1e-9)


def _squash(z: np.ndarray) -> np.ndarray:
    return np.tanh(z / 1.5)


def speech_table(root: Path) -> list[dict]:
    """EmoDB utterances: path, speaker, emotion, valence, arousal (from the label)."""
    rows = []
    with open(root / "speech_emotion" / "emodb" / "labels.csv", newline="") as f:
        for r in csv.DictReader(f):
            v, a = SPEECH_MOOD[r["emotion"]]
            rows.append({"path": str(root / r["path"]), "speaker": r["speaker"], "emotion": r["emotion"],
                         "valence": v, "arousal": a})
    return rows


def speech_samples(root: Path, out: Path, seconds: float = 10.0, gap_s: float = 0.4) -> list[dict]:
    """Speech samples as the pipeline sees speech: ~``seconds`` of one speaker in one emotion. EmoDB's
    utterances (2-3 s, padded with silence) are trimmed of their edge silence (librosa, 35 dB below the
    peak), joined in corpus order with ``gap_s`` of silence between them until a sample reaches ``seconds``,
    and written as 16 kHz WAV files under ``out`` (rows as :func:`speech_table`, plus ``utterances``).

    A single padded utterance reads differently from running speech: its pause share is the padding, and a
    model trained on such clips read trimmed, continuous narration as agitated (docs/bgm_fit.md)."""
    import librosa

    from media.io import read_audio, write_audio

    out.mkdir(parents=True, exist_ok=True)
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in speech_table(root):
        groups.setdefault((r["speaker"], r["emotion"]), []).append(r)
    gap = np.zeros(int(gap_s * 16000), np.float32)
    rows = []
    for (speaker, emotion), utts in sorted(groups.items()):
        parts, names, k = [], [], 0
        for n, r in enumerate(utts):
            y, _ = librosa.effects.trim(read_audio(r["path"], sr=16000), top_db=35)
            parts += [y, gap]
            names.append(Path(r["path"]).stem)
            if sum(len(p) for p in parts) >= seconds * 16000 or n == len(utts) - 1:
                path = out / f"emodb_{speaker}_{emotion}_{k:02d}.wav"
                write_audio(path, np.concatenate(parts[:-1]), 16000)
                rows.append({**r, "path": str(path), "utterances": names})
                parts, names, k = [], [], k + 1
    return rows


def music_table(root: Path) -> list[dict]:
    """PANDA and Emotify excerpts: path, source, valence, arousal (from the labels)."""
    rows = []
    with open(root / "music_emotion" / "panda4q" / "labels.csv", newline="") as f:
        for r in csv.DictReader(f):
            rows.append({"path": str(root / r["path"]), "source": "panda4q", "label": r["quadrant"],
                         "valence": PANDA_LEVEL * (1 if r["valence"] == "+" else -1),
                         "arousal": PANDA_LEVEL * (1 if r["arousal"] == "+" else -1)})
    with open(root / "music_emotion" / "emotify" / "labels.csv", newline="") as f:
        for r in csv.DictReader(f):
            shares = {k: float(r[k]) for k in GEMS_VALENCE}
            total = sum(shares.values()) or 1.0
            rows.append({"path": str(root / r["path"]), "source": "emotify", "label": r["genre"],
                         "valence": sum(GEMS_VALENCE[k] * s for k, s in shares.items()) / total,
                         "arousal": sum(GEMS_AROUSAL[k] * s for k, s in shares.items()) / total})
    return rows


def _columns(vectors: np.ndarray, names) -> np.ndarray:
    return vectors[:, [FEATURE_INDEX[n] for n in names]]


def rule_fit(speech: list[dict], music: list[dict], s_vec: np.ndarray, m_vec: np.ndarray,
             pairs: np.ndarray) -> tuple[np.ndarray, dict]:
    """Fit 0..1 of each (speech index, music index) pair, and the per-side quantities behind it."""
    speakers = np.array([r["speaker"] for r in speech])
    s_energy = np.zeros(len(speech))
    cols = _columns(s_vec, SPEECH_ENERGY)
    for spk in np.unique(speakers):  # within speaker: a high voice is not an agitated voice
        m = speakers == spk
        s_energy[m] = _z(cols[m]).mean(1)
    s_energy = _squash(s_energy)
    s_val = np.array([r["valence"] for r in speech])
    s_target = 0.5 * np.array([r["arousal"] for r in speech]) + 0.5 * s_energy
    m_energy = _squash(_z(_columns(m_vec, MUSIC_ENERGY)).mean(1))
    m_val = np.array([r["valence"] for r in music])
    m_ar = 0.6 * np.array([r["arousal"] for r in music]) + 0.4 * m_energy
    obtrusive = _z(_columns(m_vec, OBTRUSIVE)).mean(1)
    unob = 1.0 - 1.0 / (1.0 + np.exp(-obtrusive))
    i, j = pairs[:, 0], pairs[:, 1]
    mood = 1.0 - np.abs(s_val[i] - m_val[j]) / 2
    arousal = 1.0 - np.abs(s_target[i] - m_ar[j]) / 2
    fit = WEIGHTS["mood"] * mood + WEIGHTS["arousal"] * arousal + WEIGHTS["unobtrusive"] * unob[j]
    parts = {"speech_energy": s_energy, "speech_arousal_target": s_target, "music_energy": m_energy,
             "music_arousal": m_ar, "music_unobtrusive": unob}
    return fit, parts


def rule_label(n: int, key: str, rating: int, *, stamp: str, presentation: dict | None = None) -> dict:
    """The label record (as the label store gives it, see annotation.export.build_dataset) of rating
    ``rating`` written by the bootstrap rule for item ``n`` (1-based)."""
    return {"item_id": n, "item_key": key, "annotator": "rule", "value": int(rating), "tags": [], "dwell_ms": 0,
            "presentation": presentation or {}, "is_gold": False, "revision": 0, "app_version": "make_bgm_fit_labels",
            "created_at": stamp, "label_id": n, "client_id": f"rule-{n}", "hum_flag": None, "label_source": "rule"}


def ratings_from_fit(fit: np.ndarray) -> np.ndarray:
    """Quintiles of ``fit`` as ratings 1..5."""
    edges = np.quantile(fit, [0.2, 0.4, 0.6, 0.8])
    return 1 + np.searchsorted(edges, fit, side="right")


def build(out: Path, tracks_per_utterance: int = 10, seed: int = 0, workers: int = 2,
          cache: Path | None = None, natural: list[str] = ()) -> dict:
    from annotation.export import export
    from training.bgm_features import DEFAULT_CACHE, window_features

    root, out = media_root(), Path(out).resolve()
    speech, music = speech_samples(root, out.parent / "speech_samples"), music_table(root)
    # unlabelled natural speech: no emotion label (valence and label arousal 0); its measured energy is
    # judged against the other natural speech (one pool), so typical natural delivery reads as moderate
    speech += [{"path": str(Path(p).resolve()), "speaker": "natural", "emotion": "unlabelled", "valence": 0.0,
                "arousal": 0.0} for p in sorted(natural)]
    s_feats, s_err = window_features([r["path"] for r in speech], speech=True, cache=cache or DEFAULT_CACHE,
                                     workers=workers, desc="speech features")
    m_feats, m_err = window_features([r["path"] for r in music], speech=False, cache=cache or DEFAULT_CACHE,
                                     workers=workers, desc="music features")
    speech = [r for r in speech if r["path"] in s_feats]
    music = [r for r in music if r["path"] in m_feats]
    s_vec = np.stack([summary(s_feats[r["path"]]) for r in speech])
    m_vec = np.stack([summary(m_feats[r["path"]]) for r in music])
    rng = np.random.default_rng(seed)
    pairs = np.array([(i, j) for i in range(len(speech))
                      for j in rng.choice(len(music), tracks_per_utterance, replace=False)])
    fit, _ = rule_fit(speech, music, s_vec, m_vec, pairs)
    ratings = ratings_from_fit(fit)

    rel = lambda p: str(Path(p).relative_to(root)) if Path(p).is_relative_to(root) else str(p)
    items, labels = [], []
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for n, ((i, j), rating, f) in enumerate(zip(pairs, ratings, fit)):
        key = f"{Path(speech[i]['path']).stem}__{Path(music[j]['path']).parent.name}_{Path(music[j]['path']).stem}"
        items.append({"item_id": n + 1, "item_key": key, "key": key, "is_gold": False,
                      "payload": {"speech": rel(speech[i]["path"]), "bgm": rel(music[j]["path"])}})
        labels.append(rule_label(n + 1, key, rating, stamp=stamp, presentation={"rule_fit": round(float(f), 4)}))
    meta = {"name": TASK, "kind": "bgm", "media_root": str(root), "per_item": 1,
            "source": "rule over EmoDB, PANDA and Emotify emotion labels (training/make_bgm_fit_labels.py)"}
    result = export(meta, labels, items, [], out, embed_media=False)  # paths: each file is in 40 pairs
    counts = np.bincount(ratings, minlength=6)[1:].tolist()
    info = {"pairs": len(pairs), "utterances": len(speech), "tracks": len(music), "ratings_1_to_5": counts,
            "skipped": {**s_err, **m_err}, "export": result["path"]}
    (Path(result["path"]) / "rule.json").write_text(json.dumps({**info, "weights": WEIGHTS}, indent=2) + "\n")
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.make_bgm_fit_labels", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(REPO / "data" / "bgm_fit" / "labels"), help="export folder (holds bgm_fit/)")
    ap.add_argument("--tracks-per-utterance", type=int, default=80, help="tracks paired with each speech sample")
    ap.add_argument("--natural-speech", action="append", default=[],
                    help="glob of unlabelled natural speech (audio or video) to add (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    import glob

    info = build(Path(args.out), args.tracks_per_utterance, args.seed, args.workers,
                 natural=[f for g in args.natural_speech for f in glob.glob(g, recursive=True)])
    print(json.dumps({k: v for k, v in info.items() if k != "skipped"}, indent=1))
    for path, err in info["skipped"].items():
        print(f"skipped {path}: {err}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
