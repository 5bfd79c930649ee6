"""The soundtrack generator of spec 01 and its difference discriminator (the claimed GAN variant b).

**Generator** (``SoundtrackGenerator``): a 1-D convolutional U-Net over the steps of a 16th-note grid, the
spec's "convolutional network over audio and video (conv, pooling, unpooling, deconvolution layers)" as a
conditional GAN generator. Its input per step (:mod:`media.score`, ``IN_CHANNELS``) is the hum (pitch class,
voicing, onset), the position in the bar, the video's controls (event strength, energy, brightness,
colourfulness), the hum's key and slow noise; encoder blocks of two convolutions (kernel 5, group norm,
GELU) with max-pooling by 2 three times, a bottleneck of dilated convolutions (a receptive field of several
bars), and decoder blocks that un-pool with transposed convolutions ("deconvolution") and join the encoder's
skip connections. Its output per step (``OUT_CHANNELS``) is the arrangement: the lead's pitch class or rest
and onsets, the chord's pitch classes, the bass and its onsets, the accompaniment's onsets, dynamics and
register. :func:`media.score.decode` turns it into notes and :mod:`media.synth` renders them with a General
MIDI SoundFont, so what the user hears is this network's output.

Melody conditioning follows MusicGen-melody in spirit (a pitch-class sequence of the reference melody as
input, no transposition); video conditioning follows CMT (timing and strength controls per step).

**Discriminator** (``DifferenceDiscriminator``): a regression network that reads a generated (or real)
arrangement beside the sample's matching arrangement and its conditions, and outputs their DIFFERENCE, 0..1
(convolutions, pooling, a mean over time, a linear unit and a sigmoid). It is trained by least squares to
regress the measured difference (:func:`difference`: lead, chord, bass, onset and dynamics disagreement) of
three kinds of pair: (generated, matching), (a faithful variant of the matching music, matching) and
(another sample's music, matching). A discriminator trained to output a constant 1 for every generated
sample (the LSGAN reading) told them apart within 20 iterations and its difference never came down, so no
loss threshold could ever stop training; a regressed difference is what the claim describes and it falls as
the generator improves. The generator is trained to make the predicted difference small (through the
decoded outputs, straight-through), beside its reconstruction losses. Training alternates (``training/train_soundtrack.py``) and stops when the generator's difference loss
has stayed under a threshold for a number of consecutive iterations (spec 01, variant b).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from media import score

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "soundtrack"
MODEL_TYPE = "soundtrack_generator"
EVENT_ONSET_WEIGHT = 3.0  # onset losses weigh 4x on steps with a full-strength video event
DEPTH = 3  # pooling levels: sequences are padded to a multiple of 2**DEPTH


class Block(nn.Module):
    """Two convolutions (kernel 5, dilation ``dilation``) with group norm and GELU, and a residual path."""

    def __init__(self, c_in: int, c_out: int, dilation: int = 1, dropout: float = 0.0):
        super().__init__()
        pad = 2 * dilation
        self.net = nn.Sequential(
            nn.Conv1d(c_in, c_out, 5, padding=pad, dilation=dilation), nn.GroupNorm(8, c_out), nn.GELU(),
            nn.Dropout(dropout),
            nn.Conv1d(c_out, c_out, 5, padding=pad, dilation=dilation), nn.GroupNorm(8, c_out), nn.GELU())
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) + self.skip(x)


def _with_steps(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(B, T, C)`` -> ``(B, C, T')`` zero-padded to a multiple of ``2 ** DEPTH`` steps, and ``T``."""
    t = x.shape[1]
    pad = (-t) % (2 ** DEPTH)
    return F.pad(x.transpose(1, 2), (0, pad)), t


