"""Audio feature network of spec 03 (music-driven face): an MFCC autoencoder whose encoder gives one 512-d
vector per 100 ms, and the per-frame expression weight derived from those vectors.

Input (spec "Audio features", pre-processing), made by :func:`mfcc_points` and :func:`encoder_input`:

* MFCC, 13 coefficients, one time point per 100 ms (every 100 ms, a 100 ms window in a 128 ms FFT frame, 16 kHz);
* cut into segments of ``points`` = 16 time points (1.6 s); each 13 x 16 segment is padded along the
  coefficient axis with 0 to a square 16 x 16, replicated to the encoder's 3 channels and normalised
  into [0, 1] with per-coefficient bounds measured on the training corpus (``mfcc_low``/``mfcc_high``,
  :func:`calibrate_mfcc`): fixed bounds, so a soft track stays low and a loud one high (a per-track
  min-max would erase that).

:class:`AudioAutoencoder`: the encoder is 8 identical-kind blocks (Conv2d + BatchNorm + ReLU) that fold
the coefficient axis to 1 while keeping time, ending in 512 channels: one 512-d vector per time point.
The decoder is 8 blocks of ConvTranspose2d + BatchNorm + ReLU back to the 3 x 16 x 16 input. Trained
without labels (``training/train_audio_encoder.py``) on reconstruction; only the encoder is bundled.

Weight per video frame (spec "From audio features to a weight per frame", :func:`frame_weights`):
the vectors are interpolated to the output frame rate (each frame's vector a distance-weighted average of
the two time points around it), each vector is averaged over its 512 elements, and that mean is mapped
into [0, 1] with bounds calibrated once on the training corpus (``weight_low``/``weight_high``: the
corpus's 5th and 95th percentiles, :func:`calibrate_weights`), so calm, soft music gives small weights and
intense music large.

Both pairs of bounds are numbers fitted on the corpus, not architecture: they are buffers of
:class:`AudioAutoencoder`, saved in model.safetensors (config.json holds the constructor arguments).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from media.features import SAMPLE_RATE as FEATURE_SAMPLE_RATE

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "audio_encoder"
SAMPLE_RATE = FEATURE_SAMPLE_RATE  # 16 kHz, as every audio feature here
POINT_SECONDS = 0.1  # one time point per 100 ms

# Held out of the encoder's training by default and used by the music-face evaluation: three calm and
# three intense tracks of MEDIA/music (by their titles and genres; the evaluation checks the labels against
# loudness and onset rate too).
CALM = ["smstools_cello-phrase", "lincity_RobertvanHerk_ArchitecturalContemplations",
        "librosa_147793__setuniman__sweet-waltz-0i-22mi"]
INTENSE = ["librosa_admiralbob77_-_Choice_-_Drum-bass", "etr_race1-jt",
           "librosa_Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_string_o"]
MFCC_PERCENTILES = (1, 99)  # the MFCC bounds: these percentiles of each coefficient over the training points
WEIGHT_PERCENTILES = (5, 95)  # the weight bounds: these percentiles of the training points' mean activation
# Fitted numbers (buffers): config.json keys of the old layout -> buffer.
LEGACY_FITTED = {k: k for k in ("mfcc_low", "mfcc_high", "weight_low", "weight_high")}


@dataclass
class AudioEncoderConfig:
    n_mfcc: int = 13
    points: int = 16  # time points per segment = padded side of the square input
    channels: int = 3  # the single MFCC channel replicated to this many
    widths: tuple = (32, 64, 64, 128, 128, 256, 256, 512)  # output channels of the 8 encoder blocks

    @property
    def feat_dim(self) -> int:
        return self.widths[-1]


# The coefficient axis (16) is folded by three stride-2 blocks (16 -> 8 -> 4 -> 2) and a last (2 x 3) block
# (2 -> 1); time keeps its 16 points throughout (stride 1, padding 1).
_FOLD = (1, 2, 1, 2, 1, 2, 1, None)


def _block(cin: int, cout: int, fold, transpose: bool = False) -> nn.Sequential:
    if fold is None:  # the last encoder block / first decoder block: coefficient axis 2 <-> 1
        kernel, stride, padding = (2, 3), 1, (0, 1)
    elif fold == 2:
        kernel, stride, padding = ((4, 3), (2, 1), (1, 1)) if transpose else ((3, 3), (2, 1), (1, 1))
    else:
        kernel, stride, padding = 3, 1, 1
    conv = (nn.ConvTranspose2d if transpose else nn.Conv2d)(cin, cout, kernel, stride, padding, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class AudioAutoencoder(nn.Module):
    """8-block convolutional encoder (one vector per time point) and 8-block transposed-convolution decoder."""

    def __init__(self, config: AudioEncoderConfig | None = None, with_decoder: bool = True):
        super().__init__()
        self.config = c = config or AudioEncoderConfig()
        ins = (c.channels, *c.widths[:-1])
        self.encoder = nn.Sequential(*[_block(i, o, f) for i, o, f in zip(ins, c.widths, _FOLD)])
        self.decoder = None
        if with_decoder:
            outs = (*reversed(c.widths[:-1]), c.channels)
            self.decoder = nn.Sequential(*[_block(i, o, f, transpose=True)
                                           for i, o, f in zip(reversed(c.widths), outs, reversed(_FOLD))])
        # Calibrated on the training corpus (calibrate_mfcc, calibrate_weights), saved with the weights; float64
        # keeps the exact values. The defaults (0 and 1) leave inputs and weights unscaled.
        self.register_buffer("mfcc_low", torch.zeros(c.n_mfcc, dtype=torch.float64))  # per coefficient -> 0
        self.register_buffer("mfcc_high", torch.ones(c.n_mfcc, dtype=torch.float64))  # per coefficient -> 1
        self.register_buffer("weight_low", torch.tensor(0.0, dtype=torch.float64))  # mean feature -> weight 0
        self.register_buffer("weight_high", torch.tensor(1.0, dtype=torch.float64))  # mean feature -> weight 1
        self.training_metadata: dict = {}

    def mfcc_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) per-coefficient MFCC bounds, float32 (n_mfcc,) each."""
        return (self.mfcc_low.detach().cpu().numpy().astype(np.float32),
                self.mfcc_high.detach().cpu().numpy().astype(np.float32))

    def weight_bounds(self) -> tuple[float, float]:
        """(low, high): the mean activation that maps to weight 0 and to weight 1."""
        return float(self.weight_low), float(self.weight_high)

    def input_for(self, m: np.ndarray) -> np.ndarray:
        """:func:`encoder_input` of a (13, T) MFCC with this model's configuration and MFCC bounds."""
        return encoder_input(m, self.config, *self.mfcc_bounds())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 16, 16) in [0, 1] -> (B, 16, 512): one vector per time point."""
        return self.encoder(x).squeeze(2).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of the input (training)."""
        return self.decoder(self.encoder(x))

    # -- persistence (diffusers-style) ---------------------------------------------------------
    def save_pretrained(self, directory: str | Path, metadata: dict | None = None, with_decoder: bool = False) -> None:
        """config.json + model.safetensors + README.md (model card); the decoder is left out unless asked
        (inference needs the encoder)."""
        from models.pretrained import save_folder

        state = {k: v for k, v in self.state_dict().items() if with_decoder or not k.startswith("decoder.")}
        save_folder(directory, "audio_encoder", asdict(self.config), state, metadata, self.model_card(metadata or {}))

    @classmethod
    def from_pretrained(cls, dir_or_repo: str | Path = DEFAULT_WEIGHTS, map_location: str = "cpu",
                        subfolder: str | None = None) -> AudioAutoencoder:
        """Load from a local folder (config.json + model.safetensors) or a Hugging Face Hub repo id, optionally
        from its ``subfolder``. A folder of the old layout (bounds in config.json) loads the same."""
        from models.pretrained import config_fields, load_folder, load_state

        _, raw, state = load_folder(dir_or_repo, map_location, subfolder)
        fields = config_fields(raw, AudioEncoderConfig)
        fields["widths"] = tuple(fields.get("widths", AudioEncoderConfig.widths))
        has_decoder = any(k.startswith("decoder.") for k in state)
        model = cls(AudioEncoderConfig(**fields), with_decoder=has_decoder)
        load_state(model, state, raw, LEGACY_FITTED)
        model.training_metadata = raw.get("training", {})
        return model.eval()

    def model_card(self, metadata: dict) -> str:
        """The Hugging Face model card (README.md) of these weights; ``metadata`` as saved in config.json."""
        from models.cards import render

        n_params = sum(p.numel() for p in self.encoder.parameters())
        train, held = metadata.get("train_tracks", []), metadata.get("holdout_tracks", [])
        lo, hi = self.weight_bounds()
        return render(
            title="AV Studio music encoder (spec 03)",
            summary="The encoder half of an MFCC autoencoder: one 512-d vector per 100 ms of music, and from those "
                    "vectors a weight in [0, 1] per video frame (`frame_weights`) that says how intense the music "
                    "is; AV Studio's Music to face pipeline (`pipelines/music_face.py`) scales a face's "
                    "expression by it.",
            tags=["audio", "music", "autoencoder", "mfcc", "audio-visual"],
            pipeline_tag="feature-extraction",
            intended_use="Demonstrations and research: turning music into a slowly varying intensity signal that "
                         "drives a face's expression (Music to face tab, `python -m pipelines.music_face`). Not a "
                         "music emotion or genre classifier.",
            usage=CARD_USAGE,
            architecture=f"8 blocks of Conv2d + BatchNorm + ReLU ({' -> '.join(str(w) for w in (self.config.channels, *self.config.widths))} "
                         f"channels) over {self.config.channels} x {self.config.points} x {self.config.points} inputs "
                         f"({self.config.points} time points of {self.config.n_mfcc} MFCCs, padded), one "
                         f"{self.config.feat_dim}-d vector per 100 ms; {n_params / 1e6:.2f} M parameters. The decoder "
                         "(8 ConvTranspose2d blocks) is used only in training. Fitted numbers, stored as buffers in "
                         f"`model.safetensors`: the per-coefficient MFCC bounds ({MFCC_PERCENTILES[0]}st and "
                         f"{MFCC_PERCENTILES[1]}th percentiles of the training points) and the weight bounds "
                         f"({lo:.4g}, {hi:.4g}: {WEIGHT_PERCENTILES[0]}th and {WEIGHT_PERCENTILES[1]}th percentiles "
                         "of the training points' mean activation).",
            training=[f"- Trained without labels on {len(train)} music tracks of the AV Studio media collection "
                      "(`music/`): reconstruction of the MFCC plus a self-supervised term tying each vector's mean to "
                      "the music's onset activity (`training/train_audio_encoder.py`)." if train
                      else "- Training tracks: not recorded in the metadata.",
                      f"- Held out (never trained on, whole tracks): {', '.join(f'`{t}`' for t in held) or 'nothing recorded'}.",
                      *([f"- Tracks: {', '.join(f'`{t}`' for t in train)}."] if train else [])],
            metadata=metadata,
            evaluate_with="`python -m benchmarks.music_face_eval` (held-out calm and intense tracks) and the training "
                          "report",
            limitations="\"Intense\" is learnt as onset activity: a loud, sustained chord with few onsets reads calmer "
                        "than a quiet, busy rhythm. The weight is a rate over about a second, so it follows passages, "
                        "not single beats. 28 minutes of training music, mostly game soundtracks and short examples.",
            data_names=[*train, *held])


