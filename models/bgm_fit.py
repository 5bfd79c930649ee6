"""The background-music fit network of spec 02: convolutional towers, a fully-connected join, a sigmoid.

Input: a fused feature vector (``media.fused``, D = 68 named descriptors) of a speech sample and one of a
music (BGM) sample, built the same way. Each is standardised with statistics fitted on the training set
(buffers ``speech_mean/std``, ``music_mean/std``) and read by a **convolutional tower** (one per side,
same structure): the standardised vector as a one-channel sequence in ``FEATURE_NAMES`` order, whose
neighbours are related descriptors (MFCC means, then their stds, the 12 chroma bins, ...), through three
1-D convolutions with ReLU and a linear projection to an L2-normalised **deep feature** of ``embed_dim``.
The speech tower reads the delivery descriptors only: those that mostly tell recordings and speakers apart
(:data:`SPEECH_MASKED`: levels, spectral and MFCC means, chroma, pitch level) are zeroed.

The **fully-connected layer** joins the two deep features ``a`` (speech) and ``b`` (music): it reads their
concatenation ``[a, b, a * b]`` (the product is part of the concatenation so the layer sees the
interaction directly; a plain ``[a, b]`` under one linear layer would rank every track the same for every
speech), a ReLU, and a linear unit; the **sigmoid** gives the predicted fit in 0..1.

Beside the head, the model is trained so that the deep features themselves are close for fitting pairs
(the spec's "fitting pairs land close together in feature space"): ``sigmoid(scale * cos(a, b) + bias)``
is fitted to the same labels. That makes a library of deep features searchable by cosine
(``models.bgm_index``); the head then re-scores the candidates exactly.

Labels are graded fits: ratings 1..5 as targets 0, 0.25, ..., 1 (:func:`rating_target`), trained with
binary cross-entropy (``training/train_bgm_fit.py``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from media.fused import FEATURE_NAMES, D

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "bgm_fit"
MODEL_TYPE = "bgm_fit"


# Speech-side descriptors that mostly tell the recording chain and the speaker apart (microphone, room,
# gain, voice timbre and pitch level) rather than delivery: the speech tower does not read them (they are
# zeroed after standardisation). Trained on one studio's ten speakers (EmoDB), the tower otherwise learns
# them as mood cues and mis-reads any other recording: LJSpeech narration sat 3-4 standard deviations off
# on MFCC means and was ranked as energetic (benchmarks/bgm_fit.py, sanity check). What is left is
# delivery: level dynamics, spectral and timbre variation, rhythm and prosody (pitch range and spread,
# voicing, speaking rate, pauses).
SPEECH_MASKED = ("rms_db_mean", "loudness_db", "zcr_mean", "centroid_mean_hz", "rolloff_mean_hz", "bandwidth_mean_hz",
                 "flatness_mean", *(f"contrast{i}_mean" for i in range(7)), *(f"mfcc{i}_mean" for i in range(13)),
                 *(n for n in FEATURE_NAMES if n.startswith("chroma_")), "f0_median_st")


def rating_target(rating) -> np.ndarray:
    """Ratings 1..5 as BCE targets 0, 0.25, ..., 1."""
    return (np.asarray(rating, dtype=np.float32) - 1.0) / 4.0


class ConvTower(nn.Module):
    """(B, D) standardised fused vectors -> (B, embed_dim) L2-normalised deep features."""

    def __init__(self, d_in: int, channels: tuple[int, ...], embed_dim: int, dropout: float):
        super().__init__()
        layers, c_in, length = [], 1, d_in
        for i, c in enumerate(channels):
            stride = 1 if i == 0 else 2
            layers += [nn.Conv1d(c_in, c, kernel_size=5 if i == 0 else 3, stride=stride, padding=2 if i == 0 else 1),
                       nn.ReLU()]
            c_in, length = c, (length - 1) // stride + 1
        self.conv = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(c_in * length, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x.unsqueeze(1)).flatten(1)
        return F.normalize(self.proj(self.drop(h)), dim=-1)


class BGMFitNet(nn.Module):
    """Speech tower, music tower, FC join on ``[a, b, a*b]``, sigmoid (see the module docstring)."""

    def __init__(self, d_in: int = D, channels: tuple[int, ...] = (16, 32, 32), embed_dim: int = 32,
                 hidden: int = 64, dropout: float = 0.1, feature_names: tuple[str, ...] = tuple(FEATURE_NAMES),
                 speech_masked: tuple[str, ...] = SPEECH_MASKED):
        super().__init__()
        unknown = sorted(set(speech_masked) - set(feature_names))
        if unknown:
            raise ValueError(f"speech_masked names unknown features: {', '.join(unknown)}")
        self.config = {"d_in": d_in, "channels": list(channels), "embed_dim": embed_dim, "hidden": hidden,
                       "dropout": dropout, "feature_names": list(feature_names), "speech_masked": list(speech_masked)}
        keep = torch.tensor([name not in speech_masked for name in feature_names], dtype=torch.float32)
        self.register_buffer("speech_keep", keep, persistent=False)  # from the config, not fitted
        self.speech_tower = ConvTower(d_in, tuple(channels), embed_dim, dropout)
        self.music_tower = ConvTower(d_in, tuple(channels), embed_dim, dropout)
        self.join = nn.Linear(3 * embed_dim, hidden)
        self.out = nn.Linear(hidden, 1)
        # cosine of the deep features -> logit, for the searchable space
        self.cos_scale = nn.Parameter(torch.tensor(5.0))
        self.cos_bias = nn.Parameter(torch.tensor(0.0))
        for side in ("speech", "music"):  # fitted on the training set (training/train_bgm_fit.py)
            self.register_buffer(f"{side}_mean", torch.zeros(d_in))
            self.register_buffer(f"{side}_std", torch.ones(d_in))
        # speech detector: logistic regression on the standardised speech-side vector (fitted, not trained
        # by gradient descent): is this window a voice, or music / noise?
        self.register_buffer("detector_weight", torch.zeros(d_in))
        self.register_buffer("detector_bias", torch.zeros(1))
        self.training_metadata: dict = {}

    # -- the network -----------------------------------------------------------------------------
    def fit_statistics(self, speech: np.ndarray, music: np.ndarray) -> None:
        """Set the standardisation buffers from training vectors (N, D) of each side."""
        for side, x in (("speech", speech), ("music", music)):
            x = torch.as_tensor(np.asarray(x, np.float64))
            getattr(self, f"{side}_mean").copy_(x.mean(0).float())
            getattr(self, f"{side}_std").copy_(x.std(0).clamp_min(1e-3).float())

    def _standardise(self, x: torch.Tensor, side: str) -> torch.Tensor:
        z = (x - getattr(self, f"{side}_mean")) / getattr(self, f"{side}_std")
        return z.clamp(-8.0, 8.0)  # a descriptor far outside the training range cannot dominate

    def embed_speech(self, x: torch.Tensor) -> torch.Tensor:
        return self.speech_tower(self._standardise(x, "speech") * self.speech_keep)

    def embed_music(self, x: torch.Tensor) -> torch.Tensor:
        return self.music_tower(self._standardise(x, "music"))

    def head_logit(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Logit of the fit from deep features ``a`` (speech) and ``b`` (music), broadcast over leading dims."""
        a, b = torch.broadcast_tensors(a, b)
        h = F.relu(self.join(torch.cat([a, b, a * b], dim=-1)))
        return self.out(h).squeeze(-1)

    def cos_logit(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.cos_scale * (a * b).sum(-1) + self.cos_bias

    def forward(self, speech: torch.Tensor, music: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(head logit, cosine logit) for fused vectors ``speech`` and ``music`` (B, D); sigmoid gives the fit."""
        a, b = self.embed_speech(speech), self.embed_music(music)
        return self.head_logit(a, b), self.cos_logit(a, b)

    def fit_detector(self, speech: np.ndarray, other: np.ndarray, c: float = 1.0) -> None:
        """Fit the speech detector: L2 logistic regression (scikit-learn, ``C=c``) separating fused vectors
        computed with ``speech=True`` of speech windows from those of music windows, on the speech-side
        standardisation (call :meth:`fit_statistics` first)."""
        from sklearn.linear_model import LogisticRegression

        x = np.concatenate([speech, other]).astype(np.float32)
        z = self._standardise(torch.as_tensor(x), "speech").numpy()
        y = np.r_[np.ones(len(speech)), np.zeros(len(other))]
        lr = LogisticRegression(C=c, max_iter=2000, class_weight="balanced").fit(z, y)
        self.detector_weight.copy_(torch.as_tensor(lr.coef_[0], dtype=torch.float32))
        self.detector_bias.copy_(torch.as_tensor(lr.intercept_, dtype=torch.float32))

    @torch.no_grad()
    def speech_probability(self, vectors: np.ndarray) -> np.ndarray:
        """(N,) probability that each fused vector (computed with ``speech=True``) is a speaking voice."""
        z = self._standardise(torch.as_tensor(np.asarray(vectors, np.float32)), "speech")
        return torch.sigmoid(z @ self.detector_weight + self.detector_bias).numpy()

    # -- numpy helpers for the pipeline --------------------------------------------------------
    @torch.no_grad()
    def speech_features(self, vectors: np.ndarray) -> np.ndarray:
        """(N, embed_dim) float32 deep features of fused speech vectors (N, D)."""
        return self.embed_speech(torch.as_tensor(np.asarray(vectors, np.float32))).numpy()

    @torch.no_grad()
    def music_features(self, vectors: np.ndarray) -> np.ndarray:
        """(N, embed_dim) float32 deep features of fused music vectors (N, D)."""
        return self.embed_music(torch.as_tensor(np.asarray(vectors, np.float32))).numpy()

    @torch.no_grad()
    def fit(self, speech_features: np.ndarray, music_features: np.ndarray) -> np.ndarray:
        """Predicted fit 0..1 of deep features, broadcast: (S, 1, E) with (1, M, E) gives (S, M)."""
        a, b = torch.as_tensor(speech_features), torch.as_tensor(music_features)
        return torch.sigmoid(self.head_logit(a, b)).numpy()

    # -- persistence -----------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, metadata: dict | None = None) -> None:
        """config.json + model.safetensors + README.md (model card)."""
        from models.pretrained import save_folder

        save_folder(directory, MODEL_TYPE, self.config, self.state_dict(), metadata, self.model_card(metadata or {}))

    @classmethod
    def from_pretrained(cls, dir_or_repo: str | Path = DEFAULT_WEIGHTS, map_location: str = "cpu",
                        subfolder: str | None = None) -> BGMFitNet:
        """Load from a local folder or a Hugging Face Hub repo id (optionally its ``subfolder``)."""
        from models.pretrained import load_folder, load_state

        _, raw, state = load_folder(dir_or_repo, map_location, subfolder)
        if raw.get("model_type") != MODEL_TYPE:
            raise ValueError(f"{dir_or_repo} holds a {raw.get('model_type')!r} model, not {MODEL_TYPE!r}")
        kwargs = {k: raw[k] for k in ("d_in", "channels", "embed_dim", "hidden", "dropout", "feature_names",
                                      "speech_masked") if k in raw}
        kwargs["speech_masked"] = tuple(kwargs.get("speech_masked", ()))  # older folders masked nothing
        if "channels" in kwargs:
            kwargs["channels"] = tuple(kwargs["channels"])
        if "feature_names" in kwargs:
            kwargs["feature_names"] = tuple(kwargs["feature_names"])
            if list(kwargs["feature_names"]) != list(FEATURE_NAMES):
                raise ValueError("the model was trained on other fused features than media.fused computes")
        model = cls(**kwargs)
        load_state(model, state, raw, {})
        model.training_metadata = raw.get("training", {})
        return model.eval()

    def model_card(self, metadata: dict) -> str:
        """The Hugging Face model card (README.md); ``metadata`` as saved in config.json."""
        from models.cards import render

        n_params = sum(p.numel() for p in self.parameters())
        data = metadata.get("data", {})
        source = metadata.get("label_sources", {})
        rule = source.get("rule", 0)
        training = [
            (f"- Dataset: `{metadata.get('dataset', 'not recorded')}` ({data.get('train_pairs', '?')} training pairs, "
            f"{data.get('test_pairs', '?')} held-out pairs; labels by source: "
            f"{', '.join(f'{k} {v}' for k, v in source.items()) or 'not recorded'})."),
            f"- Held out: whole speakers and tracks ({data.get('holdout', 'not recorded')}).",
        ]
        if rule:
            training.append(
                "- **What it imitates.** The bundled labels are not human fit ratings: no such ratings exist yet. "
                "They come from `training/make_bgm_fit_labels.py`, a written rule over human EMOTION labels "
                "(EmoDB speech emotions; PANDA valence/arousal quadrants and Emotify GEMS ratings of music) and "
                "measured descriptors: mood agreement, arousal suited to the speech's energy, and how "
                "unobtrusive the music is under a voice. Until ratings from the BGM-fit labelling task replace "
                "them, this model imitates that rule.")
        return render(
            title="AV Studio background-music fit (spec 02)",
            summary=f"Scores how well a background-music track fits a spoken recording, 0..1, from their fused "
                    f"feature vectors (68 descriptors per 10 s window). {n_params:,} parameters.",
            tags=["audio", "music", "speech", "background-music", "ranking"],
            pipeline_tag="audio-classification",
            intended_use="Ranking background music for podcasts, audiobooks and narration in AV Studio's BGM fit "
                         "tab and `python -m pipelines.bgm_fit`. A suggestion for a human editor, not a verdict.",
            usage=CARD_USAGE,
            architecture=__doc__.split("\n\n", 1)[1].split("\n\nLabels")[0].replace("\n", " "),
            training=training,
            metadata=metadata,
            evaluate_with="`python -m training.train_bgm_fit` (held-out AUC and NDCG@5 against baselines) and "
                          "`python -m benchmarks.bgm_fit` (speed, calm-vs-energetic sanity on unseen media)",
            limitations="Trained on acted German speech (EmoDB, joined into 10 s samples) and 30 s music previews. "
                        "It reads lively audiobook narration (LJSpeech) as energetic and ranks frantic tracks above "
                        "calm ones for it (see the evaluation table): natural speech outside acted emotion is not "
                        "calibrated. The labels encode one rule's idea of fit (see Training data), not listeners' "
                        "taste. Vocals in the music are not detected.",
            data_names=metadata.get("data_names", ["emodb", "panda4q", "emotify"]))


CARD_USAGE = """```python
from models.bgm_fit import BGMFitNet
from media.fused import fused_file, summary

model = BGMFitNet.from_pretrained("models/weights/bgm_fit")  # or a Hub repo id
a = model.speech_features(summary(fused_file("speech.wav", speech=True))[None])
b = model.music_features(fused_file("track.ogg", speech=False))      # one per 10 s window
fit = model.fit(a[:, None], b[None]).mean()                          # 0..1
```"""

# Headline figures of the bundled weights for their model card (models.cards.refresh_bundled).
CARD_EVALUATION = [
    {"measure": "held-out pairs (unseen speakers and tracks): AUC fitting vs clashing, model head",
     "results": "bgm_fit_train.json", "key": "evaluation.head.auc"},
    {"measure": "same, baseline: cosine of the raw fused vectors", "results": "bgm_fit_train.json",
     "key": "evaluation.raw_feature_cosine.auc"},
    {"measure": "held-out pairs: NDCG@5, model head", "results": "bgm_fit_train.json", "key": "evaluation.head.ndcg@5"},
    {"measure": "energetic held-out speech: AUC frantic tracks above calm (human PANDA labels)",
     "results": "bgm_fit.json", "key": "sanity.recordings.energetic: held-out EmoDB anger/happiness.model_auc"},
    {"measure": "calm LJSpeech narration: AUC calm tracks above frantic (fails)",
     "results": "bgm_fit.json", "key": "sanity.recordings.calm: LJSpeech narration.model_auc", "target": "> 0.5"},
    {"measure": "1-hour recording vs 1,000-track library, seconds on a 2-core CPU", "results": "bgm_fit.json",
     "key": "speed.wall_s", "target": "<= 120"},
    {"measure": "human-style ratings steer it: drum-heavy share of top 5 after 300 simulated-annotator pairs",
     "results": "bgm_fit_preference.json", "key": "results.fine-tuned on simulated annotators.top5_share_drummy"},
]
