"""Face-mesh latent code and expression control vectors of spec 03 (music-driven face).

Spec 03 edits a StyleGAN W+ code: early layers carry global features (identity), late layers carry
detail (mouth, eye and brow pose); an expression is a CONTROL VECTOR, the latent difference between the
same person neutral and performing it; the scaled control vector is added point-wise to the detail
channels only. Here the latent code of a photo is its 478 face-mesh landmarks (x, y in pixels):

* **detail channels** (:data:`DETAIL`): the landmarks of the lips, the eyes with their irises and the
  brows, each with its one-ring of neighbours in the mesh (the skin that moves with them), minus the face
  outline;
* **global channels**: every other landmark: the face outline, the nose, cheeks and forehead. They carry
  identity and head pose and are never changed, so the face keeps its shape.

Control vectors live in a **canonical face frame** (:func:`canonical_transform`): the similarity that
maps a face's stable landmarks (nose, eye corners, the outline above the nose) onto the canonical mean
face, with the distance between the eye centres = 1. So a vector measured on one person applies to any
photo, at any size and roll: :meth:`ExpressionControls.displacement` brings it back to the photo's pixels.

:class:`ExpressionControls` holds the vectors measured from real footage (MEAD clips of the same people
neutral, happy and surprised; ``training/make_control_vectors.py``) and is saved like every model here
(config.json + model.safetensors).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from media.face import EXPRESSIONS, FOREHEAD, LEFT_EYE, LIPS, N_LANDMARKS, RIGHT_EYE

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "face_controls"

NOSE_TIP = 1
BROWS = [46, 52, 53, 55, 63, 65, 66, 70, 105, 107, 276, 282, 283, 285, 293, 295, 296, 300, 334, 336]
EYES = [7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246,
        249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466]
IRISES = list(range(468, 478))
FACE_OVAL = [10, 21, 54, 58, 67, 93, 103, 109, 127, 132, 136, 148, 149, 150, 152, 162, 172, 176, 234, 251,
             284, 288, 297, 323, 332, 338, 356, 361, 365, 377, 378, 379, 389, 397, 400, 454]
NOSE = [1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326, 327, 344, 440]
# Landmarks that do not move with an expression: they fix the canonical frame.
STABLE = NOSE + LEFT_EYE + RIGHT_EYE + [FOREHEAD, 338, 297, 332, 284, 251, 389, 356, 109, 67, 103, 54, 21, 162, 127]
REGIONS = {"mouth": LIPS, "eyes": EYES + IRISES, "brows": BROWS}
# The detail regions each expression is measured on (the rest of its difference is left out: a surprised
# face speaking also opens its mouth, and that belongs to "open_mouth").
EXPRESSION_REGIONS = {"smile": ("mouth", "eyes"), "open_mouth": ("mouth",), "raised_brows": ("brows", "eyes")}


@lru_cache(maxsize=1)
def mesh_edges() -> np.ndarray:
    """(E, 2) landmark index pairs of the MediaPipe face-mesh tesselation."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    return np.array(sorted(FACEMESH_TESSELATION), dtype=np.int64)


def _one_ring(core: list[int]) -> list[int]:
    edges = mesh_edges()
    core_set = set(core)
    ring = {int(b) for a, b in edges if a in core_set} | {int(a) for a, b in edges if b in core_set}
    return sorted((core_set | ring) - set(FACE_OVAL))


@lru_cache(maxsize=1)
def detail_indices() -> dict[str, np.ndarray]:
    """The detail channels by region (mouth, eyes, brows): core landmarks plus their one-ring, minus the outline."""
    return {name: np.array(_one_ring(core)) for name, core in REGIONS.items()}


def detail_mask(regions: tuple[str, ...] | None = None) -> np.ndarray:
    """(478,) bool: True on the detail channels (of the given regions; default all)."""
    mask = np.zeros(N_LANDMARKS, bool)
    for name, idx in detail_indices().items():
        if regions is None or name in regions:
            mask[idx] = True
    return mask


