"""Audio feature network of spec 03 (music-driven face): an MFCC autoencoder whose encoder gives one 512-d
vector per 100 ms, and the per-frame expression weight derived from those vectors.

Input (spec "Audio features", pre-processing), made by :func:`mfcc_points` and :func:`encoder_input`:

* MFCC, 13 coefficients, one time point per 100 ms (every 100 ms, a 100 ms window in a 128 ms FFT frame, 16 kHz);
* cut into segments of ``points`` = 16 time points (1.6 s); each 13 x 16 segment is padded along the
  coefficient axis with 0 to a square 16 x 16, replicated to the encoder's 3 channels and normalised
  into [0, 1] with per-coefficient bounds measured on the training corpus (``mfcc_low``/``mfcc_high``):
  fixed bounds, so a soft track stays low and a loud one high (a per-track min-max would erase that).

:class:`AudioAutoencoder`: the encoder is 8 identical-kind blocks (Conv2d + BatchNorm + ReLU) that fold
the coefficient axis to 1 while keeping time, ending in 512 channels: one 512-d vector per time point.
The decoder is 8 blocks of ConvTranspose2d + BatchNorm + ReLU back to the 3 x 16 x 16 input. Trained
without labels (``training/train_audio_encoder.py``) on reconstruction; only the encoder is bundled.

Weight per video frame (spec "From audio features to a weight per frame", :func:`frame_weights`):
the vectors are interpolated to the output frame rate (each frame's vector a distance-weighted average of
the two time points around it), each vector is averaged over its 512 elements, and that mean is mapped
into [0, 1] with bounds calibrated once on the training corpus (``weight_low``/``weight_high``: the
corpus's 5th and 95th percentiles), so calm, soft music gives small weights and intense music large.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "audio_encoder"
SAMPLE_RATE = 16000
POINT_SECONDS = 0.1  # one time point per 100 ms


@dataclass
class AudioEncoderConfig:
    n_mfcc: int = 13
    points: int = 16  # time points per segment = padded side of the square input
    channels: int = 3  # the single MFCC channel replicated to this many
    widths: tuple = (32, 64, 64, 128, 128, 256, 256, 512)  # output channels of the 8 encoder blocks
    mfcc_low: list = field(default_factory=lambda: [0.0] * 13)  # per-coefficient bounds -> [0, 1]
    mfcc_high: list = field(default_factory=lambda: [1.0] * 13)
    weight_low: float = 0.0  # mean feature -> weight 0 (corpus 5th percentile)
    weight_high: float = 1.0  # mean feature -> weight 1 (corpus 95th percentile)

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

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 16, 16) in [0, 1] -> (B, 16, 512): one vector per time point."""
        return self.encoder(x).squeeze(2).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of the input (training)."""
        return self.decoder(self.encoder(x))

    # -- persistence (diffusers-style) ---------------------------------------------------------
    def save_pretrained(self, directory: str | Path, metadata: dict | None = None, with_decoder: bool = False) -> None:
        """config.json + model.safetensors; the decoder is left out unless asked (inference needs the encoder)."""
        from models.pretrained import save_folder

        state = {k: v for k, v in self.state_dict().items() if with_decoder or not k.startswith("decoder.")}
        save_folder(directory, "audio_encoder", asdict(self.config), state, metadata)

    @classmethod
    def from_pretrained(cls, dir_or_repo: str | Path = DEFAULT_WEIGHTS, map_location: str = "cpu") -> AudioAutoencoder:
        """Load from a local folder (config.json + model.safetensors) or a Hugging Face Hub repo id."""
        from models.pretrained import config_fields, load_folder

        _, raw, state = load_folder(dir_or_repo, map_location)
        fields = config_fields(raw, AudioEncoderConfig)
        fields["widths"] = tuple(fields.get("widths", AudioEncoderConfig.widths))
        has_decoder = any(k.startswith("decoder.") for k in state)
        model = cls(AudioEncoderConfig(**fields), with_decoder=has_decoder)
        model.load_state_dict(state)
        model.training_metadata = raw.get("training", {})
        return model.eval()


# ------------------------------------------------------------------------------------------------
# audio -> encoder input -> vectors -> weights (pure functions, explicit sample rates)
# ------------------------------------------------------------------------------------------------
N_FFT_SECONDS = 0.128  # the FFT frame (2048 samples at 16 kHz) that each 100 ms point's spectrum is taken over
POINT_CENTRE = N_FFT_SECONDS / 2  # seconds from a point's start to the centre of its FFT frame


def mfcc_points(audio: np.ndarray, sr: int = SAMPLE_RATE, n_mfcc: int = 13) -> np.ndarray:
    """(n_mfcc, T) MFCC with one time point per 100 ms, T = floor(duration / 0.1 s): point t starts at
    0.1 t s and its spectrum is the 128 ms FFT frame from there (the audio is padded with silence at the
    end so that the last full 100 ms has its point). Audio shorter than 100 ms gives T = 0."""
    import librosa

    hop = round(POINT_SECONDS * sr)
    n_fft = round(N_FFT_SECONDS * sr)
    audio = np.asarray(audio, np.float32)
    if len(audio) < hop:
        return np.zeros((n_mfcc, 0), np.float32)
    n_points = len(audio) // hop
    padded = np.pad(audio[:n_points * hop], (0, n_fft - hop))
    m = librosa.feature.mfcc(y=padded, sr=sr, n_mfcc=n_mfcc, n_fft=n_fft, win_length=hop, hop_length=hop,
                             center=False, n_mels=40, fmax=sr / 2)
    return m[:, :n_points].astype(np.float32)


def normalise_mfcc(m: np.ndarray, config: AudioEncoderConfig) -> np.ndarray:
    """Per-coefficient fixed bounds -> [0, 1] (clipped)."""
    lo = np.asarray(config.mfcc_low, np.float32)[:, None]
    hi = np.asarray(config.mfcc_high, np.float32)[:, None]
    return np.clip((m - lo) / np.maximum(hi - lo, 1e-6), 0.0, 1.0)


def encoder_input(m: np.ndarray, config: AudioEncoderConfig) -> np.ndarray:
    """(n_segments, channels, P, P) float32 from a (13, T) MFCC: normalised, cut into segments of P points
    (the last one padded by repeating its final point), each padded with 0 to P coefficient rows, replicated."""
    p = config.points
    n = max(1, -(-m.shape[1] // p))
    x = normalise_mfcc(m, config)
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
        x = torch.from_numpy(encoder_input(shifted, model.config))
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


def map_to_weight(initial: np.ndarray, config: AudioEncoderConfig) -> np.ndarray:
    """Spec step 3: into [0, 1] with the corpus-calibrated bounds (clipped)."""
    span = max(config.weight_high - config.weight_low, 1e-9)
    return np.clip((np.asarray(initial, np.float64) - config.weight_low) / span, 0.0, 1.0)


def frame_weights(model: AudioAutoencoder, audio: np.ndarray, fps: float, sr: int = SAMPLE_RATE,
                  n_frames: int | None = None) -> np.ndarray:
    """(n_frames,) parameter-adjustment weight in [0, 1] per output video frame (default: as long as the audio)."""
    if n_frames is None:
        n_frames = int(np.floor(len(audio) / sr * fps + 1e-6))
    m = mfcc_points(audio, sr, model.config.n_mfcc)
    if m.shape[1] == 0:
        return np.zeros(n_frames)
    vectors = point_vectors(model, m)
    return map_to_weight(initial_parameters(interpolate_points(vectors, n_frames, fps)), model.config)
