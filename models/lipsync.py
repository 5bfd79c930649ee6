"""Lip-sync video processing network of spec 05: feature extraction, decoding-generation, discriminator.

Everything works on the similarity-aligned lower-face crop of ``media.face`` (kind ``"lower"``:
3.0 d wide, 1.5 d tall, d = eye-to-mouth distance) at ``crop`` = 128 x 64 pixels, the geometry the
sync discriminator (``models.syncnet``) sees at 96 x 48. One output frame t is made from:

* the **group** of x = 5 mouth-feature crops centred on t (t-2 .. t+2): RGB mouth-blur image plus
  its gradient map as a 4th channel (spec step 2a/2b), 5 x 4 = 20 input channels;
* the **audio spectrum** at t: MFCC (13 coefficients) over the 0.2 s centred on the frame
  (16 feature frames at 80 per second, the sync discriminator's window), normalised per clip;
* the **mouth keypoints** (the 40 face-mesh lip points), drawn as a one-channel heat map: where
  the mouth sits and, with ``audio_keypoints``, the shape it should take (spec step 4, "corrected
  with the mouth keypoints"). That shape is the clip's mean lip shape at the frame's lip position
  plus the deviation the **lip predictor** reads from the audio vector (a linear head, fitted by
  ridge regression on the frozen audio vectors of the training clips, silence included, smoothed
  over frames and scaled by ``lip_gain`` so that its movement is as large as the real mouths'; never
  more closed than its prediction for silence). The generator is trained with the target frame's
  true keypoints, so it draws the mouth the map shows.

Subnetworks (spec step 4 and training):

* :class:`FeatureExtractor`: a visual encoder over the group and an audio encoder over the MFCC
  window, each to a ``feat_dim`` vector; trained first (stage A) so that the visual and the audio
  vector of the same moment agree element by element, and frozen afterwards.
* :class:`Generator` (decoding-generation): a U-Net whose encoder reads the reference frame's
  mouth-blur crop, gradient and keypoint map (appearance, pose, mouth position) and whose
  bottleneck takes the target visual feature vector; at inference that vector is the audio
  encoder's output, which stage A made agree with what the visual encoder would see on a face
  saying that sound. Output: the lower-face crop (RGB in [0, 1]).
* :class:`Discriminator`: real lower-face crops vs generated ones (BCE), trained alternately
  with the generator (stage B).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "lipsync"
INJECT_CHANNELS = 32
CROP = (128, 64)  # (w, h) of the lower-face crop the network reads and writes
D_PIXELS = CROP[0] / 3.0  # crop pixels per eye-to-mouth distance d (media.face CROPS["lower"] is 3.0 d wide)
LIP_UNIT = 0.05  # the lip head predicts keypoint deviations in units of 0.05 d
INNER_UPPER, INNER_LOWER = 20 + 15, 20 + 5  # landmarks 13 and 14 within media.face.LIPS (outer ring, then inner)


@dataclass
class LipSyncConfig:
    crop_width: int = 128
    crop_height: int = 64
    group: int = 5  # x frames per group
    n_mfcc: int = 13
    mfcc_frames: int = 16  # 0.2 s at 80 feature frames per second
    feat_dim: int = 256
    width: int = 24  # channels of the first generator layer (the bundled file must stay under 10 MB)
    neutral_keypoints: bool = False  # the keypoint map shows the clip's mean lip shape at the frame's lip position
    audio_keypoints: bool = False  # the keypoint map adds the lip predictor's deviation (from the audio) to the mean shape


# Fitted numbers (buffers of LipSyncNet, in model.safetensors): config.json keys of the old layout -> buffer.
LEGACY_FITTED = {"mean_lip_shape": "lip_mean_shape", "lip_gain": "lip_gain", "lip_smooth_s": "lip_smooth_s"}


def _conv(cin, cout, k=3, s=1, p=1, norm=True):
    layers = [nn.Conv2d(cin, cout, k, s, p, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


class FeatureExtractor(nn.Module):
    """Group of mouth-feature crops -> visual feature vector; MFCC window -> audio feature vector."""

    def __init__(self, c: LipSyncConfig):
        super().__init__()
        self.config = c
        self.visual = nn.Sequential(  # (20, 64, 128)
            _conv(4 * c.group, 32, 5, 2, 2),  # 32 x 64
            _conv(32, 48, 3, 2, 1),  # 16 x 32
            _conv(48, 64, 3, 2, 1),  # 8 x 16
            _conv(64, 96, 3, 2, 1),  # 4 x 8
            _conv(96, 128, 3, 2, 1),  # 2 x 4
            nn.Flatten(),
            nn.Linear(128 * 2 * 4, c.feat_dim),
        )
        self.audio = nn.Sequential(  # (1, 13, 16)
            _conv(1, 32, 3, 1, 1),
            _conv(32, 64, 3, 1, 1),
            _conv(64, 96, 3, (1, 2), 1),  # 13 x 8
            _conv(96, 128, 3, 2, 1),  # 7 x 4
            _conv(128, 128, 3, 2, 1),  # 4 x 2
            nn.Flatten(),
            nn.Linear(128 * 4 * 2, c.feat_dim),
        )
        self.lip_head = nn.Linear(c.feat_dim, 40 * 2)  # stage A's auxiliary target: the mouth shape

    def predict_lips(self, vector: torch.Tensor) -> torch.Tensor:
        """Training-only head shared by both vectors: (B, feat_dim) -> (B, 40, 2) lip keypoint deviations."""
        return self.lip_head(vector).view(len(vector), 40, 2)

    def visual_vector(self, group: torch.Tensor) -> torch.Tensor:
        """(B, 20, 64, 128) float in [0, 1] -> (B, feat_dim)."""
        return self.visual(group)

    def audio_vector(self, mfcc: torch.Tensor) -> torch.Tensor:
        """(B, 13, 16) normalised MFCC -> (B, feat_dim)."""
        return self.audio(mfcc.unsqueeze(1))


class Generator(nn.Module):
    """U-Net: reference crop (blur RGB + gradient + keypoint map) and a feature vector -> lower-face crop."""

    def __init__(self, c: LipSyncConfig):
        super().__init__()
        w = c.width
        self.config = c
        chans = [w, 2 * w, 3 * w, 4 * w, 4 * w]  # 64x128, 32x64, 16x32, 8x16, 4x8
        self.down = nn.ModuleList()
        cin = 5
        for i, ch in enumerate(chans):
            self.down.append(nn.Sequential(_conv(cin, ch, 3, 1 if i == 0 else 2, 1), _conv(ch, ch)))
            cin = ch
        self.film = nn.Linear(c.feat_dim, 2 * chans[-1])  # the feature vector scales and shifts the bottleneck
        self.inject = nn.Linear(c.feat_dim, INJECT_CHANNELS * 4 * 8)  # and is laid out over the 4 x 8 grid
        self.up = nn.ModuleList()
        prev = chans[-1] + INJECT_CHANNELS
        for ch in reversed(chans[:-1]):
            self.up.append(nn.Sequential(_conv(prev + ch, ch), _conv(ch, ch)))
            prev = ch
        self.out = nn.Conv2d(prev, 3, 1)

    def forward(self, reference: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        """(B, 5, 64, 128) reference channels, (B, feat_dim) target vector -> (B, 3, 64, 128) in [0, 1]."""
        skips = []
        x = reference
        for block in self.down:
            x = block(x)
            skips.append(x)
        gamma, beta = self.film(vector).chunk(2, dim=1)
        x = x * (1 + gamma[..., None, None]) + beta[..., None, None]
        x = torch.cat([x, self.inject(vector).view(len(x), INJECT_CHANNELS, *x.shape[-2:])], dim=1)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return torch.sigmoid(self.out(x))


class Discriminator(nn.Module):
    """Real vs generated lower-face crops (one logit per crop)."""

    def __init__(self, c: LipSyncConfig):
        super().__init__()
        self.net = nn.Sequential(  # (3, 64, 128)
            _conv(3, 32, 4, 2, 1, norm=False),  # 32 x 64
            _conv(32, 64, 4, 2, 1),  # 16 x 32
            _conv(64, 128, 4, 2, 1),  # 8 x 16
            _conv(128, 256, 4, 2, 1),  # 4 x 8
            nn.Conv2d(256, 1, (4, 8), 1, 0),  # 1 x 1
        )

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.net(crops).flatten(1).squeeze(1)


class LipSyncNet(nn.Module):
    """The video processing network: feature extraction + decoding-generation (+ discriminator for training)."""

    def __init__(self, config: LipSyncConfig | None = None):
        super().__init__()
        self.config = c = config or LipSyncConfig()
        self.features = FeatureExtractor(c)
        self.generator = Generator(c)
        self.discriminator = Discriminator(c)
        # Numbers fitted after training (models.lipsync_fit), saved with the weights. float64: they keep the
        # exact values the fit chose. NaN mean shape = not fitted.
        self.register_buffer("lip_mean_shape", torch.full((40, 2), float("nan"), dtype=torch.float64))
        self.register_buffer("lip_gain", torch.tensor(1.0, dtype=torch.float64))  # real movement std / predicted
        self.register_buffer("lip_smooth_s", torch.tensor(0.0, dtype=torch.float64))  # Gaussian sigma over frames, s
        self.training_metadata: dict = {}

    @property
    def mean_lip_shape(self) -> np.ndarray | None:
        """(40, 2) float32 crop pixels: the training clips' average lip shape (drawn for photos), or None
        when it was not fitted."""
        shape = self.lip_mean_shape.detach().cpu().numpy()
        return None if np.isnan(shape).all() else shape.astype(np.float32)

    @mean_lip_shape.setter
    def mean_lip_shape(self, value) -> None:
        shape = np.full((40, 2), np.nan) if value is None else np.asarray(value, np.float64).reshape(40, 2)
        self.lip_mean_shape.copy_(torch.from_numpy(shape))

    @torch.no_grad()
    def predict_lip_deviation(self, mfcc: torch.Tensor, fps: float | None = None, batch: int = 256) -> np.ndarray:
        """MFCC windows (B, 13, 16) -> (B, 40, 2) float32 lip keypoint deviations from the mean lip shape, in
        crop pixels: what the keypoint map adds with ``audio_keypoints`` (run ``batch`` windows at a time).

        With ``fps`` the windows are a clip's consecutive frames, and the lip head's predictions are smoothed
        over them by ``lip_smooth_s``. They are then multiplied by ``lip_gain`` (a regression towards the
        mean moves the mouth less than people do; the gain was measured as the spread ratio about the mean),
        and wherever that would close the mouth further than the prediction for silence, the silent mouth is
        used instead: lips cannot close past touching, and silence stays exactly closed."""
        def predict(x: torch.Tensor) -> np.ndarray:
            return self.features.predict_lips(self.features.audio_vector(x)).cpu().numpy()

        dev = np.concatenate([predict(mfcc[s:s + batch]) for s in range(0, len(mfcc), batch)]) if len(mfcc) \
            else np.zeros((0, 40, 2), np.float32)
        dev = float(self.lip_gain) * smooth_frames(dev, float(self.lip_smooth_s) * fps if fps else 0.0)
        closed = predict(torch.from_numpy(silence_windows(1, mfcc.shape[-1])).to(mfcc))
        dev = np.where((inner_gap(dev) < inner_gap(closed))[:, None, None], closed, dev)
        return (dev * (LIP_UNIT * D_PIXELS)).astype(np.float32)

    @torch.no_grad()
    def generate(self, reference: torch.Tensor, mfcc: torch.Tensor) -> torch.Tensor:
        """Inference: reference channels (B, 5, 64, 128) + MFCC windows (B, 13, 16) -> crops (B, 3, 64, 128).
        The input is laid out channels-last, which CPU convolutions run faster (more so with the weights laid
        out so too: ``model.to(memory_format=torch.channels_last)``, as the pipeline loads it)."""
        return self.generator(reference.contiguous(memory_format=torch.channels_last), self.features.audio_vector(mfcc))

    # -- persistence (diffusers-style) ---------------------------------------------------------
    def save_pretrained(self, directory: str | Path, metadata: dict | None = None, with_discriminator: bool = False) -> None:
        """config.json + model.safetensors + README.md (model card); the discriminator is left out unless asked
        (inference does not need it)."""
        from models.pretrained import save_folder

        state = {k: v for k, v in self.state_dict().items() if with_discriminator or not k.startswith("discriminator.")}
        save_folder(directory, "lipsync", asdict(self.config), state, metadata, self.model_card(metadata or {}))

    @classmethod
    def from_pretrained(cls, dir_or_repo: str | Path = DEFAULT_WEIGHTS, map_location: str = "cpu",
                        subfolder: str | None = None) -> LipSyncNet:
        """Load from a local folder (config.json + model.safetensors) or a Hugging Face Hub repo id, optionally
        from its ``subfolder``. A folder of the old layout (fitted numbers in config.json) loads the same."""
        from models.pretrained import config_fields, load_folder, load_state

        _, raw, state = load_folder(dir_or_repo, map_location, subfolder)
        model = cls(LipSyncConfig(**config_fields(raw, LipSyncConfig)))
        load_state(model, state, raw, LEGACY_FITTED, optional_prefixes=("discriminator.",))
        model.training_metadata = raw.get("training", {})
        return model.eval()

    def model_card(self, metadata: dict) -> str:
        """The Hugging Face model card (README.md) of these weights; ``metadata`` as saved in config.json."""
        from models.cards import render

        n_params = sum(p.numel() for n, p in self.named_parameters() if not n.startswith("discriminator."))
        train, held = metadata.get("train_clips", []), metadata.get("holdout_sources", [])
        sources = metadata.get("train_sources") or sorted({c.split("_")[0] for c in train})
        fitted = (f"lip gain {float(self.lip_gain):.4g}, smoothing {float(self.lip_smooth_s):g} s, "
                  f"mean lip shape {'fitted' if self.mean_lip_shape is not None else 'not fitted'}")
        return render(
            title="AV Studio lip-sync network (spec 05)",
            summary="Makes the mouth of a face (video or photo) follow new speech: from the audio, a lip predictor "
                    "chooses the mouth's keypoints, and a U-Net generator draws the lower face to match them; the "
                    "pipeline pastes the generated mouth back. Part of the AV Studio demo (`pipelines/lipsync.py`).",
            tags=["lip-sync", "talking-face", "audio-driven", "face-animation", "audio-visual"],
            pipeline_tag="video-to-video",
            intended_use="Demonstrations and research on audio-driven lip sync of one face: re-voicing a short "
                         "talking-head clip or animating a portrait photo with speech, through AV Studio's Lip sync tab "
                         "or `python -m pipelines.lipsync`. Not for making people appear to say what they did not "
                         "say without their consent, nor for identity or liveness decisions.",
            usage=CARD_USAGE,
            architecture=f"Feature extraction (a visual encoder over 5 mouth-blur crops with their gradient maps, "
                         f"{self.config.crop_width} x {self.config.crop_height}, and an audio encoder over "
                         f"{self.config.n_mfcc} x {self.config.mfcc_frames} MFCC windows, both to "
                         f"{self.config.feat_dim}-d vectors) with a linear lip head, refitted by ridge regression on the "
                         f"frozen audio vectors (the lip predictor), and a U-Net generator (width {self.config.width}) "
                         f"with FiLM and injected features at its 4 x 8 bottleneck. {n_params / 1e6:.2f} M parameters "
                         f"(the GAN discriminator, used only in training, is not included). Fitted numbers, stored as "
                         f"buffers in `model.safetensors`: {fitted}.",
            training=[f"- Trained on {len(train)} talking-face clips" + (f" from the sources {', '.join(sources)}" if sources else "")
                      + " of the AV Studio media collection (`talking_video/`), with the bundled sync discriminator "
                        "as a loss." if train else "- Training clips: not recorded in the metadata.",
                      f"- Held out (never trained on): {', '.join(held) if held else 'nothing recorded'}.",
                      (f"- Training: stages {', '.join(metadata.get('stages', [])) or '?'}; "
                       "see `training/train_lipsync.py` and `docs/lipsync.md`."),
                      *([f"- Clips: {', '.join(f'`{c}`' for c in train)}."] if train else [])],
            metadata=metadata,
            evaluate_with="`python -m benchmarks.lipsync_eval` (14 held-out PC-AVS faces driven by another "
                          "held-out speaker, 14 speech recordings and 20 photos)",
            limitations="The mouth is generated at 128 x 64 for the whole lower face, so on large faces it is softer "
                        "than the rest of the picture. The mouth's shape for each moment comes from a linear "
                        "predictor fitted on about 7 minutes of speech: it follows a held-out speaker's real mouth "
                        "at a correlation of about 0.3-0.4, so the timing is right while single sounds are often "
                        "shaped wrongly; the mouth-opening-vs-loudness target (0.3) is met with clean speech "
                        "recordings but not with interview audio. One face (the largest) speaks; the training "
                        "clips hold about 15 speakers.",
            data_names=[*sources, *held])


# How to use, in the model card.
CARD_USAGE = """```python
from models.lipsync import LipSyncNet

model = LipSyncNet.from_pretrained("models/weights/lipsync")  # or a Hub repo id (subfolder=...)
# the whole pipeline: python -m pipelines.lipsync FACE SPEECH --out OUT.mp4
```"""

# Headline figures of the bundled weights for their model card (models.cards.refresh_bundled).
CARD_EVALUATION = [
    {"measure": "independent judge (never trained against) finds the offset within +/-1 frame (14 held-out faces, "
                "another held-out speaker's audio)",
     "results": "lipsync_eval.json", "key": "summary.judge_offset_within_1_frame", "target": ">= 0.8"},
    {"measure": "independent judge's confidence (LSE-C), median", "results": "lipsync_eval.json",
     "key": "summary.judge_confidence_median"},
    {"measure": "the same clips, real, with their own audio: independent judge within +/-1 frame",
     "results": "lipsync_eval.json", "key": "summary.real_judge_offset_within_1_frame"},
    {"measure": "training judge (the discriminator the generator was trained against; circular) within +/-1 frame",
     "results": "lipsync_eval.json", "key": "summary.training_judge_offset_within_1_frame"},
    {"measure": "mouth opening vs loudness, median correlation (interview audio)", "results": "lipsync_eval.json",
     "key": "summary.opening_loudness_corr_median", "target": ">= 0.3"},
    {"measure": "mouth opening vs loudness, median correlation (14 speech recordings)", "results": "lipsync_eval.json",
     "key": "summary.speech_opening_loudness_corr_median", "target": ">= 0.3"},
    {"measure": "output mouth vs the driving speaker's real mouth, median correlation", "results": "lipsync_eval.json",
     "key": "summary.driver_gap_corr_median"},
    {"measure": "copying baseline: the input's own mouth vs the driving speaker's real mouth", "results": "lipsync_eval.json",
     "key": "summary.input_driver_gap_corr_median"},
    {"measure": "silent track: 90th percentile of the inner-lip gap / face height, median", "results": "lipsync_eval.json",
     "key": "summary.silent_gap_p90_median", "target": "<= 0.02"},
    {"measure": "PSNR above the nose against the input, minimum (dB)", "results": "lipsync_eval.json",
     "key": "summary.psnr_above_nose_db_min", "target": ">= 30"},
    {"measure": "20 photos: output mouth vs the driving speaker's real mouth, median correlation",
     "results": "lipsync_eval.json", "key": "summary.photo_driver_gap_corr_median"},
    {"measure": "real-time factor on a 2-core CPU (10 s, 256 x 256)", "results": "lipsync_speed.json",
     "key": "real_time_factor.total", "target": "<= 1.0"},
]


def inner_gap(points: np.ndarray) -> np.ndarray:
    """(n, 40, 2) or (n, 80) lip keypoints or deviations (media.face.LIPS order) -> (n,) inner-lip gap
    (lower minus upper inner lip, y)."""
    p = np.asarray(points).reshape(len(points), 40, 2)
    return p[:, INNER_LOWER, 1] - p[:, INNER_UPPER, 1]


def smooth_frames(x: np.ndarray, sigma_frames: float) -> np.ndarray:
    """``x`` (n, ...) smoothed along its first axis (frames) by a Gaussian of ``sigma_frames`` (0: unchanged)."""
    if sigma_frames <= 0 or len(x) < 2:
        return x
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(x, sigma_frames, axis=0, mode="nearest")


def keypoint_map(points: np.ndarray, size: tuple[int, int], sigma: float = 1.5) -> np.ndarray:
    """(K, 2) keypoints in crop pixels -> (h, w) float32 heat map in [0, 1] (max of Gaussians, each evaluated
    within 5.5 sigma of its point, where it has fallen below 1e-6)."""
    w, h = size
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) == 0:
        return np.zeros((h, w), np.float32)
    r = int(np.ceil(5.5 * sigma))

    def profile(centres: np.ndarray, n: int) -> np.ndarray:
        """(K, n): each point's 1-D Gaussian along one axis, zero outside its window floor(c) - r .. floor(c) + r + 1."""
        grid = np.arange(n, dtype=np.float32)[None, :]
        g = np.exp(-(grid - centres.astype(np.float32)[:, None]) ** 2 / np.float32(2 * sigma ** 2))
        lo = np.floor(centres)[:, None] - r
        g[(grid < lo) | (grid > lo + 2 * r + 1)] = 0.0
        return g

    # the 2-D Gaussian is the product of its two 1-D ones
    return np.max(profile(pts[:, 1], h)[:, :, None] * profile(pts[:, 0], w)[:, None, :], axis=0)