def eye_distance(points: np.ndarray) -> float:
    """Distance between the two eye centres (mean of each eye's corners) of (478, >=2) landmarks."""
    left = points[LEFT_EYE, :2].mean(axis=0)
    right = points[RIGHT_EYE, :2].mean(axis=0)
    return float(np.linalg.norm(right - left))


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(2, 3) least-squares similarity (Umeyama) taking points ``src`` (N, 2) onto ``dst`` (N, 2)."""
    ms, md = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - ms, dst - md
    u, sig, vt = np.linalg.svd(d.T @ s / len(src))
    e = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    r = u @ e @ vt
    scale = float(np.trace(np.diag(sig) @ e) / max((s ** 2).sum() / len(src), 1e-12))
    return np.hstack([scale * r, (md - scale * r @ ms)[:, None]])


def apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points[..., :2] @ m[:, :2].T + m[:, 2]


def canonical_transform(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(2, 3) similarity taking a face's landmarks (478, >=2) into the canonical frame of ``reference``
    (478, 2), fitted on the STABLE landmarks."""
    return similarity(np.asarray(points, np.float64)[STABLE, :2], np.asarray(reference, np.float64)[STABLE, :2])


def normalise_reference(points: np.ndarray) -> np.ndarray:
    """A face put into canonical units: eye line horizontal, eye centres 1 apart, origin at their midpoint."""
    p = np.asarray(points, np.float64)[:, :2]
    left, right = p[LEFT_EYE].mean(axis=0), p[RIGHT_EYE].mean(axis=0)
    v = right - left
    angle = np.arctan2(v[1], v[0])
    c, s = np.cos(-angle), np.sin(-angle)
    r = np.array([[c, -s], [s, c]]) / np.linalg.norm(v)
    return (p - (left + right) / 2) @ r.T