# How to use, in the model card.
CARD_USAGE = """```python
from models.audio_encoder import AudioAutoencoder, frame_weights

model = AudioAutoencoder.from_pretrained("models/weights/audio_encoder")  # or a Hub repo id
weights = frame_weights(model, audio, fps=25.0, sr=16000)  # (n_frames,) in [0, 1]
```"""

# Headline figures of the bundled weights for their model card (models.cards.refresh_bundled).
CARD_EVALUATION = [
    {"measure": "mean weight of the 3 calm held-out tracks", "results": "music_face_eval.json",
     "key": "summary.calm_mean_weight"},
    {"measure": "mean weight of the 3 intense held-out tracks", "results": "music_face_eval.json",
     "key": "summary.intense_mean_weight"},
    {"measure": "gap, intense minus calm", "results": "music_face_eval.json", "key": "summary.calm_intense_gap",
     "target": ">= 0.1"},
    {"measure": "held-out reconstruction MSE", "results": "audio_encoder_training_report.json", "key": "held_recon_mse"},
    {"measure": "held-out MSE of the mean-frame baseline", "results": "audio_encoder_training_report.json",
     "key": "held_mean_frame_mse"},
    {"measure": "correlation of the weight with onset activity, training points", "results":
     "audio_encoder_training_report.json", "key": "train_weight_activity_corr"},
]