SILENCE_C0 = -894.4  # c0 of digital silence (log-mel at its -100 dB floor)
MFCC_C0_SCALE = 150.0  # spread of c0 between speech peaks and pauses (about 165-360 on ../shared/media speech)
MFCC_C0_LOUDEST_FLOOR = -550.0  # a clip whose loud frames sit below this is treated as silence, not rescaled
MFCC_SCALE = np.array([50.4, 27.1, 27.4, 18.6, 14.0, 13.6, 12.8, 10.7, 10.8, 9.3, 9.5, 8.9], np.float32)


def c0_reference(c0: np.ndarray) -> float:
    """The level a clip's energy coefficient is measured from: its loud frames (95th percentile),
    but never below MFCC_C0_LOUDEST_FLOOR, so that a silent track stays far below speech."""
    return max(float(np.percentile(c0, 95)) if len(c0) else SILENCE_C0, MFCC_C0_LOUDEST_FLOOR)


def normalize_mfcc(mfcc: np.ndarray) -> np.ndarray:
    """Normalise an MFCC matrix (13, T) of one clip.

    c0 (energy) is taken relative to the clip's loud frames (:func:`c0_reference`) over 150: speech
    peaks near 0, pauses -1 to -2.5, digital silence about -2.3 (the recording level drops out,
    a silent track still looks like a pause); c1..c12 lose the clip's mean (voice, microphone) and
    are divided by their spread measured on speech. Clipped to [-5, 5].
    """
    mfcc = np.asarray(mfcc, dtype=np.float32)
    out = np.empty_like(mfcc)
    out[0] = (mfcc[0] - c0_reference(mfcc[0])) / MFCC_C0_SCALE
    if mfcc.shape[1]:
        out[1:] = (mfcc[1:] - mfcc[1:].mean(axis=1, keepdims=True)) / MFCC_SCALE[:, None]
    return np.clip(out, -5.0, 5.0)