class SoundtrackGenerator(nn.Module):
    """(B, T, IN_CHANNELS) conditions -> (B, T, OUT_CHANNELS) logits; see the module docstring."""

    def __init__(self, in_channels: int = score.IN_CHANNELS, out_channels: int = score.OUT_CHANNELS,
                 widths: tuple[int, ...] = (48, 64, 96, 128), dropout: float = 0.1):
        super().__init__()
        if len(widths) != DEPTH + 1:
            raise ValueError(f"widths needs {DEPTH + 1} entries")
        self.config = {"in_channels": in_channels, "out_channels": out_channels, "widths": list(widths),
                       "dropout": dropout}
        self.down = nn.ModuleList()
        c = in_channels
        for w in widths[:-1]:
            self.down.append(Block(c, w, dropout=dropout))
            c = w
        self.pool = nn.MaxPool1d(2)
        self.bottleneck = nn.Sequential(Block(c, widths[-1], dilation=1, dropout=dropout),
                                        Block(widths[-1], widths[-1], dilation=2, dropout=dropout),
                                        Block(widths[-1], widths[-1], dilation=4, dropout=dropout))
        self.unpool = nn.ModuleList()
        self.up = nn.ModuleList()
        c = widths[-1]
        for w in reversed(widths[:-1]):
            self.unpool.append(nn.ConvTranspose1d(c, w, 2, stride=2))
            self.up.append(Block(2 * w, w, dropout=dropout))
            c = w
        self.head = nn.Conv1d(c, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, t = _with_steps(x)
        skips = []
        for block in self.down:
            h = block(h)
            skips.append(h)
            h = self.pool(h)
        h = self.bottleneck(h)
        for unpool, block in zip(self.unpool, self.up):
            h = block(torch.cat([unpool(h), skips.pop()], 1))
        return self.head(h)[:, :, :t].transpose(1, 2)

    @staticmethod
    def probabilities(logits: torch.Tensor) -> torch.Tensor:
        """Softmax over the lead and bass groups, sigmoid elsewhere."""
        p = torch.sigmoid(logits)
        return torch.cat([logits[..., score.OUT_LEAD].softmax(-1), p[..., 13:26],
                          logits[..., score.OUT_BASS].softmax(-1), p[..., 39:]], -1)

    @staticmethod
    def hard(probs: torch.Tensor) -> torch.Tensor:
        """Decoded (one-hot and thresholded) outputs, with the probabilities' gradient passed straight
        through: what the discriminator sees of the generator, shaped like a real arrangement."""
        lead = F.one_hot(probs[..., score.OUT_LEAD].argmax(-1), 13).to(probs.dtype)
        bass = F.one_hot(probs[..., score.OUT_BASS].argmax(-1), 13).to(probs.dtype)
        binary = (probs > 0.5).to(probs.dtype)
        hard = torch.cat([lead, binary[..., 13:26], bass, binary[..., 39:41], probs[..., 41:]], -1)
        return probs + (hard - probs).detach()

    @torch.no_grad()
    def generate(self, cond: np.ndarray) -> np.ndarray:
        """Probabilities ``(T, OUT_CHANNELS)`` for one ``(T, IN_CHANNELS)`` condition sequence."""
        self.eval()
        x = torch.as_tensor(np.asarray(cond, np.float32))[None]
        return self.probabilities(self(x))[0].numpy()

    def save_pretrained(self, directory: str | Path, metadata: dict | None = None) -> None:
        """config.json + model.safetensors + README.md (model card)."""
        from models.pretrained import save_folder

        save_folder(directory, MODEL_TYPE, self.config, self.state_dict(), metadata, self.model_card(metadata or {}))

    @classmethod
    def from_pretrained(cls, dir_or_repo: str | Path = DEFAULT_WEIGHTS, map_location: str = "cpu",
                        subfolder: str | None = None) -> SoundtrackGenerator:
        """Load from a local folder or a Hugging Face Hub repo id (optionally its ``subfolder``)."""
        from models.pretrained import load_folder, load_state

        _, raw, state = load_folder(dir_or_repo, map_location, subfolder)
        if raw.get("model_type") != MODEL_TYPE:
            raise ValueError(f"{dir_or_repo} holds a {raw.get('model_type')!r} model, not {MODEL_TYPE!r}")
        kwargs = {k: raw[k] for k in ("in_channels", "out_channels", "dropout") if k in raw}
        if "widths" in raw:
            kwargs["widths"] = tuple(raw["widths"])
        if kwargs.get("in_channels", score.IN_CHANNELS) != score.IN_CHANNELS:
            raise ValueError("the model was trained on another condition layout than media.score builds")
        model = cls(**kwargs)
        load_state(model, state, raw, {})
        model.training_metadata = raw.get("training", {})
        return model.eval()

    def model_card(self, metadata: dict) -> str:
        """The Hugging Face model card (README.md); ``metadata`` as saved in config.json."""
        from models.cards import render

        n_params = sum(p.numel() for p in self.parameters())
        data = metadata.get("data", {})
        stop = metadata.get("stop", {})
        sources = ", ".join(f"{k} {v}" for k, v in data.get("sources", {}).items()) or "not recorded"
        training = [
            (f"- Samples by source: {sources}; {data.get('train_songs', '?')} training songs, "
             f"{data.get('test_songs', '?')} held-out songs (whole songs)."),
            ("- **Bootstrap.** No person has yet paired a hum and a video with music. The bundled weights learned "
             "from POP909's melody-and-accompaniment pairs: the sample audio is a hum-like rendition of the melody "
             "(tempo wander, jitter, wrong and slurred notes) and the video's controls are read from the music, as "
             "CMT does (`training/soundtrack_data.py`)."),
            (f"- Augmentation (the spec's claim): threshold {metadata.get('augment_threshold') or 'none'}, "
             f"{data.get('augmented', 0)} added samples."),
            ("- GAN training, alternating, difference discriminator (variant b): stopped by "
             f"{stop.get('reason', 'not recorded')} after {stop.get('iterations', '?')} iterations."),
        ]
        return render(
            title="AV Studio soundtrack generator (spec 01)",
            summary=f"Generates an arrangement (lead, chords, bass, accompaniment rhythm, dynamics) on a 16th-note "
                    f"grid from a hummed melody and a video's events and energy. {n_params:,} parameters.",
            tags=["music-generation", "symbolic-music", "video", "gan"],
            pipeline_tag="text-to-audio",
            intended_use="Personal background music for short videos in AV Studio's Soundtrack tab and "
                         "`python -m pipelines.soundtrack`. A sketch for a creator, not a finished production.",
            usage=CARD_USAGE,
            architecture=__doc__.split("\n\n", 1)[1].replace("\n", " "),
            training=training,
            metadata=metadata,
            evaluate_with="`python -m training.train_soundtrack` (held-out POP909 songs) and "
                          "`python -m benchmarks.soundtrack` (real hums and videos: chroma following, event "
                          "alignment, preset conditions, speed)",
            limitations="Learned from Chinese pop piano arrangements only (POP909): one style, no drums. "
                        "The video controls were learned from music-derived stand-ins, not from real videos "
                        "paired with music. On real videos the music meets the events 1.69 times as often as randomly "
                        "shifted music only with the decoder's accents (louder notes on events, softer elsewhere); "
                        "without them the busy music gave 1.43. Its loudness follows the video's motion only weakly "
                        "(r 0.14 per 1 s window). "
                        "Sung ornaments faster than a 16th note are smoothed away.",
            data_names=metadata.get("data_names", ["pop909"]))


class DifferenceDiscriminator(nn.Module):
    """(candidate, matching, conditions) -> their difference in 0..1 (see the module docstring)."""

    def __init__(self, out_channels: int = score.OUT_CHANNELS, in_channels: int = score.IN_CHANNELS,
                 widths: tuple[int, ...] = (48, 64, 96)):
        super().__init__()
        layers: list[nn.Module] = []
        c = 2 * out_channels + in_channels
        for i, w in enumerate(widths):
            layers += [Block(c, w)] + ([nn.MaxPool1d(2)] if i < len(widths) - 1 else [])
            c = w
        self.net = nn.Sequential(*layers)
        self.out = nn.Linear(c, 1)

    def forward(self, candidate: torch.Tensor, matching: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = torch.cat([candidate, matching, cond], -1).transpose(1, 2)
        return torch.sigmoid(self.out(self.net(x).mean(-1))).squeeze(-1)


@torch.no_grad()
def difference(candidate: torch.Tensor, matching: torch.Tensor, lead_known: torch.Tensor) -> torch.Tensor:
    """The measured difference (B,) of two decoded arrangements, 0 (same) .. 1, that the discriminator
    learns to regress: the mean of the lead's pitch-class mismatch (where the lead is known), one minus the
    chord pitch classes' F1, the bass mismatch, one minus the F1 of the accompaniment's and bass onsets
    (within one step), and the mean dynamics difference."""
    def mismatch(group: slice) -> torch.Tensor:
        return (candidate[..., group].argmax(-1) != matching[..., group].argmax(-1)).float().mean(1)

    def f1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # two empty sets agree
        total = a.sum((1, 2)) + b.sum((1, 2))
        return torch.where(total > 0, 2 * (a * b).sum((1, 2)) / total.clamp(min=1), torch.ones_like(total))

    def near(on: torch.Tensor) -> torch.Tensor:  # onsets widened to +-1 step
        return F.max_pool1d(on.transpose(1, 2), 3, 1, 1).transpose(1, 2)

    c_on, m_on = (candidate[..., 39:41] > 0.5).float(), (matching[..., 39:41] > 0.5).float()
    n_c, n_m = c_on.sum((1, 2)), m_on.sum((1, 2))
    precision = torch.where(n_c > 0, (c_on * near(m_on)).sum((1, 2)) / n_c.clamp(min=1), (n_m == 0).float())
    recall = torch.where(n_m > 0, (m_on * near(c_on)).sum((1, 2)) / n_m.clamp(min=1), (n_c == 0).float())
    onset_f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-9)
    known = lead_known.float()
    parts = torch.stack([mismatch(score.OUT_LEAD) * known,
                         1 - f1((candidate[..., 14:26] > 0.5).float(), (matching[..., 14:26] > 0.5).float()),
                         mismatch(score.OUT_BASS), 1 - onset_f1,
                         (candidate[..., 41] - matching[..., 41]).abs().mean(1)], 1)
    return (parts.sum(1)) / (4 + known)


def reconstruction_losses(logits: torch.Tensor, target: torch.Tensor, lead_known: torch.Tensor,
                          event: torch.Tensor | None = None) -> dict:
    """Per-part losses of generator ``logits`` against a real arrangement ``target`` (both ``(B, T, OUT)``):
    cross-entropy for the lead and the bass, binary cross-entropy for onsets and chord pitch classes, L1 for
    dynamics and register. ``lead_known`` (B,) masks the lead for samples whose matching music has none.
    ``event`` (B, T), the video's event strength per step: the accompaniment's and bass onsets weigh
    ``1 + EVENT_ONSET_WEIGHT * event`` there, so the music strikes with the video."""
    def ce(group: slice) -> torch.Tensor:
        return F.cross_entropy(logits[..., group].reshape(-1, 13), target[..., group].argmax(-1).reshape(-1),
                               reduction="none").view(target.shape[:2]).mean(1)

    def bce(index) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits[..., index], target[..., index], reduction="none")

    mask = lead_known.float()
    lead = (ce(score.OUT_LEAD) + bce(score.OUT_LEAD_ON).mean(1)) * mask
    probs = torch.sigmoid(logits)
    weight = 1.0 if event is None else 1.0 + EVENT_ONSET_WEIGHT * event
    return {"lead": lead.sum() / mask.sum().clamp(min=1),
            "chord": bce(score.OUT_CHORD).mean(),
            "bass": ce(score.OUT_BASS).mean() + (bce(score.OUT_BASS_ON) * weight).mean(),
            "comp": (bce(score.OUT_COMP_ON) * weight).mean(),
            "dynamics": (probs[..., 41:] - target[..., 41:]).abs().mean()}