# ------------------------------------------------------------------------------------------------
# audio -> encoder input -> vectors -> weights (pure functions, explicit sample rates)
# ------------------------------------------------------------------------------------------------
N_FFT_SECONDS = 0.128  # the FFT frame (2048 samples at 16 kHz) that each 100 ms point's spectrum is taken over
POINT_CENTRE = N_FFT_SECONDS / 2  # seconds from a point's start to the centre of its FFT frame


def mfcc_points(audio: np.ndarray, sr: int = SAMPLE_RATE, n_mfcc: int = 13) -> np.ndarray:
    """(n_mfcc, T) MFCC with one time point per 100 ms, T = floor(duration / 0.1 s): point t starts at
    0.1 t s and its spectrum is the 128 ms FFT frame from there (the audio is padded with silence at the
    end so that the last full 100 ms has its point). Audio shorter than 100 ms gives T = 0."""
    from media.features import cepstrum, mel_filters, stft_power

    hop = round(POINT_SECONDS * sr)
    n_fft = round(N_FFT_SECONDS * sr)
    audio = np.asarray(audio, np.float32)
    if len(audio) < hop:
        return np.zeros((n_mfcc, 0), np.float32)
    n_points = len(audio) // hop
    padded = np.pad(audio[:n_points * hop], (0, n_fft - hop))
    # librosa.feature.mfcc(y=padded, sr=sr, n_mfcc=n_mfcc, n_fft=n_fft, win_length=hop, hop_length=hop,
    # center=False, n_mels=40, fmax=sr / 2): the mel power in dB, floored 80 dB below its peak, then the DCT
    mel = mel_filters(sr, n_fft, 40, 0.0, sr / 2) @ stft_power(padded, n_fft, hop, win_length=hop, center=False)
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    m = cepstrum(np.maximum(db, db.max() - 80.0), n_mfcc)
    return m[:, :n_points].astype(np.float32)