def silence_column() -> np.ndarray:
    """(13,) normalised MFCC of silence for windows reaching outside the recording."""
    col = np.zeros(13, np.float32)
    col[0] = (SILENCE_C0 - MFCC_C0_LOUDEST_FLOOR) / MFCC_C0_SCALE
    return col


def silence_windows(n: int, frames: int = 16) -> np.ndarray:
    """(n, 13, frames) float32: MFCC windows of silence."""
    return np.repeat(np.repeat(silence_column()[None, :, None], frames, axis=2), n, axis=0).astype(np.float32)


def lip_hull(points: np.ndarray, grow: float, feather: float = 2.0, size: tuple[int, int] = CROP) -> np.ndarray:
    """(h, w) float32 mask in [0, 1]: the hull of the outer lip points (the first 20 of the 40), widened by
    ``grow`` d and feathered by a Gaussian of ``feather`` pixels. Zero when a point is missing."""
    import cv2

    from media.mouth import hull_mask

    w, h = size
    mask = hull_mask(np.asarray(points)[:20], (h, w), grow * D_PIXELS * w / CROP[0]).astype(np.float32)
    return cv2.GaussianBlur(mask, (0, 0), feather) if feather > 0 else mask


def generator_input(blur_crop: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """(5, 64, 128) float32: a mouth-blur crop's RGB and gradient map, and the keypoint heat map."""
    from media.mouth import gradient_map

    blur = blur_crop.astype(np.float32) / 255.0
    return np.concatenate([blur.transpose(2, 0, 1), gradient_map(blur_crop)[None],
                           keypoint_map(keypoints, (blur_crop.shape[1], blur_crop.shape[0]))[None]]).astype(np.float32)


def keypoints_for_input(keypoints: np.ndarray, mean_shape: np.ndarray | None) -> np.ndarray:
    """The keypoints drawn into the generator's input: the frame's own, or, with ``mean_shape`` (the clip's
    mean lip keypoints), that mean shape moved to the frame's lip centroid, so the map says where the
    mouth is but not how open it is (with ``audio_keypoints``, the lip predictor's deviation is added)."""
    if mean_shape is None:
        return keypoints
    return mean_shape - np.nanmean(mean_shape, axis=0) + np.nanmean(keypoints, axis=0)


def mfcc_windows(mfcc_norm: np.ndarray, frames: np.ndarray, fps: float) -> np.ndarray:
    """(len(frames), 13, 16) of a normalised MFCC (:func:`normalize_mfcc`): the 0.2 s centred on each
    video frame; outside the recording, silence."""
    from media.features import MEL_FPS, SYNC_MEL_FRAMES, mel_windows

    centre = np.rint((np.asarray(frames, dtype=np.float64) + 0.5) / fps * MEL_FPS).astype(np.int64)
    out = mel_windows(mfcc_norm, centre - SYNC_MEL_FRAMES // 2, SYNC_MEL_FRAMES, fill=np.nan)
    return np.where(np.isnan(out), silence_column()[None, :, None], out).astype(np.float32)
