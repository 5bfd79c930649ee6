"""Voice over music: a speech segment with a background-music (BGM) track under it, ducked while the voice speaks.

The BGM-fit annotation task plays a speech segment with a music track under it "mixed at matched loudness and
ducked while the voice speaks", and logs the gains. :func:`duck_mix` is that mix, as a pure function of two
mono signals at one sample rate:

1. **Matched loudness.** The integrated loudness of each signal is measured with ``pyloudnorm`` (ITU-R
   BS.1770, LUFS); the speech is gained to ``target_lufs`` and the music to ``target_lufs + bgm_offset_lu``.
   The music is measured over the part that plays: it is first looped (with a short fade at each seam) or
   trimmed to the length of the speech.
2. **Ducking.** Voice activity comes from the speech's short-time RMS (30 ms windows every 10 ms): a frame is
   voiced when it is no more than :data:`VOICE_THRESHOLD_LU` below the speech's loudness. Activity is held for
   :data:`HANGOVER_S` after each voiced frame, so the short pauses between words stay ducked, and starts
   ``attack_s`` early, so the music is already down when the first syllable starts. The music is gained by
   ``duck_db`` while the voice is active; it fades down (linearly in dB) over ``attack_s`` and back up over
   ``release_s``.
3. **Peak limit.** The sum (and each gained track alone) is scaled down when needed, so that no sample
   exceeds :data:`CEILING_DBFS`; the scale is logged as ``peak_gain_db``.

:func:`mix_files` does the same with files: it decodes both with :mod:`media.io`, writes the mix as WAV and,
beside it, each gained track alone (``<name>_speech.wav``, ``<name>_bgm.wav``, the music ducked as in the
mix), so either can be played at the loudness heard in the mix.

Silence (loudness of -inf LUFS: nothing above BS.1770's -70 LUFS gate) cannot be matched to a target and
raises :class:`MediaError`.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pyloudnorm

from media.io import MediaError, probe, read_audio, write_audio

__all__ = ["CEILING_DBFS", "HANGOVER_S", "VOICE_THRESHOLD_LU", "duck_mix", "mix_files", "voice_activity"]

PathLike = str | os.PathLike

# A frame is voiced when its RMS (dBFS) is at most this far below the speech's integrated loudness (LUFS).
VOICE_THRESHOLD_LU = 18.0
# Voice activity is held this long after a voiced frame: pauses between words stay ducked.
HANGOVER_S = 0.3
# Peak ceiling of the mix and of each gained track (dBFS); a little headroom for lossy re-encoding.
CEILING_DBFS = -1.0
# Analysis frames of the voice detector (s).
_WINDOW_S, _HOP_S = 0.03, 0.01
# Fade at the start and end of each copy of the music and at the end of a trimmed track (s): no clicks.
_FADE_S = 0.01
# BS.1770 measures 400 ms blocks: a shorter signal has no loudness.
_BLOCK_S = 0.4


def _db(gain: float) -> float:
    return 20.0 * math.log10(gain) if gain > 0 else -math.inf


def _gain(db: float) -> float:
    return 10.0 ** (db / 20.0)


def _mono(signal: np.ndarray, what: str) -> np.ndarray:
    """``signal`` as a finite 1-D float64 array, or MediaError naming ``what``."""
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 1:
        raise MediaError(f"the {what} must be a 1-D mono signal, got shape {x.shape}")
    if not len(x):
        raise MediaError(f"the {what} is empty")
    if not np.all(np.isfinite(x)):
        raise MediaError(f"the {what} contains NaN or infinite samples")
    return x


def _loudness(meter: pyloudnorm.Meter, x: np.ndarray, sr: int, what: str) -> float:
    """Integrated loudness (LUFS) of ``x``; MediaError when it is too short or silent."""
    if len(x) < _BLOCK_S * sr:
        raise MediaError(f"the {what} is too short to measure its loudness ({len(x) / sr:.2f} s; "
                         f"at least {_BLOCK_S} s)")
    lufs = meter.integrated_loudness(x)
    if not math.isfinite(lufs):
        raise MediaError(f"the {what} is silent: its loudness cannot be matched")
    return float(lufs)


def _fit_length(x: np.ndarray, n: int, sr: int) -> tuple[np.ndarray, bool]:
    """``x`` looped or trimmed to ``n`` samples, with short fades at its ends and at each loop seam.

    Returns the fitted signal and whether it was looped.
    """
    looped = len(x) < n
    fade = min(round(_FADE_S * sr), len(x) // 4)
    piece = x.copy()
    if fade:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, fade))
        if looped:  # fade each copy in and out: a short dip at the seams instead of a click
            piece[:fade] *= ramp
            piece[-fade:] *= ramp[::-1]
    fitted = np.resize(piece, n)  # repeats the copies end to end, or trims
    if fade and not looped:
        fitted[:fade] *= ramp
        fitted[-fade:] *= ramp[::-1]
    return fitted, looped


def frame_rms_db(x: np.ndarray, sr: int, window_s: float = _WINDOW_S, hop_s: float = _HOP_S) -> np.ndarray:
    """RMS (dBFS) of ``window_s`` windows every ``hop_s`` seconds, window ``i`` starting at ``i * hop``
    (the last ones shorter where the signal ends)."""
    win, hop = max(1, round(window_s * sr)), max(1, round(hop_s * sr))
    energy = np.concatenate([[0.0], np.cumsum(x * x)])
    starts = np.arange(0, len(x), hop)
    stops = np.minimum(starts + win, len(x))
    mean_square = (energy[stops] - energy[starts]) / np.maximum(stops - starts, 1)
    return 10.0 * np.log10(mean_square + 1e-12)


def voice_activity(speech: np.ndarray, sr: int, loudness_lufs: float, lead_s: float = 0.0) -> np.ndarray:
    """Voice activity of ``speech`` per ``_HOP_S`` frame (bool), with hangover and ``lead_s`` of lead-in.

    A frame is voiced when its RMS is at least ``loudness_lufs - VOICE_THRESHOLD_LU`` dBFS; activity is then
    extended :data:`HANGOVER_S` after, and ``lead_s`` before, each voiced frame.
    """
    voiced = frame_rms_db(np.asarray(speech, dtype=np.float64), sr) >= loudness_lufs - VOICE_THRESHOLD_LU
    after, before = round(HANGOVER_S / _HOP_S), round(lead_s / _HOP_S)
    # active[i] when a voiced frame lies in [i - after, i + before]: a running count over that span
    counts = np.concatenate([[0], np.cumsum(voiced)])
    idx = np.arange(len(voiced))
    lo, hi = np.clip(idx - after, 0, len(voiced)), np.clip(idx + before + 1, 0, len(voiced))
    return counts[hi] - counts[lo] > 0


def _duck_envelope(active: np.ndarray, n: int, sr: int, duck_db: float, attack_s: float,
                   release_s: float) -> np.ndarray:
    """Per-sample linear gain for the music: ``duck_db`` where ``active``, 0 dB elsewhere, moving between
    the two as a linear fade in dB that takes ``attack_s`` going down and ``release_s`` coming back up."""
    depth = abs(duck_db)
    down, up = depth * _HOP_S / attack_s, depth * _HOP_S / release_s  # dB per frame
    smooth = np.empty(len(active))
    level = 0.0
    for i, on in enumerate(active.tolist()):
        level = max(level - down, duck_db) if on else min(level + up, 0.0)
        smooth[i] = level
    frame_times = np.arange(len(smooth)) * _HOP_S + _WINDOW_S / 2
    return 10.0 ** (np.interp(np.arange(n) / sr, frame_times, smooth) / 20.0)


def _mix_tracks(speech: np.ndarray, bgm: np.ndarray, sr: int, *, target_lufs: float = -23.0,
                bgm_offset_lu: float = 0.0, duck_db: float = -12.0, attack_s: float = 0.05, release_s: float = 0.4
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """The mix, the gained speech and the gained, ducked music (float32), and the gains (see :func:`duck_mix`)."""
    if not (isinstance(sr, (int, np.integer)) and sr > 0):
        raise MediaError(f"the sample rate must be a positive whole number of Hz, got {sr!r}")
    if duck_db > 0 or not math.isfinite(duck_db):
        raise MediaError(f"duck_db must be a finite number of dB <= 0, got {duck_db}")
    if not (attack_s > 0 and release_s > 0):
        raise MediaError(f"attack_s and release_s must be positive, got {attack_s} and {release_s}")
    speech, bgm = _mono(speech, "speech"), _mono(bgm, "music")
    meter = pyloudnorm.Meter(sr)
    speech_lufs = _loudness(meter, speech, sr, "speech")
    bgm, looped = _fit_length(bgm, len(speech), sr)
    bgm_lufs = _loudness(meter, bgm, sr, "music")

    speech_gain_db = target_lufs - speech_lufs
    bgm_gain_db = target_lufs + bgm_offset_lu - bgm_lufs
    active = voice_activity(speech, sr, speech_lufs, lead_s=attack_s)
    envelope = _duck_envelope(active, len(speech), sr, duck_db, attack_s, release_s)
    speech_track = speech * _gain(speech_gain_db)
    bgm_track = bgm * _gain(bgm_gain_db) * envelope
    mix = speech_track + bgm_track

    peak = max(np.max(np.abs(mix)), np.max(np.abs(speech_track)), np.max(np.abs(bgm_track)))
    peak_gain_db = min(0.0, CEILING_DBFS - _db(peak)) if peak > 0 else 0.0
    scale = _gain(peak_gain_db)
    gains = {
        "speech_gain_db": speech_gain_db,
        "bgm_gain_db": bgm_gain_db,
        "duck_db": float(duck_db),
        "voice_fraction": float(np.mean(active)) if len(active) else 0.0,
        "peak_gain_db": peak_gain_db,
        "speech_lufs": speech_lufs,
        "bgm_lufs": bgm_lufs,
        "target_lufs": float(target_lufs),
        "bgm_offset_lu": float(bgm_offset_lu),
        "bgm_looped": looped,
        "duration_s": len(speech) / sr,
    }
    gains = {k: round(float(v), 3) if not isinstance(v, bool) else v for k, v in gains.items()}
    return ((mix * scale).astype(np.float32), (speech_track * scale).astype(np.float32),
            (bgm_track * scale).astype(np.float32), gains)


def duck_mix(speech: np.ndarray, bgm: np.ndarray, sr: int, *, target_lufs: float = -23.0,
             bgm_offset_lu: float = 0.0, duck_db: float = -12.0, attack_s: float = 0.05,
             release_s: float = 0.4) -> tuple[np.ndarray, dict]:
    """Mix ``speech`` over ``bgm`` at matched loudness, the music ducked while the voice speaks.

    ``speech`` and ``bgm`` are mono float arrays in [-1, 1] at ``sr`` Hz; the music is looped or trimmed to
    the speech's length. Returns ``(mix, gains)``: the mix as float32, as long as the speech, and a dict of
    what was done, rounded to 3 decimals:

    * ``speech_lufs``, ``bgm_lufs``: integrated loudness (LUFS) measured before any gain (the music over the
      part that plays);
    * ``speech_gain_db``, ``bgm_gain_db``: the gains that bring them to ``target_lufs`` and
      ``target_lufs + bgm_offset_lu``;
    * ``duck_db``: the music's gain while the voice is active (reached ``attack_s`` after it starts to fade
      down, left over ``release_s``); ``voice_fraction``: the share of time ducked;
    * ``peak_gain_db``: the final limiter's gain (0 or negative), applied to the whole mix;
    * ``target_lufs``, ``bgm_offset_lu``, ``bgm_looped``, ``duration_s``.

    Raises :class:`MediaError` when either signal is silent ("the speech is silent" / "the music is
    silent"), shorter than 0.4 s, or not a 1-D finite array.
    """
    mix, _, _, gains = _mix_tracks(speech, bgm, sr, target_lufs=target_lufs, bgm_offset_lu=bgm_offset_lu,
                                   duck_db=duck_db, attack_s=attack_s, release_s=release_s)
    return mix, gains


def _track_path(out: Path, which: str) -> Path:
    return out.with_name(f"{out.stem}_{which}{out.suffix}")


def mix_files(speech_path: PathLike, bgm_path: PathLike, out_path: PathLike, *, sr: int = 44100,
              max_seconds: float = 600.0, **options) -> dict:
    """Decode a speech file and a music file, :func:`duck_mix` them, and write the result as WAV files.

    Writes the mix to ``out_path`` (``.wav``) and, beside it, ``<stem>_speech.wav`` and ``<stem>_bgm.wav``:
    each track alone with the gains of the mix (the music ducked the same way, the same limiter gain), so
    either can be played at the loudness heard in the mix. ``max_seconds`` limits the speech; only as much music as the speech needs is decoded. ``options`` go to
    :func:`duck_mix`. Returns its gains dict plus ``mix_path``, ``speech_track_path`` and
    ``bgm_track_path``. Raises :class:`MediaError` with a message naming the file for unreadable input.
    """
    limit = float(max_seconds)
    out = Path(out_path)
    if out.suffix.lower() != ".wav":
        raise MediaError(f"the mix is written as WAV: give a .wav output, got '{out.name}'")
    info = probe(speech_path)
    if not info.has_audio:
        raise MediaError(f"'{Path(speech_path).name}' has no audio track")
    if info.duration > limit + 1:
        raise MediaError(f"the speech is {info.duration:.0f} s long; the limit is {limit:.0f} s")
    speech = read_audio(speech_path, sr=sr, end=limit + 1)
    if len(speech) > limit * sr:
        raise MediaError(f"the speech is {len(speech) / sr:.0f} s long; the limit is {limit:.0f} s")
    bgm = read_audio(bgm_path, sr=sr, end=len(speech) / sr)
    if not len(bgm):
        raise MediaError(f"'{Path(bgm_path).name}' has no audio samples")
    mix, speech_track, bgm_track, gains = _mix_tracks(speech, bgm, sr, **options)
    paths = {"mix_path": out, "speech_track_path": _track_path(out, "speech"),
             "bgm_track_path": _track_path(out, "bgm")}
    out.parent.mkdir(parents=True, exist_ok=True)
    for path, signal in zip(paths.values(), (mix, speech_track, bgm_track)):
        write_audio(path, signal, sr)
    return {**gains, **{k: str(v) for k, v in paths.items()}}