def normalise_mfcc(m: np.ndarray, mfcc_low, mfcc_high) -> np.ndarray:
    """Per-coefficient fixed bounds (n_mfcc,) each -> [0, 1] (clipped)."""
    lo = np.asarray(mfcc_low, np.float32)[:, None]
    hi = np.asarray(mfcc_high, np.float32)[:, None]
    return np.clip((m - lo) / np.maximum(hi - lo, 1e-6), 0.0, 1.0)


def encoder_input(m: np.ndarray, config: AudioEncoderConfig, mfcc_low, mfcc_high) -> np.ndarray:
    """(n_segments, channels, P, P) float32 from a (13, T) MFCC: normalised with the bounds
    (:func:`normalise_mfcc`; a model's are ``model.mfcc_bounds()``, see ``AudioAutoencoder.input_for``), cut
    into segments of P points (the last one padded by repeating its final point), each padded with 0 to P
    coefficient rows, replicated."""
    p = config.points
    n = max(1, -(-m.shape[1] // p))
    x = normalise_mfcc(m, mfcc_low, mfcc_high)
    if x.shape[1] == 0:
        x = np.zeros((m.shape[0], 1), np.float32)
    x = np.pad(x, ((0, 0), (0, n * p - x.shape[1])), mode="edge")
    seg = x.reshape(x.shape[0], n, p).transpose(1, 0, 2)  # (n, 13, P)
    seg = np.pad(seg, ((0, 0), (0, p - seg.shape[1]), (0, 0)), constant_values=0.0)  # (n, P, P)
    return np.repeat(seg[:, None], config.channels, axis=1).astype(np.float32)


@torch.no_grad()
def point_vectors(model: AudioAutoencoder, m: np.ndarray, batch: int = 64, shifts: int = 4) -> np.ndarray:
    """(T, 512) encoder vectors, one per MFCC time point.

    The encoder reads 16-point segments; a point near a segment's edge sees less context than one in its
    middle. So the segmentation is run ``shifts`` times, each moved by 16 / shifts points, and every point's
    vectors are averaged: no point is always at an edge, and the weights have no 1.6 s rhythm of their own."""
    p = model.config.points
    total = np.zeros((m.shape[1], model.config.feat_dim))
    for k in range(shifts):
        offset = k * p // shifts
        shifted = np.pad(m, ((0, 0), (offset, 0)), mode="edge") if offset else m
        x = torch.from_numpy(model.input_for(shifted))
        out = torch.cat([model.encode(x[i:i + batch]) for i in range(0, len(x), batch)])
        total += out.reshape(-1, model.config.feat_dim)[offset:offset + m.shape[1]].numpy()
    return (total / shifts).astype(np.float32)


def interpolate_points(values: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    """Resample per-point values (T, ...) (point t at 0.1 t + POINT_CENTRE s, its FFT frame's centre) to n_frames
    video frames (frame k at k / fps): each frame is the distance-weighted average of the two points around
    it (the nearer one weighs more); before the first / after the last point, that point."""
    values = np.asarray(values, np.float64)
    t_points = np.arange(len(values)) * POINT_SECONDS + POINT_CENTRE
    t_frames = np.arange(n_frames) / float(fps)
    pos = np.clip(np.interp(t_frames, t_points, np.arange(len(values), dtype=np.float64)), 0, len(values) - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(values) - 1)
    w = (pos - lo).reshape(-1, *([1] * (values.ndim - 1)))
    return (1 - w) * values[lo] + w * values[hi]


def initial_parameters(vectors: np.ndarray) -> np.ndarray:
    """Spec step 2: each time point's vector averaged over its elements."""
    return np.asarray(vectors, np.float64).mean(axis=-1)


def map_to_weight(initial: np.ndarray, weight_low: float, weight_high: float) -> np.ndarray:
    """Spec step 3: into [0, 1] with the corpus-calibrated bounds (``model.weight_bounds()``; clipped)."""
    span = max(weight_high - weight_low, 1e-9)
    return np.clip((np.asarray(initial, np.float64) - weight_low) / span, 0.0, 1.0)


def frame_weights(model: AudioAutoencoder, audio: np.ndarray, fps: float, sr: int = SAMPLE_RATE,
                  n_frames: int | None = None) -> np.ndarray:
    """(n_frames,) parameter-adjustment weight in [0, 1] per output video frame (default: as long as the audio)."""
    if n_frames is None:
        n_frames = int(np.floor(len(audio) / sr * fps + 1e-6))
    m = mfcc_points(audio, sr, model.config.n_mfcc)
    if m.shape[1] == 0:
        return np.zeros(n_frames)
    vectors = point_vectors(model, m)
    return map_to_weight(initial_parameters(interpolate_points(vectors, n_frames, fps)), *model.weight_bounds())


# ------------------------------------------------------------------------------------------------
# fitting the bounds (training/train_audio_encoder.py calls these; they belong to the shipped model)
# ------------------------------------------------------------------------------------------------
def calibrate_mfcc(model: AudioAutoencoder, mfccs) -> None:
    """Set the model's MFCC bounds to the MFCC_PERCENTILES of each coefficient over the (13, T) MFCC points of
    the training tracks ``mfccs``."""
    pooled = np.concatenate(list(mfccs), axis=1)
    lo, hi = (np.percentile(pooled, q, axis=1).astype(np.float64) for q in MFCC_PERCENTILES)
    model.mfcc_low.copy_(torch.from_numpy(lo))
    model.mfcc_high.copy_(torch.from_numpy(hi))


def calibrate_weights(model: AudioAutoencoder, mfccs) -> np.ndarray:
    """Set the model's weight bounds to the WEIGHT_PERCENTILES of every training point's mean vector (the MFCC
    points of the training tracks ``mfccs``); returns those means."""
    pooled = np.concatenate([initial_parameters(point_vectors(model, m)) for m in mfccs])
    lo, hi = (float(v) for v in np.percentile(pooled, WEIGHT_PERCENTILES))
    model.weight_low.fill_(lo)
    model.weight_high.fill_(hi)
    return pooled
