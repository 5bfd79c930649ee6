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

The BGM-fit pipeline puts several tracks under one long voice. :func:`segment_mix` is that mix, built from
the same voice detector and ducking envelope (one copy of the code for both tasks):

1. **Segments.** ``(start_s, end_s, music)`` segments in time order; each track is looped or trimmed to the
   time it plays (as above). Touching segments that pass the *same* array object are one run: the track plays
   on without restarting. Where the track changes, the two are joined by an equal-power (sine/cosine)
   crossfade of ``crossfade_s`` (default 2 s) centred on the boundary, shorter when a run is shorter.
2. **Matched loudness per track.** Each run's music is gained to the speech's loudness + ``bgm_offset_lu``
   (default -4 LU), measured over the part that plays, so a change of track does not jump in level.
3. **Ducking.** As above, with the hangover ``hold_s`` (default 1.0 s) instead of :data:`HANGOVER_S`: with
   the default 0.5 s release the music is back at full level in pauses longer than about 1.5 s, and stays
   down in shorter ones. Default depth -15 dB, attack 0.08 s, release 0.5 s.
4. **Loudness and true peak.** The sum is gained to ``target_lufs`` (default -16 LUFS integrated, BS.1770).
   When its true peak (:func:`true_peak_db`, 4x oversampled) would then exceed ``true_peak_dbtp`` (default
   -1 dBTP), a look-ahead peak limiter takes the peaks down instead of the whole mix, so that both targets
   are met (speech peaks some 20 dB over its loudness: a plain gain down to the true-peak limit would leave
   it near -20 LUFS):

   * the limiter (:func:`_limited_blocks`): ceiling ``true_peak_dbtp - 0.5`` dB (-1.5 dBFS by default) on
     the true peak of each sample (4x oversampled, as the meter); 5 ms look-ahead, reached by a 5 ms ramp
     down (no step in the gain, no click); release exponential in dB, 50 ms time constant. Computed offline,
     so it needs no delay line: the output is as long as the input and aligned with it to the sample;
   * limiting lowers the loudness: the gain into the limiter is raised and the mix limited again (from the
     unlimited mix) at most twice, until the loudness is within 0.1 LU of the target (3 passes at most; on speech
     the target is met within 0.5 LU);
   * the true peak is measured last; where it is still over the limit (the gain moving between samples) the
     whole mix is gained down to just under it (``limiter_gain_db``, usually 0).

   A mix whose true peak is under the limit after the plain gain is not limited at all.

   Why not ``pedalboard`` (Spotify)? Its ``Limiter`` (JUCE's) is a loudness maximiser, not a ceiling: a
   fixed -10 dB 4:1 first stage, automatic make-up gain and a hard clip at 0 dBFS. Its ``BrickwallLimiter``
   (0.9.26) does hold a ceiling, aligned, but attacks instantly: the gain steps down by the whole reduction
   from one sample to the next 5 ms before a peak, a click where the peak rides on other sound (tone plus
   peaks: 20 dB more energy above 4 kHz than the input has, where this limiter adds none that shows). This
   one is some 40 lines of numpy, adds no native, GPL-3 dependency and works in the same blocks as the rest.

Long signals (an hour at 44.1 kHz is 159 M samples) are processed as float32 and in blocks: the loudness
meter (pyloudnorm's K-weighting filters and BS.1770 gating), the voice detector, the true-peak
oversampler and the limiter never hold more than a block of float64 or oversampled data (the limiter's
tries stream their blocks into the meter and keep nothing). :func:`mix_segments_file` does the
same with files, and writes a WAV, or the speech video's picture (copied, not re-encoded) with the mix.

The Soundtrack pipeline finishes its rendered music with :func:`finish_soundtrack`: exact length, a 5 ms
fade-in and a raised-cosine fade-out, the same loudness and true-peak stage (-14 LUFS, -1 dBTP by default),
and a noise check, :func:`spectral_flatness` against :data:`NOISE_FLATNESS_MAX`.

Silence (loudness of -inf LUFS: nothing above BS.1770's -70 LUFS gate) cannot be matched to a target and
raises :class:`MediaError`.
"""
from __future__ import annotations

import itertools
import math
import os
from pathlib import Path

import numpy as np
import pyloudnorm
import scipy.ndimage
import scipy.signal

from media.io import MediaError, mux_audio, probe, read_audio, write_audio

__all__ = ["CEILING_DBFS", "HANGOVER_S", "NOISE_FLATNESS_MAX", "VOICE_THRESHOLD_LU", "duck_mix", "finish_soundtrack",
           "mix_files", "mix_segments_file", "segment_mix", "spectral_flatness", "true_peak_db", "voice_activity"]

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
# Samples processed at a time by the long-signal loops (loudness, voice detector, envelope, true peak).
_CHUNK = 1 << 20
# Input samples of context on each side of a true-peak block; resample_poly's filter reaches 10.
_TP_PAD = 64
# The true-peak limit is met with this much to spare (dB): float32 rounding cannot push it over.
_TP_MARGIN_DB = 0.001
# The look-ahead peak limiter of segment_mix (see _limited_blocks): look-ahead (= attack ramp) and release
# time constant (s); its sample ceiling is this far (dB) under the true-peak limit, room for the overshoot
# between the samples; after the first pass the gain into it is adjusted at most this many times, until the
# loudness is this close (LU) to the target.
_LIMITER_LOOKAHEAD_S = 0.005
_LIMITER_RELEASE_S = 0.05
_LIMITER_HEADROOM_DB = 0.5
_LIMITER_ADJUSTMENTS = 2
# A release tail ends when it is this small (dB): a gain step of 1e-5, under 16-bit resolution at full scale.
_LIMITER_FLOOR_DB = 1e-4
_LOUDNESS_TOLERANCE_LU = 0.1
# A sample counts as limited (limited_fraction) when the limiter takes more than this off it (dB).
_LIMITED_DB = 0.1
# A segment may end this long (s) after the decoded speech (a container's duration vs its samples).
_END_SLACK_S = 0.05
# Outputs of mix_segments_file: WAV, or the speech file's picture with the mix (see media.io.mux_audio).
_VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv")


def _db(gain: float) -> float:
    return 20.0 * math.log10(gain) if gain > 0 else -math.inf


def _gain(db: float) -> float:
    return 10.0 ** (db / 20.0)


def _mono(signal: np.ndarray, what: str, dtype: type = np.float64) -> np.ndarray:
    """``signal`` as a finite 1-D array of ``dtype`` (float64 unless told), or MediaError naming ``what``."""
    x = np.asarray(signal, dtype=dtype)
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
    x = np.asarray(x)
    n_frames = -(-len(x) // hop)
    mean_square = np.empty(n_frames)
    per_chunk = max(1, _CHUNK // hop)  # frames per chunk: float64 copies of one chunk of samples at a time
    for f0 in range(0, n_frames, per_chunk):
        f1 = min(n_frames, f0 + per_chunk)
        a, b = f0 * hop, min(len(x), (f1 - 1) * hop + win)
        part = np.asarray(x[a:b], dtype=np.float64)
        energy = np.concatenate([[0.0], np.cumsum(part * part)])
        starts = np.arange(f0, f1) * hop - a
        stops = np.minimum(starts + win, b - a)
        mean_square[f0:f1] = (energy[stops] - energy[starts]) / np.maximum(stops - starts, 1)
    return 10.0 * np.log10(mean_square + 1e-12)


def voice_activity(speech: np.ndarray, sr: int, loudness_lufs: float, lead_s: float = 0.0,
                   hold_s: float = HANGOVER_S) -> np.ndarray:
    """Voice activity of ``speech`` per ``_HOP_S`` frame (bool), with ``hold_s`` of hangover and ``lead_s`` of
    lead-in.

    A frame is voiced when its RMS is at least ``loudness_lufs - VOICE_THRESHOLD_LU`` dBFS; activity is then
    extended ``hold_s`` (default :data:`HANGOVER_S`, 0.3 s) after, and ``lead_s`` before, each voiced frame.
    """
    voiced = frame_rms_db(speech, sr) >= loudness_lufs - VOICE_THRESHOLD_LU
    after, before = round(hold_s / _HOP_S), round(lead_s / _HOP_S)
    # active[i] when a voiced frame lies in [i - after, i + before]: a running count over that span
    counts = np.concatenate([[0], np.cumsum(voiced)])
    idx = np.arange(len(voiced))
    lo, hi = np.clip(idx - after, 0, len(voiced)), np.clip(idx + before + 1, 0, len(voiced))
    return counts[hi] - counts[lo] > 0


def _duck_levels(active: np.ndarray, duck_db: float, attack_s: float, release_s: float) -> np.ndarray:
    """The music's gain (dB) per ``_HOP_S`` frame: ``duck_db`` where ``active``, 0 dB elsewhere, moving
    between the two as a linear fade in dB that takes ``attack_s`` going down and ``release_s`` coming up."""
    depth = abs(duck_db)
    down, up = depth * _HOP_S / attack_s, depth * _HOP_S / release_s  # dB per frame
    smooth = np.empty(len(active))
    level = 0.0
    for i, on in enumerate(active.tolist()):
        level = max(level - down, duck_db) if on else min(level + up, 0.0)
        smooth[i] = level
    return smooth


def _frame_times(n_frames: int) -> np.ndarray:
    """Centre (s) of each voice-detector frame."""
    return np.arange(n_frames) * _HOP_S + _WINDOW_S / 2


def _duck_envelope(active: np.ndarray, n: int, sr: int, duck_db: float, attack_s: float,
                   release_s: float) -> np.ndarray:
    """Per-sample linear gain (float64) for the music, from :func:`_duck_levels`."""
    smooth = _duck_levels(active, duck_db, attack_s, release_s)
    return 10.0 ** (np.interp(np.arange(n) / sr, _frame_times(len(smooth)), smooth) / 20.0)


def _apply_levels(music: np.ndarray, levels_db: np.ndarray, sr: int) -> None:
    """Multiply ``music`` in place by the per-frame ``levels_db``, interpolated per sample, a block at a time."""
    times = _frame_times(len(levels_db))
    for a in range(0, len(music), _CHUNK):
        b = min(len(music), a + _CHUNK)
        gain = 10.0 ** (np.interp(np.arange(a, b) / sr, times, levels_db) / 20.0)
        music[a:b] *= gain.astype(music.dtype)


def _check_sample_rate(sr: int) -> None:
    if not (isinstance(sr, (int, np.integer)) and sr > 0):
        raise MediaError(f"the sample rate must be a positive whole number of Hz, got {sr!r}")


def _check_settings(sr: int, duck_db: float, attack_s: float, release_s: float) -> None:
    """MediaError for a bad sample rate, ducking depth, attack or release."""
    _check_sample_rate(sr)
    if duck_db > 0 or not math.isfinite(duck_db):
        raise MediaError(f"duck_db must be a finite number of dB <= 0, got {duck_db}")
    if not (attack_s > 0 and release_s > 0):
        raise MediaError(f"attack_s and release_s must be positive, got {attack_s} and {release_s}")


def _mix_tracks(speech: np.ndarray, bgm: np.ndarray, sr: int, *, target_lufs: float = -23.0,
                bgm_offset_lu: float = 0.0, duck_db: float = -12.0, attack_s: float = 0.05, release_s: float = 0.4
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """The mix, the gained speech and the gained, ducked music (float32), and the gains (see :func:`duck_mix`)."""
    _check_settings(sr, duck_db, attack_s, release_s)
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


def _read_speech(speech_path: PathLike, sr: int, limit: float) -> np.ndarray:
    """The mono speech of a file at ``sr``; MediaError for no audio track or more than ``limit`` seconds
    (refused from the container's duration before decoding, then checked on the decoded length)."""
    info = probe(speech_path)
    if not info.has_audio:
        raise MediaError(f"'{Path(speech_path).name}' has no audio track")
    if info.duration > limit + 1:
        raise MediaError(f"the speech is {info.duration:.0f} s long; the limit is {limit:.0f} s")
    speech = read_audio(speech_path, sr=sr, end=limit + 1)
    if len(speech) > limit * sr:
        raise MediaError(f"the speech is {len(speech) / sr:.0f} s long; the limit is {limit:.0f} s")
    return speech


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
    speech = _read_speech(speech_path, sr, limit)
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


# ----------------------------------------------------------------------------- long mixes: BGM segments


def _integrated_lufs(x: np.ndarray, sr: int) -> float:
    """Integrated loudness (LUFS) of the mono signal ``x``: ITU-R BS.1770 exactly as
    ``pyloudnorm.Meter(sr).integrated_loudness`` computes it (its K-weighting filters, 400 ms blocks every
    100 ms, -70 LUFS absolute and -10 LU relative gates), but filtered :data:`_CHUNK` samples at a time, so
    that a long float32 signal is never copied whole as float64. -inf when nothing passes the gates.
    ``x`` must be at least 0.4 s long."""
    return _stream_lufs((x[a:a + _CHUNK] for a in range(0, len(x), _CHUNK)), len(x), sr)


def _stream_lufs(blocks, n: int, sr: int) -> float:
    """:func:`_integrated_lufs` of a signal of ``n`` samples given as consecutive ``blocks`` (any lengths,
    adding up to ``n``): the signal itself need never exist whole (see :func:`_limited_blocks`)."""
    meter = pyloudnorm.Meter(sr)
    stages = [(f.b, f.a, f.passband_gain) for f in meter._filters.values()]
    states = [np.zeros(max(len(b), len(a)) - 1) for b, a, _ in stages]
    t_g, step = meter.block_size, 1.0 - meter.overlap
    j = np.arange(int(np.round((n / sr - t_g) / (t_g * step))) + 1)
    lo = (t_g * (j * step) * sr).astype(np.int64)  # pyloudnorm's block bounds, to the sample
    hi = np.minimum((t_g * (j * step + 1) * sr).astype(np.int64), n)
    bounds = np.unique(np.concatenate([lo, hi]))
    prefix = np.zeros(len(bounds))  # sum of the squared K-weighted signal before each bound
    total = 0.0
    a = 0
    for block in blocks:
        y = np.asarray(block, dtype=np.float64)
        b = a + len(y)
        if not len(y):
            continue
        for k, (num, den, gain) in enumerate(stages):
            y, states[k] = scipy.signal.lfilter(num, den, y, zi=states[k])
            y *= gain
        cumulative = total + np.cumsum(y * y)
        i0, i1 = np.searchsorted(bounds, [a, b], side="right")
        prefix[i0:i1] = cumulative[bounds[i0:i1] - a - 1]
        total = float(cumulative[-1])
        a = b
    if a != n:
        raise ValueError(f"the blocks hold {a} samples, not {n}")
    z = np.maximum(prefix[np.searchsorted(bounds, hi)] - prefix[np.searchsorted(bounds, lo)], 0.0) / (t_g * sr)
    with np.errstate(divide="ignore"):
        block_lufs = -0.691 + 10.0 * np.log10(z)
    above = z[block_lufs >= -70.0]
    if not len(above):
        return -math.inf
    relative = -0.691 + 10.0 * math.log10(float(np.mean(above))) - 10.0
    kept = z[(block_lufs > relative) & (block_lufs > -70.0)]
    if not len(kept) or not np.mean(kept) > 0:
        return -math.inf
    return -0.691 + 10.0 * math.log10(float(np.mean(kept)))


def _lufs(x: np.ndarray, sr: int, what: str) -> float:
    """:func:`_integrated_lufs` of ``x``; MediaError naming ``what`` when it is too short or silent."""
    if len(x) < _BLOCK_S * sr:
        raise MediaError(f"the {what} is too short to measure its loudness ({len(x) / sr:.2f} s; "
                         f"at least {_BLOCK_S} s)")
    lufs = _integrated_lufs(x, sr)
    if not math.isfinite(lufs):
        raise MediaError(f"the {what} is silent: its loudness cannot be matched")
    return lufs


def true_peak_db(x: np.ndarray, sr: int, oversample: int = 4) -> float:
    """True peak (dBTP) of the mono signal ``x`` at ``sr`` Hz: its largest magnitude, in dB re full scale
    (1.0), between the samples as well as at them.

    The signal is oversampled ``oversample`` times (default 4, as ITU-R BS.1770's true-peak meter) with
    :func:`scipy.signal.resample_poly` (zeros assumed before and after it), :data:`_CHUNK` samples at a time
    with 64 samples of context on each side, so a long signal never needs ``oversample`` times its memory;
    the sample peak counts too, so the result is never below it. -inf for silence (or an empty signal).
    Raises :class:`MediaError` for a signal that is not 1-D or not finite.
    """
    _check_sample_rate(sr)
    if not (isinstance(oversample, (int, np.integer)) and oversample >= 1):
        raise MediaError(f"oversample must be a whole number >= 1, got {oversample!r}")
    x = np.asarray(x)
    if x.ndim != 1:
        raise MediaError(f"the signal must be a 1-D mono signal, got shape {x.shape}")
    peak, n = 0.0, len(x)
    for a in range(0, n, _CHUNK):
        b = min(n, a + _CHUNK)
        lo, hi = max(0, a - _TP_PAD), min(n, b + _TP_PAD)
        part = np.asarray(x[lo:hi], dtype=np.float64)
        block_peak = float(np.max(np.abs(part[a - lo:b - lo])))
        if not math.isfinite(block_peak):
            raise MediaError("the signal contains NaN or infinite samples")
        if oversample > 1:
            up = scipy.signal.resample_poly(part, oversample, 1)
            block_peak = max(block_peak, float(np.max(np.abs(up[(a - lo) * oversample:(b - lo) * oversample]))))
        peak = max(peak, block_peak)
    return _db(peak)


def _peak_levels(x: np.ndarray, a: int, b: int, oversample: int) -> np.ndarray:
    """The peak level (float64, linear) at each sample of ``x[a:b]``: its magnitude, or with ``oversample``
    (4: as :func:`true_peak_db`, but in float32) the largest magnitude of the oversampled signal within half a
    sample of it."""
    lo, hi = max(0, a - _TP_PAD), min(len(x), b + _TP_PAD)
    part = np.asarray(x[lo:hi], dtype=np.float32)
    level = np.abs(part[a - lo:b - lo]).astype(np.float64)
    if oversample > 1:
        up = np.abs(scipy.signal.resample_poly(part, oversample, 1)).reshape(-1, oversample)  # row j: at j and after
        half = oversample // 2
        for k in range(half + 1):  # the sample and the points up to half way to the next one
            np.maximum(level, up[a - lo:b - lo, k], out=level)
        before = up[:, half].copy()  # from half way after the sample before it
        for k in range(half + 1, oversample):
            np.maximum(before, up[:, k], out=before)
        before = before[max(0, a - lo - 1):b - lo - 1]
        np.maximum(level[len(level) - len(before):], before, out=level[len(level) - len(before):])
    return level


def _limited_blocks(x: np.ndarray, sr: int, gain_db: float, ceiling_db: float, oversample: int = 4):
    """``x`` gained by ``gain_db`` and peak-limited to ``ceiling_db`` (dBFS), a block at a time: yields
    ``(start, block, gain)``, the float32 output from sample ``start`` on and the limiter's gain (float64, <= 1)
    on each of its samples. Nothing is written to ``x``: its blocks may be written over once yielded.

    A look-ahead limiter, computed offline so that it needs no delay (the output is aligned with the input,
    sample for sample, and as long):

    * the reduction each sample needs, ``max(0, 20 log10(peak[n] * gain / ceiling))`` dB, is held over the
      :data:`_LIMITER_LOOKAHEAD_S` (5 ms, ``L`` samples) that follow it: ``held[n] = max(need[n .. n+L-1])``;
    * release: the reduction decays exponentially (in dB, time constant :data:`_LIMITER_RELEASE_S`, 50 ms),
      ``R[n] = max(held[n], R[n-1] * exp(-1 / (release * sr)))``; computed without a Python loop, as a running
      maximum in the log domain; a tail under :data:`_LIMITER_FLOOR_DB` ends (after about 0.6 s for 10 dB);
    * attack: the linear gain ``10^(-R/20)`` is averaged over the ``L`` samples up to each one (a 5 ms ramp,
      no step), so every gain in the average, and the average, is at most the gain its peak needs: no sample
      exceeds the ceiling.

    ``peak[n]`` is the true peak at each sample (:func:`_peak_levels`, ``oversample`` 4 as
    :func:`true_peak_db`; 1: its magnitude), so inter-sample peaks are limited too. No sample exceeds the
    ceiling; the true peak may still overshoot it a little where the gain moves (hence the headroom under the
    true-peak limit in :func:`segment_mix`). A signal already under the ceiling comes out only gained, bit
    for bit.
    """
    n = len(x)
    look = max(1, round(_LIMITER_LOOKAHEAD_S * sr))
    log_k = -1.0 / (_LIMITER_RELEASE_S * sr)  # log of the release's decay per sample
    gain, ceiling_db = _gain(gain_db), float(ceiling_db)
    state = 0.0  # R (dB) of the sample before the block
    prev = np.zeros(look - 1)  # 1 - 10^(-R/20) of the look - 1 samples before the block
    for a in range(0, n, _CHUNK):
        b = min(n, a + _CHUNK)
        pre = look - 1 if a == 0 else 0  # silence before the signal, to ramp down in for a peak at its start
        m = pre + b - a
        level = _peak_levels(x, a, min(n, b + look - 1), oversample) * gain
        need = np.zeros(m + look - 1)  # 0 before and after the signal
        with np.errstate(divide="ignore"):
            need[pre:pre + len(level)] = np.maximum(20.0 * np.log10(level) - ceiling_db, 0.0)
        held = scipy.ndimage.maximum_filter1d(need, look, origin=-(look // 2), mode="constant", cval=0.0)[:m]
        if state > 0 or np.any(held > 0):
            steps = np.arange(m) * log_k
            with np.errstate(divide="ignore"):
                run = np.maximum.accumulate(np.log(held) - steps)
            if state > 0:
                np.maximum(run, math.log(state) + log_k, out=run)
            reduction_db = np.exp(run + steps)
            state = float(reduction_db[-1])
            # the end of a release tail: nothing left to hear, and the signal passes on bit for bit again
            reduction_db = np.where(reduction_db < _LIMITER_FLOOR_DB, held, reduction_db)
            cut = -np.expm1(reduction_db * (-math.log(10.0) / 20.0))  # 1 - 10^(-R/20)
        else:
            cut = np.zeros(m)
        if pre:
            prev, cut = cut[:pre], cut[pre:]
        both = np.concatenate([prev, cut])
        sums = np.concatenate([[0.0], np.cumsum(both)])
        block_gain = 1.0 - (sums[look:] - sums[:-look]) / look
        if look > 1:
            prev = both[-(look - 1):]
        yield a, (np.asarray(x[a:b], dtype=np.float64) * (gain * block_gain)).astype(np.float32), block_gain


def _segment_name(i: int, total: int, start: float, end: float) -> str:
    return f"segment {i + 1} of {total} ({start:.3f}-{end:.3f} s)"


def _segment_spans(segments: list, n: int, sr: int) -> list[tuple[int, int]]:
    """The sample span ``[a, b)`` of each ``(start_s, end_s, music)`` segment over a speech of ``n`` samples.

    MediaError unless the list is non-empty, in time order, without overlaps, and within the speech (an end up
    to :data:`_END_SLACK_S` past it is cut to it).
    """
    if not len(segments):
        raise MediaError("no music segments: give at least one (start_s, end_s, music)")
    total, duration = len(segments), n / sr
    spans: list[tuple[int, int]] = []
    times: list[tuple[float, float]] = []
    for i, segment in enumerate(segments):
        try:
            if len(segment) != 3:
                raise TypeError
            start, end = float(segment[0]), float(segment[1])
        except (TypeError, ValueError):
            raise MediaError(f"segment {i + 1} of {total} must be (start_s, end_s, music), "
                             f"got {type(segment).__name__}") from None
        if not (math.isfinite(start) and math.isfinite(end)):
            raise MediaError(f"segment {i + 1} of {total} has a time that is not a finite number: "
                             f"{start}-{end} s")
        name = _segment_name(i, total, start, end)
        if end <= start:
            raise MediaError(f"{name} ends before it starts: give start_s < end_s")
        a, b = round(start * sr), min(n, round(end * sr))
        if a < 0:
            raise MediaError(f"{name} starts before the speech, which starts at 0 s")
        if end > duration + _END_SLACK_S:
            raise MediaError(f"{name} ends after the speech, which is {duration:.3f} s long")
        if times and start < times[-1][0]:
            raise MediaError(f"the segments are not in time order: {name} starts before "
                             f"{_segment_name(i - 1, total, *times[-1])}")
        if spans and a < spans[-1][1]:
            raise MediaError(f"{name} overlaps {_segment_name(i - 1, total, *times[-1])}")
        if b <= a:
            raise MediaError(f"{name} is shorter than one sample" if a < n else f"{name} starts at the end of "
                             f"the speech, which is {duration:.3f} s long")
        spans.append((a, b))
        times.append((start, end))
    return spans


def _runs(spans: list[tuple[int, int]], keys: list) -> list[list[int]]:
    """``[first, last, a, b]`` for each run of touching segments whose ``keys`` are the same (``is``): one
    track playing on across them."""
    runs: list[list[int]] = []
    for i, (a, b) in enumerate(spans):
        if runs and keys[i] is keys[runs[-1][1]] and a == runs[-1][3]:
            runs[-1][1], runs[-1][3] = i, b
        else:
            runs.append([i, i, a, b])
    return runs


def _rounded(info: dict) -> dict:
    return {k: round(float(v), 3) if isinstance(v, (float, np.floating)) else v for k, v in info.items()}


def _loudness_and_true_peak(mix: np.ndarray, sr: int, mix_lufs: float, target_lufs: float,
                            true_peak_dbtp: float) -> dict:
    """Bring ``mix`` (float32, loudness ``mix_lufs``), in place, to ``target_lufs`` with its true peak at most
    ``true_peak_dbtp``; returns what was done (the ``gain_db`` and ``limiter_*`` keys of :func:`segment_mix`)
    and the ``true_peak_dbtp`` of the result.

    A plain gain to the target when that keeps the true peak under the limit. Otherwise the gained mix goes
    through the look-ahead limiter (:func:`_limited_blocks`) at a sample ceiling :data:`_LIMITER_HEADROOM_DB`
    under the limit; limiting lowers the loudness, so the gain into the limiter is raised and the mix
    limited again, from the unlimited mix, at most :data:`_LIMITER_ADJUSTMENTS` times (the first raise by
    the loudness missing, the next by the secant through the last two tries), until the loudness is within
    :data:`_LOUDNESS_TOLERANCE_LU` of the target. The tries only measure (the limited blocks stream into the
    loudness meter); the best one is then written over the mix. Last, when the true peak is still above the
    limit (overshoot between the samples), the whole mix is gained down to just under it: ``limiter_gain_db``.
    """
    n = len(mix)
    gain_db = target_lufs - mix_lufs
    ceiling_db = true_peak_dbtp - _LIMITER_HEADROOM_DB
    lowest_gain, n_limited = 1.0, 0
    if true_peak_db(mix, sr) + gain_db > true_peak_dbtp:
        tries: list[tuple[float, float]] = []
        while True:
            loudness = _stream_lufs((block for _, block, _ in _limited_blocks(mix, sr, gain_db, ceiling_db)), n, sr)
            tries.append((gain_db, loudness))
            missing = target_lufs - loudness
            if (abs(missing) <= _LOUDNESS_TOLERANCE_LU or len(tries) > _LIMITER_ADJUSTMENTS
                    or not math.isfinite(missing)):
                break
            slope = 1.0  # LU of loudness per dB of gain: below 1 once the limiter works
            if len(tries) > 1:
                (g0, l0), (g1, l1) = tries[-2:]
                slope = min(1.0, max(0.5, (l1 - l0) / (g1 - g0))) if g1 != g0 else 1.0
            gain_db += missing / slope
        gain_db = min(tries, key=lambda t: abs(target_lufs - t[1]))[0]
        for a, block, block_gain in _limited_blocks(mix, sr, gain_db, ceiling_db):
            mix[a:a + len(block)] = block
            lowest_gain = min(lowest_gain, float(block_gain.min()))
            n_limited += int(np.count_nonzero(block_gain < _gain(-_LIMITED_DB)))
        n_tries = len(tries)
    else:
        mix *= np.float32(_gain(gain_db))
        n_tries = 0
    peak_db = true_peak_db(mix, sr)
    scale_db = min(0.0, true_peak_dbtp - _TP_MARGIN_DB - peak_db)
    if scale_db < 0:
        mix *= np.float32(_gain(scale_db))
        peak_db = true_peak_db(mix, sr)
    return {"true_peak_dbtp": peak_db, "gain_db": gain_db + scale_db, "limiter_gain_db": scale_db,
            "limiter_ceiling_dbfs": ceiling_db,
            "limiter_gain_reduction_db_max": max(0.0, -_db(lowest_gain)), "limited_fraction": n_limited / n,
            "limiter_passes": n_tries}


def segment_mix(speech: np.ndarray, sr: int, segments: list[tuple[float, float, np.ndarray]], *,
                target_lufs: float = -16.0, bgm_offset_lu: float = -4.0, duck_db: float = -15.0,
                attack_s: float = 0.08, release_s: float = 0.5, hold_s: float = 1.0, crossfade_s: float = 2.0,
                true_peak_dbtp: float = -1.0) -> tuple[np.ndarray, dict]:
    """Mix ``speech`` over a sequence of music tracks, ducked while the voice speaks, at a set loudness.

    ``speech`` is a mono float signal at ``sr`` Hz; ``segments`` is a list of ``(start_s, end_s, music)``
    in time order, without overlaps, within the speech (seconds from its first sample; an end up to 0.05 s
    past its end is cut to it; gaps between segments have no music). Each ``music`` is a mono float signal at
    ``sr``, any length: looped (10 ms fades at each seam) or trimmed to the time it plays.

    * **Runs and crossfades.** Touching segments that pass the *same* array object are one run: the track
      plays on across them, continuing where it was. Between touching runs, the tracks are joined by an
      equal-power (sine/cosine) crossfade of ``crossfade_s`` seconds (default 2.0) centred on the boundary,
      shortened to the shorter run when a run is shorter than it; each run's track starts (from its
      beginning) half a crossfade before its run.
    * **Loudness per track.** Each run's music is gained so that its integrated loudness (BS.1770, LUFS,
      measured over the part that plays, at least 0.4 s) is the speech's loudness + ``bgm_offset_lu``
      (default -4 LU: the music 4 LU under the voice); a change of track does not jump in level.
    * **Ducking.** The music is gained by ``duck_db`` (default -15 dB) while the voice is active: voice
      activity as :func:`voice_activity`, held ``hold_s`` (default 1.0 s) after each voiced 10 ms frame and
      starting ``attack_s`` before it; the gain moves linearly in dB, down over ``attack_s`` (default
      0.08 s) and up over ``release_s`` (default 0.5 s). So the music is back at full level in pauses longer
      than about ``hold_s + release_s + attack_s`` (1.6 s with the defaults) and stays down in shorter ones.
    * **Loudness and true peak.** Speech plus music is gained to ``target_lufs`` integrated (default
      -16 LUFS); when that would put the true peak (:func:`true_peak_db`, 4x oversampling) above
      ``true_peak_dbtp`` (default -1 dBTP), a look-ahead limiter (ceiling 0.5 dB under the limit, 5 ms
      look-ahead and attack ramp, 50 ms release; see the module's notes) takes the peaks down, the gain
      into it raised (at most twice) until the loudness is within 0.1 LU of the target; a true peak still
      over the limit after it is met by gaining the whole mix down until it is 0.001 dB under. The
      loudness reached is reported: within 0.5 LU of the target on speech, further where limiting cannot
      make up for it in 3 passes (a mix of clicks or square waves pushed 20 dB into the limiter).

    Returns ``(mix, info)``: the mix as float32, as long as the speech, and a dict (floats rounded to 3
    decimals) with ``loudness_lufs`` and ``true_peak_dbtp`` measured on the mix; the settings
    ``target_lufs``, ``true_peak_limit_dbtp``, ``bgm_offset_lu``, ``duck_db``, ``attack_s``, ``release_s``,
    ``hold_s``, ``crossfade_s``; ``speech_lufs`` (before any gain); ``gain_db`` (the plain gain applied to
    speech + music, of which ``limiter_gain_db``, 0 or negative, the final gain down for the true peak);
    the limiter's ``limiter_ceiling_dbfs``, ``limiter_passes`` (its tries; 0: not needed),
    ``limiter_gain_reduction_db_max`` (its deepest reduction, dB, 0 or positive) and ``limited_fraction``
    (the share of samples it takes more than 0.1 dB off); ``voice_fraction`` (the share of time ducked);
    ``n_segments``, ``n_tracks_changes`` (consecutive segments with different music), ``n_crossfades``,
    ``duration_s``; and ``tracks``, one dict per run (``segments``: their 1-based numbers, ``start_s``,
    ``end_s``, ``music_lufs``, ``gain_db``, ``looped``, ``crossfade_in_s``, ``crossfade_out_s``).

    Works in float32 and in blocks: an hour at 44.1 kHz needs about four times the speech's float32 size.
    Raises :class:`MediaError` for bad segments (with the segment's number and times), silent or too short
    speech, silent music ("the music of segment 2 of 3 (...) is silent"), or bad settings.
    """
    _check_settings(sr, duck_db, attack_s, release_s)
    for name, value in (("target_lufs", target_lufs), ("bgm_offset_lu", bgm_offset_lu),
                        ("true_peak_dbtp", true_peak_dbtp)):
        if not math.isfinite(value):
            raise MediaError(f"{name} must be a finite number, got {value}")
    for name, value in (("hold_s", hold_s), ("crossfade_s", crossfade_s)):
        if not (math.isfinite(value) and value >= 0):
            raise MediaError(f"{name} must be a number of seconds >= 0, got {value}")
    speech = _mono(speech, "speech", np.float32)
    n = len(speech)
    segments = list(segments)
    spans = _segment_spans(segments, n, sr)
    speech_lufs = _lufs(speech, sr, "speech")
    musics = [segment[2] for segment in segments]
    runs = _runs(spans, musics)
    # crossfade[k]: samples of the crossfade into run k (0: none), for touching runs only
    crossfade = [0] * (len(runs) + 1)
    for k in range(1, len(runs)):
        if runs[k][2] == runs[k - 1][3]:
            crossfade[k] = min(round(crossfade_s * sr), runs[k][3] - runs[k][2], runs[k - 1][3] - runs[k - 1][2])

    bed = np.zeros(n, np.float32)
    tracks = []
    total = len(segments)
    for k, (first, last, a, b) in enumerate(runs):
        fade_in, fade_out = crossfade[k], crossfade[k + 1]
        lo, hi = a - fade_in // 2, b + fade_out - fade_out // 2  # the crossfade windows are centred
        name = _segment_name(first, total, spans[first][0] / sr, spans[last][1] / sr)
        music = _mono(musics[first], f"music of {name}", np.float32)
        fitted, looped = _fit_length(music, hi - lo, sr)
        measured = fitted if len(fitted) >= _BLOCK_S * sr else _fit_length(music, math.ceil(_BLOCK_S * sr), sr)[0]
        music_lufs = _integrated_lufs(measured, sr)
        if not math.isfinite(music_lufs):
            raise MediaError(f"the music of {name} is silent: its loudness cannot be matched")
        gain_db = speech_lufs + bgm_offset_lu - music_lufs
        fitted *= np.float32(_gain(gain_db))
        if fade_in:
            fitted[:fade_in] *= np.sin(0.5 * np.pi * (np.arange(fade_in) + 0.5) / fade_in).astype(np.float32)
        if fade_out:
            fitted[-fade_out:] *= np.cos(0.5 * np.pi * (np.arange(fade_out) + 0.5) / fade_out).astype(np.float32)
        elif looped:  # the last copy is cut off: fade it out
            fade = min(round(_FADE_S * sr), len(fitted) // 4)
            if fade:
                fitted[-fade:] *= (0.5 + 0.5 * np.cos(np.linspace(0.0, np.pi, fade))).astype(np.float32)
        bed[lo:hi] += fitted
        del fitted, measured
        tracks.append(_rounded({"segments": list(range(first + 1, last + 2)), "start_s": a / sr, "end_s": b / sr,
                                "music_lufs": music_lufs, "gain_db": gain_db, "looped": looped,
                                "crossfade_in_s": fade_in / sr, "crossfade_out_s": fade_out / sr}))

    active = voice_activity(speech, sr, speech_lufs, lead_s=attack_s, hold_s=hold_s)
    _apply_levels(bed, _duck_levels(active, duck_db, attack_s, release_s), sr)
    mix = bed
    mix += speech
    levels = _loudness_and_true_peak(mix, sr, _lufs(mix, sr, "mix"), target_lufs, true_peak_dbtp)

    info = _rounded({
        "loudness_lufs": _integrated_lufs(mix, sr),
        "target_lufs": float(target_lufs),
        "true_peak_dbtp": levels.pop("true_peak_dbtp"),
        "true_peak_limit_dbtp": float(true_peak_dbtp),
        **levels,
        "speech_lufs": speech_lufs,
        "bgm_offset_lu": float(bgm_offset_lu),
        "duck_db": float(duck_db),
        "attack_s": float(attack_s),
        "release_s": float(release_s),
        "hold_s": float(hold_s),
        "crossfade_s": float(crossfade_s),
        "voice_fraction": float(np.mean(active)) if len(active) else 0.0,
        "n_segments": total,
        "n_tracks_changes": sum(musics[i] is not musics[i - 1] for i in range(1, total)),
        "n_crossfades": sum(1 for fade in crossfade if fade),
        "duration_s": n / sr,
    })
    info["tracks"] = tracks
    return mix, info


def mix_segments_file(speech_path: PathLike, segments: list[tuple[float, float, PathLike]], out_path: PathLike,
                      *, sr: int = 44100, max_seconds: float = 10800.0, **options) -> dict:
    """Decode a speech (or video) file and the music files of its segments, :func:`segment_mix` them, and
    write the mix.

    ``segments`` are ``(start_s, end_s, music_path)`` (times from the speech's first sample, or its first
    video frame); each distinct music file is decoded once, at ``sr`` Hz, only as far as its longest run of
    touching segments plus one crossfade needs, and the same decoded array is passed for every segment that
    names it, so a track kept across segments plays on. ``max_seconds`` (default 10800 s, 3 hours) limits
    the speech, checked from the container before decoding. ``options`` go to :func:`segment_mix`.

    ``out_path`` ending in ``.wav``: the mix as 16-bit WAV. Ending in ``.mp4``, ``.mov`` or ``.mkv``: the
    speech file's video stream copied unchanged (not re-encoded) with the mix as its audio (AAC in MP4,
    16-bit PCM in MOV/MKV; see :func:`media.io.mux_audio`), which needs a speech file with a picture.
    Returns :func:`segment_mix`'s info plus ``mix_path``. Raises :class:`MediaError` naming the file for
    unreadable, missing or over-long input, an output that would overwrite an input, or another suffix.
    """
    limit = float(max_seconds)
    out = Path(out_path)
    suffix = out.suffix.lower()
    if suffix != ".wav" and suffix not in _VIDEO_SUFFIXES:
        raise MediaError(f"write the mix as .wav, or as {' / '.join(_VIDEO_SUFFIXES)} with the speech file's "
                         f"picture; got '{out.name}'")
    segments = list(segments)
    paths = []
    for i, segment in enumerate(segments):
        music_path = segment[2] if isinstance(segment, (tuple, list)) and len(segment) == 3 else None
        if not isinstance(music_path, (str, os.PathLike)):
            raise MediaError(f"segment {i + 1} of {len(segments)} must be (start_s, end_s, music_path)")
        paths.append(Path(music_path))
    name = Path(speech_path).name
    if out.resolve() in {Path(speech_path).resolve(), *(p.resolve() for p in paths)}:
        raise MediaError(f"Cannot write '{out.name}' over its own input")
    if suffix != ".wav" and not probe(speech_path).has_video:
        raise MediaError(f"'{name}' has no picture; write the mix as .wav")
    speech = _read_speech(speech_path, sr, limit)
    if not len(speech):
        raise MediaError(f"'{name}' has no audio samples")

    spans = _segment_spans(segments, len(speech), sr)
    keys: dict[Path, Path] = {}  # one key object per distinct file, so that _runs can compare with ``is``
    seg_keys = [keys.setdefault(p.resolve(), p.resolve()) for p in paths]
    needed: dict[Path, float] = {}
    crossfade_s = float(options.get("crossfade_s", segment_mix.__kwdefaults__["crossfade_s"]))
    for first, _, a, b in _runs(spans, seg_keys):
        key = seg_keys[first]
        needed[key] = max(needed.get(key, 0.0), (b - a) / sr + crossfade_s + 0.1)
    decoded: dict[Path, np.ndarray] = {}
    for key, path in zip(seg_keys, paths):
        if key not in decoded:
            decoded[key] = read_audio(path, sr=sr, end=needed[key])
            if not len(decoded[key]):
                raise MediaError(f"'{path.name}' has no audio samples")
    mix, result = segment_mix(speech, sr, [(s[0], s[1], decoded[k]) for s, k in zip(segments, seg_keys)],
                              **options)
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".wav":
        write_audio(out, mix, sr)
    else:
        mux_audio(speech_path, out, mix, sr=sr, delay_s=0.0)
    return {**result, "mix_path": str(out)}


# ----------------------------------------------------------------------------- soundtrack: finishing, noise check

# spectral_flatness: FFT frames of about 46 ms (a power of two: 2048 samples at 44.1 and 48 kHz, 1024 at 22.05
# and 16 kHz), hop half a frame, Hann window; power spectra averaged over blocks of 0.25 s; flatness within
# bands of 1/3 octave (at least 8 FFT bins) from 100 Hz to 8 kHz (or 0.45 sr); blocks more than 40 dB under
# the loudest are left out.
_FLAT_FRAME_S = 0.0464
_FLAT_BLOCK_S = 0.25
_FLAT_FMIN_HZ, _FLAT_FMAX_HZ = 100.0, 8000.0
_FLAT_MIN_BINS = 8
_FLAT_GATE_DB = 40.0
# A signal is noise when its spectral_flatness is above this. Measured (44.1 kHz, 20-30 s each):
#   noise: white 0.959, pink 0.954, brown 0.939, traffic-like (white noise low-passed at 500 Hz, slowly
#   modulated) 0.930; the same at 22.05 kHz, 0.933-0.963 at 48 kHz, 0.920-0.945 at 16 kHz;
#   TimGM6mb renders (media.synth, 30 s): 4 parts of ~600 notes 0.685-0.697, drums alone 0.757, one piano
#   note 0.155; the first 30 s of the 29 tracks in shared/media/music: 0.132-0.819 (median 0.428; the highest
#   wesnoth_loyalists 0.819 (0.758 at 16 kHz), frozenbubble_introzik 0.774, a drum-and-bass track 0.715).
# The threshold sits midway between the noisiest music (0.82) and the least flat noise (0.93).
# (Plain flatness over the whole spectrum, librosa's, cannot tell: brown noise 0.0000, like music, its
# 6 dB/octave slope spanning 60 dB; white 0.56, pink 0.13.)
NOISE_FLATNESS_MAX = 0.88
# finish_soundtrack's fade-in, and the fade at the end of an input shorter than the soundtrack (s).
_SOUNDTRACK_EDGE_S = 0.005


def _flatness_bands(n_fft: int, sr: int) -> list[tuple[int, int]]:
    """FFT bin ranges ``[a, b)`` of :func:`spectral_flatness`'s bands: 1/3 octave wide, at least
    :data:`_FLAT_MIN_BINS` bins, from :data:`_FLAT_FMIN_HZ` up to :data:`_FLAT_FMAX_HZ` or ``0.45 * sr``."""
    df = sr / n_fft
    lo = max(1, math.ceil(_FLAT_FMIN_HZ / df))
    top = min(n_fft // 2, int(min(_FLAT_FMAX_HZ, 0.45 * sr) / df))
    edges = [lo]
    while max(edges[-1] + _FLAT_MIN_BINS, round(edges[-1] * 2 ** (1 / 3))) <= top:
        edges.append(max(edges[-1] + _FLAT_MIN_BINS, round(edges[-1] * 2 ** (1 / 3))))
    if len(edges) < 2:
        edges = [lo, max(lo + 1, top)]
    return list(itertools.pairwise(edges))


def spectral_flatness(x: np.ndarray, sr: int) -> float:
    """How noise-like the mono signal ``x`` is: 0 (pure tones) to 1 (noise); above :data:`NOISE_FLATNESS_MAX`
    (0.88) it is noise.

    The measure: the power spectrum of ~46 ms Hann frames (2048 samples at 44.1 kHz), hop half a frame,
    averaged over blocks of 0.25 s (10 frames); in each block, the spectral flatness (geometric over
    arithmetic mean of the power) within each band of 1/3 octave (at least 8 FFT bins wide) from 100 Hz to
    8 kHz, averaged over the bands; the median over the blocks whose level (in that range) is within 40 dB of
    the loudest block, so silence and fades do not count. A shorter signal than one block is one block; the
    samples after the last whole block are left out.

    Why in bands and averaged: flatness over the whole spectrum reads any sloped spectrum as tonal (brown
    noise, the rumble of traffic, 0.0000 like music), and one periodogram of noise has the flatness of
    exponential noise (0.56), not 1. In bands, stationary noise of any tilt measures 0.93-0.96, music
    0.13-0.82 (see :data:`NOISE_FLATNESS_MAX`). Drums alone are noise-like (0.76 rendered); music with noise
    mixed in at a lower level reads as music: this catches a soundtrack that *is* noise, not hiss under music.

    Processes :data:`_CHUNK` samples at a time. Raises :class:`MediaError` for silence (all zeros), a bad
    sample rate, or a signal that is not 1-D and finite.
    """
    _check_sample_rate(sr)
    x = _mono(x, "signal", np.float32)
    if not np.any(x):
        raise MediaError("the signal is silent: its spectral flatness is undefined")
    n_fft = 2 ** round(math.log2(_FLAT_FRAME_S * sr))
    hop = n_fft // 2
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    n_frames = 1 + (len(x) - n_fft) // hop
    per_block = max(1, min(n_frames, round(_FLAT_BLOCK_S * sr / hop)))
    n_blocks = n_frames // per_block
    bands = _flatness_bands(n_fft, sr)
    lo, hi = bands[0][0], bands[-1][1]
    window = scipy.signal.get_window("hann", n_fft)
    flatness, level = np.empty(n_blocks), np.empty(n_blocks)
    blocks_per_chunk = max(1, _CHUNK // (per_block * hop))
    for b0 in range(0, n_blocks, blocks_per_chunk):
        b1 = min(n_blocks, b0 + blocks_per_chunk)
        start, stop = b0 * per_block * hop, (b1 * per_block - 1) * hop + n_fft
        frames = np.lib.stride_tricks.sliding_window_view(np.asarray(x[start:stop], np.float64), n_fft)[::hop]
        power = np.abs(np.fft.rfft(frames * window, axis=1)[:, lo:hi]) ** 2
        power = power.reshape(b1 - b0, per_block, hi - lo).mean(axis=1)
        level[b0:b1] = 10.0 * np.log10(power.sum(axis=1) + 1e-30)
        power += 1e-30
        logs = np.log(power)
        flatness[b0:b1] = np.mean([np.exp(logs[:, a - lo:b - lo].mean(axis=1)) / power[:, a - lo:b - lo].mean(axis=1)
                                   for a, b in bands], axis=0)
    kept = level >= level.max() - _FLAT_GATE_DB
    return float(np.median(flatness[kept]))


def finish_soundtrack(x: np.ndarray, sr: int, duration_s: float, *, fade_s: float = 2.0,
                      target_lufs: float = -14.0, true_peak_dbtp: float = -1.0) -> tuple[np.ndarray, dict]:
    """The rendered soundtrack ``x`` (mono, ``sr`` Hz) finished to the product's presets.

    1. **Length:** exactly ``round(duration_s * sr)`` samples: cut, or padded with silence (an input that
       ends early gets a 5 ms fade at its end, no click).
    2. **Fades:** a 5 ms raised-cosine fade-in; a raised-cosine fade-out over the last ``fade_s`` seconds
       (default 2 s; at most a third of the duration), reaching 0 on the last sample (-56 dB 50 ms before
       the end with the default).
    3. **Loudness and true peak** as :func:`segment_mix`: gained to ``target_lufs`` integrated (default
       -14 LUFS, BS.1770), with the look-ahead limiter where the true peak (4x oversampled) would exceed
       ``true_peak_dbtp`` (default -1 dBTP), and a final gain down when it still does.
    4. **Noise check:** :func:`spectral_flatness` of the result, ``noise_free`` when at most
       :data:`NOISE_FLATNESS_MAX`.

    Returns ``(y, info)``: ``y`` float32, and ``info`` (floats rounded to 3 decimals) with the measured
    ``duration_s``, ``lufs``, ``true_peak_dbtp``, ``spectral_flatness`` and ``noise_free``; the settings
    ``target_lufs``, ``true_peak_limit_dbtp``, ``fade_in_s``, ``fade_out_s``; ``input_s`` (the input's
    length); and the loudness stage's ``gain_db``, ``limiter_gain_db``, ``limiter_ceiling_dbfs``,
    ``limiter_passes``, ``limiter_gain_reduction_db_max`` and ``limited_fraction``.

    Raises :class:`MediaError` for a silent input ("the soundtrack is silent: ..."), a duration under 0.4 s
    (its loudness cannot be measured), an input that is not 1-D and finite, or bad settings.
    """
    _check_sample_rate(sr)
    for name, value in (("duration_s", duration_s), ("fade_s", fade_s), ("target_lufs", target_lufs),
                        ("true_peak_dbtp", true_peak_dbtp)):
        if not (isinstance(value, (int, float, np.number)) and math.isfinite(value)):
            raise MediaError(f"{name} must be a finite number, got {value!r}")
    if duration_s < _BLOCK_S:
        raise MediaError(f"the soundtrack must last at least {_BLOCK_S} s (to measure its loudness), "
                         f"got {duration_s} s")
    if fade_s < 0:
        raise MediaError(f"fade_s must be a number of seconds >= 0, got {fade_s}")
    x = _mono(x, "soundtrack", np.float32)
    if not np.any(x):
        raise MediaError("the soundtrack is silent: there is nothing to finish")
    n = round(duration_s * sr)
    y = np.zeros(n, np.float32)
    m = min(n, len(x))
    y[:m] = x[:m]
    edge = max(1, round(_SOUNDTRACK_EDGE_S * sr))
    ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(edge) + 0.5) / edge)).astype(np.float32)  # 0 -> 1
    if m < n:  # padded: no step where the input stops
        k = min(edge, m)
        y[m - k:m] *= ramp[::-1][edge - k:]
    y[:min(edge, n)] *= ramp[:n]
    fade = min(round(fade_s * sr), n // 3)
    if fade:
        y[n - fade:] *= (0.5 + 0.5 * np.cos(np.pi * (np.arange(fade) + 1) / fade)).astype(np.float32)  # -> 0
    levels = _loudness_and_true_peak(y, sr, _lufs(y, sr, "soundtrack"), target_lufs, true_peak_dbtp)
    flatness = spectral_flatness(y, sr)
    info = _rounded({
        "duration_s": n / sr,
        "lufs": _integrated_lufs(y, sr),
        "true_peak_dbtp": levels.pop("true_peak_dbtp"),
        "spectral_flatness": flatness,
        "noise_free": bool(flatness <= NOISE_FLATNESS_MAX),
        "target_lufs": float(target_lufs),
        "true_peak_limit_dbtp": float(true_peak_dbtp),
        "fade_in_s": min(edge, n) / sr,
        "fade_out_s": fade / sr,
        "input_s": len(x) / sr,
        **levels,
    })
    return y, info