class ExpressionControls(nn.Module):
    """Control vectors (E, 478, 2) in canonical units (eye distance 1) and the canonical mean face (478, 2)."""

    def __init__(self, names: tuple[str, ...] = EXPRESSIONS):
        super().__init__()
        self.names = tuple(names)
        self.register_buffer("vectors", torch.zeros(len(self.names), N_LANDMARKS, 2))
        self.register_buffer("reference", torch.zeros(N_LANDMARKS, 2))
        self.training_metadata: dict = {}

    def vector(self, mix: dict[str, float]) -> np.ndarray:
        """(478, 2) canonical control vector of a mix of expressions {name: amount}."""
        out = np.zeros((N_LANDMARKS, 2))
        for name, amount in mix.items():
            if name not in self.names:
                raise ValueError(f"unknown expression {name!r}; choose from {', '.join(self.names)}")
            out += float(amount) * self.vectors[self.names.index(name)].double().numpy()
        return out

    def displacement(self, landmarks: np.ndarray, mix: dict[str, float]) -> np.ndarray:
        """(478, 2) pixel displacement of a photo's landmarks for the control-vector mix, on the detail
        channels only (zero on the global ones): the canonical vector brought into the photo's frame."""
        m = canonical_transform(landmarks, self.reference.double().numpy())
        back = np.linalg.inv(m[:, :2])  # canonical -> photo pixels (a similarity: rotation and scale)
        d = self.vector(mix) @ back.T
        d[~detail_mask()] = 0.0
        return d

    @staticmethod
    def fuse(latent: np.ndarray, displacement: np.ndarray, weight: float) -> np.ndarray:
        """Spec fusion: the latent with ``weight`` x the control vector added point-wise (detail channels
        carry it; the displacement is zero on the global channels)."""
        out = np.array(latent, np.float64, copy=True)
        out[:, :2] += weight * displacement
        return out

    # -- persistence (diffusers-style) ---------------------------------------------------------
    def save_pretrained(self, directory: str | Path, metadata: dict | None = None) -> None:
        """config.json + model.safetensors + README.md (model card)."""
        from models.pretrained import save_folder

        save_folder(directory, "face_controls", {"names": list(self.names)}, self.state_dict(), metadata,
                    self.model_card(metadata or {}))

    @classmethod
    def from_pretrained(cls, dir_or_repo: str | Path = DEFAULT_WEIGHTS, map_location: str = "cpu",
                        subfolder: str | None = None) -> ExpressionControls:
        """Load from a local folder (config.json + model.safetensors) or a Hugging Face Hub repo id, optionally
        from its ``subfolder``."""
        from models.pretrained import load_folder, load_state

        _, raw, state = load_folder(dir_or_repo, map_location, subfolder)
        model = cls(tuple(raw.get("names", EXPRESSIONS)))
        load_state(model, state, raw, {})
        model.training_metadata = raw.get("training", {})
        return model.eval()

    def model_card(self, metadata: dict) -> str:
        """The Hugging Face model card (README.md) of these vectors; ``metadata`` as saved in config.json."""
        from models.cards import render

        people = metadata.get("people", [])
        return render(
            title="AV Studio expression control vectors (spec 03)",
            summary=f"{len(self.names)} expression control vectors ({', '.join(self.names)}), each 478 x 2 face-mesh "
                    "landmark displacements in canonical face units (eye distance 1), and the canonical mean face "
                    "they are expressed in. AV Studio's Music to face pipeline adds them, scaled by the music's "
                    "weight, to the detail landmarks of a photo's face mesh and warps the photo.",
            tags=["face", "face-mesh", "expression", "control-vectors", "audio-visual"],
            pipeline_tag="other",
            intended_use="Demonstrations and research: animating the expression of a face photo (Music to face tab, "
                         "`python -m pipelines.music_face`). Not for recognising or classifying expressions or "
                         "emotions.",
            usage=CARD_USAGE,
            architecture="No network: buffers `vectors` (E, 478, 2) and `reference` (478, 2). Each vector is the mean "
                         "over people of (expression frames - neutral frames, at matching mouth states) in the "
                         "canonical frame, restricted to the expression's regions (`EXPRESSION_REGIONS`) "
                         "(`training/make_control_vectors.py`).",
            training=[f"- Measured on {metadata.get('source', 'clips not recorded')}: neutral, happy and surprised "
                      f"clips of {len(people)} people ({', '.join(people)})." if people
                      else "- Clips: not recorded in the metadata."],
            metadata=metadata,
            evaluate_with="`python -m training.make_control_vectors` (agreement between people) and "
                          "`python -m benchmarks.music_face_eval` (the pipeline on held-out photos and tracks)",
            limitations="Three people; the \"open mouth\" vector opens the mouth as in speech (the widest 10 % of "
                        "spoken frames), not a shout. Large strengths (above 2) can fold the mesh around the lips. "
                        "Frontal faces only were measured.",
            data_names=["MEAD"])


# How to use, in the model card.
CARD_USAGE = """```python
from models.face_controls import ExpressionControls

controls = ExpressionControls.from_pretrained("models/weights/face_controls")  # or a Hub repo id
d = controls.displacement(landmarks, {"smile": 1.0})  # (478, 2) pixels, detail landmarks only
```"""

# Headline figures of the bundled vectors for their model card (models.cards.refresh_bundled).
CARD_EVALUATION = [
    {"measure": f"{name}: cosine between the people's vectors (pairs)", "results": "face_controls_report.json",
     "key": f"expressions.{name}.agreement_cosine_between_people"} for name in EXPRESSIONS
] + [
    {"measure": "Music to face: expression amplitude vs weight, pooled correlation (12 held-out photos)",
     "results": "music_face_eval.json", "key": "summary.pooled_amplitude_weight_r", "target": ">= 0.8"},
    {"measure": "Music to face: face outline drift / face height, median", "results": "music_face_eval.json",
     "key": "summary.outline_drift_median", "target": "<= 0.02"},
]