CARD_USAGE = """```python
import numpy as np
from media import score
from models.soundtrack import SoundtrackGenerator

model = SoundtrackGenerator.from_pretrained("models/weights/soundtrack")  # or a Hub repo id
cond = score.condition(melody_roll, video_roll, "C major", np.random.default_rng(0))
probs = model.generate(cond)                     # (steps, 43)
notes = score.decode(probs, step_times).all()    # media.synth.NoteEvent list
```
Or end to end: `python -m pipelines.soundtrack --hum hum.wav --video clip.mp4 --out out.mp4`."""

# Headline figures of the bundled weights for their model card (models.cards.refresh_bundled).
CARD_EVALUATION = [
    {"measure": "follows the hum: chroma cosine, real hums x videos", "results": "soundtrack.json",
     "key": "quality.follows_hum.chroma_cosine", "target": ">= 0.5"},
    {"measure": "same, another hum's output (baseline)", "results": "soundtrack.json",
     "key": "quality.follows_hum.other_hum_baseline"},
    {"measure": "video events within 70 ms of an onset or beat", "results": "soundtrack.json",
     "key": "quality.follows_video.share_within_70ms"},
    {"measure": "same, output shifted randomly (baseline)", "results": "soundtrack.json",
     "key": "quality.follows_video.shifted_baseline"},
    {"measure": "their ratio", "results": "soundtrack.json", "key": "quality.follows_video.ratio", "target": ">= 1.5"},
    {"measure": "loudness vs the video's motion energy, Pearson r per 1 s", "results": "soundtrack.json",
     "key": "quality.follows_video.loudness_energy_r"},
    {"measure": "same, energy rotated at random (baseline)", "results": "soundtrack.json",
     "key": "quality.follows_video.loudness_energy_r_shifted"},
    {"measure": "outputs meeting the preset conditions (of 54)", "results": "soundtrack.json",
     "key": "quality.preset_conditions.met"},
    {"measure": "held-out POP909 lead pitch-class accuracy", "results": "soundtrack_train.json",
     "key": "held_out.lead_acc"},
    {"measure": "same, copying the hum (baseline)", "results": "soundtrack_train.json", "key": "held_out.lead_copy_acc"},
    {"measure": "held-out chord pitch-class F1", "results": "soundtrack_train.json", "key": "held_out.chord_f1"},
    {"measure": "same, the key's tonic triad (baseline)", "results": "soundtrack_train.json",
     "key": "held_out.chord_tonic_f1"},
]
