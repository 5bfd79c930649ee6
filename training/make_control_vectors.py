"""Measure the expression control vectors of spec 03 from real footage: MEAD clips of the same people
neutral, happy and surprised (``MEDIA/talking_video/no_audio/dreamtalk_MEAD_*``).

    python -m training.make_control_vectors [--media ../shared/media] --out runs/face_controls

For each person, every clip is tracked with the face mesh and every frame is brought into the canonical
frame (``models.face_controls``: a similarity fitted on landmarks that do not move with expressions,
eye distance 1). The MEAD clips are spoken sentences, so the mouth also moves with the words; the
latents are therefore taken over matching mouth states:

* **neutral**: the neutral clip's frames whose inner-lip gap is in its lowest 30 % (mouth at rest);
* **smile**: the happy clip's frames with the mouth at rest (lowest 30 % gap) minus neutral;
* **open_mouth**: the neutral clip's frames with the widest gap (highest 10 %) minus neutral;
* **raised_brows**: the surprised clip's frames with the mouth at rest minus neutral (brows and lids go up).

Each vector keeps only its own detail regions (``EXPRESSION_REGIONS``: smile = mouth and eyes, open mouth =
mouth, raised brows = brows and eyes); a surprised face that speaks also parts its lips, and that is the
open-mouth vector's job. The vectors of the people are averaged and brought into the frame of the saved
canonical face (the mean of the people's rest faces). The report gives, per expression, how well the people agree (the
cosine similarity of their vectors on the detail channels) and the size of each vector.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from media.face import lip_gap, track_video
from models.face_controls import (
    EXPRESSION_REGIONS,
    EXPRESSIONS,
    STABLE,
    ExpressionControls,
    apply,
    canonical_transform,
    detail_indices,
    detail_mask,
    normalise_reference,
    similarity,
)
from models.provenance import provenance

CLIPS = {"neutral": "neutral_level1", "happy": "happy_level3", "surprised": "surprised_level3"}


def canonical_frames(landmarks: np.ndarray, found: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(n_found, 478, 2) the found frames' landmarks in the canonical frame of ``reference``."""
    return np.stack([apply(canonical_transform(lm, reference), lm) for lm in landmarks[found]])


def person_vectors(tracks: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(neutral latent, {expression: vector}) of one person from their canonical frames per clip."""
    neutral = tracks["neutral"]
    g = lip_gap(neutral)
    rest = neutral[g <= np.percentile(g, 30)].mean(axis=0)
    open_ = neutral[g >= np.percentile(g, 90)].mean(axis=0)

    def at_rest(frames):
        gg = lip_gap(frames)
        return frames[gg <= np.percentile(gg, 30)].mean(axis=0)

    return rest, {"smile": at_rest(tracks["happy"]) - rest, "open_mouth": open_ - rest,
                  "raised_brows": at_rest(tracks["surprised"]) - rest}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--media", type=Path, default=Path(os.environ.get("AVSTUDIO_MEDIA", "../shared/media")))
    ap.add_argument("--out", type=Path, default=Path("runs/face_controls"))
    args = ap.parse_args(argv)
    folder = args.media / "talking_video" / "no_audio"
    people = sorted({p.name.split("_")[2] for p in folder.glob("dreamtalk_MEAD_*_front_*.mp4")})
    if not people:
        print(f"error: no MEAD clips in {folder}", file=sys.stderr)
        return 2
    reference = None
    per_person, rests = {}, []
    for person in tqdm(people, desc="people", unit="person"):
        tracks = {}
        for kind, tag in CLIPS.items():
            path = folder / f"dreamtalk_MEAD_{person}_front_{tag}_001.mp4"
            track, _ = track_video(path)
            if reference is None:  # the first neutral face, in canonical units, fixes the frame
                reference = normalise_reference(track.landmarks[np.flatnonzero(track.found)[0]])
            tracks[kind] = canonical_frames(track.landmarks, track.found, reference)
        rest, vectors = person_vectors(tracks)
        rests.append(rest)
        per_person[person] = vectors
    # the canonical mean face: the people's rest faces, averaged, re-normalised; the vectors were measured in
    # the first face's frame and are turned and scaled into this one (the linear part of old -> new)
    mean_rest = np.mean(rests, axis=0)
    new_reference = normalise_reference(mean_rest)
    to_new = similarity(mean_rest[STABLE], new_reference[STABLE])[:, :2]
    controls = ExpressionControls(EXPRESSIONS)
    controls.reference.copy_(torch.from_numpy(new_reference).float())
    report = {"people": people, "expressions": {}}
    for k, name in enumerate(EXPRESSIONS):
        mask = detail_mask(EXPRESSION_REGIONS[name])
        vs = np.stack([per_person[p][name] for p in people]) @ to_new.T
        vs[:, ~mask] = 0.0
        mean = vs.mean(axis=0)
        controls.vectors[k] = torch.from_numpy(mean).float()
        flat = vs[:, mask].reshape(len(people), -1)
        cos = [float(flat[i] @ flat[j] / (np.linalg.norm(flat[i]) * np.linalg.norm(flat[j])))
               for i in range(len(people)) for j in range(i + 1, len(people))]
        sizes = {region: float(np.linalg.norm(mean[idx], axis=1).max()) for region, idx in detail_indices().items()}
        report["expressions"][name] = {"regions": list(EXPRESSION_REGIONS[name]), "agreement_cosine_between_people": cos,
                                       "largest_displacement_by_region_eye_units": sizes}
    args.out.mkdir(parents=True, exist_ok=True)
    controls.save_pretrained(args.out / "final", metadata={"people": people, "source": "MEAD (dreamtalk samples)"})
    report = {**provenance("training.make_control_vectors", weights={"trained": args.out / "final"}), **report}  # command, commit, weights
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
