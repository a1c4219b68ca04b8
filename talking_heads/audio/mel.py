"""Log-mel spectrograms matched to Wav2Lip (LaDTalk) and RADIO: numpy and batched jax.

Dimension legend: B batch, N samples, F mel frames, M mel bins, K = n_fft // 2 + 1 FFT bins.

Recipe (Wav2Lip `audio.melspectrogram`, librosa 0.7 semantics):
  pre-emphasis y[n] = x[n] - 0.97 x[n-1] (y[0] = x[0])
  -> STFT, periodic Hann window of win_length centred in n_fft, centre=True with reflect padding
  -> magnitude (not power) -> Slaney-scale, Slaney-normalised mel filterbank
  -> 20 log10(max(1e-5, S)) - ref_level_db
  -> clip(2 A (S - min_level_db) / -min_level_db - A, -A, A) with A = max_abs_value = 4.
F = 1 + N // hop_length (centred frames).

Orientation: `mel_spectrogram` returns [M, F] (mel bins first, as Wav2Lip's `melspectrogram`);
`mel_spectrogram_time_major` returns [F, M], the layout windows are sliced from
(`windows.slice_windows`). The jax version returns [B, M, F].

The numpy path uses its own STFT (numpy FFT) and filterbank so grain workers need neither numba
(librosa's first call compiles for 13-16 s) nor jax; jax is imported only when the jax path is
first used.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import numpy as np

from talking_heads.audio import windows


@dataclasses.dataclass(frozen=True)
class MelConfig:
  """Log-mel parameters (hashable: used as a static jit key).

  Attributes:
    sample_rate: Hz; input audio must already be at this rate.
    n_fft: FFT size.
    hop_length: STFT hop in samples.
    win_length: Hann window length (<= n_fft, centred in the FFT frame when shorter).
    n_mels: mel bins (M).
    fmin, fmax: filterbank edges in Hz.
    preemphasis: pre-emphasis coefficient (0 disables it).
    min_level_db: floor of the dB scale (amplitude floor 10 ** (min_level_db / 20)).
    ref_level_db: subtracted after the dB conversion.
    max_abs_value: output range is [-max_abs_value, max_abs_value] (symmetric, clipped).
  """

  sample_rate: int = 16000
  n_fft: int = 800
  hop_length: int = 200
  win_length: int = 800
  n_mels: int = 80
  fmin: float = 55.0
  fmax: float = 7600.0
  preemphasis: float = 0.97
  min_level_db: float = -100.0
  ref_level_db: float = 20.0
  max_abs_value: float = 4.0

  def __post_init__(self):
    for name in ("sample_rate", "n_fft", "hop_length", "win_length", "n_mels"):
      if getattr(self, name) <= 0:
        raise ValueError(f"MelConfig.{name} must be positive, got {getattr(self, name)}")
    if self.win_length > self.n_fft:
      raise ValueError(f"MelConfig.win_length {self.win_length} exceeds n_fft {self.n_fft}")
    if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
      raise ValueError(f"MelConfig needs 0 <= fmin < fmax <= sample_rate/2, got {self.fmin}, {self.fmax}")
    if self.min_level_db >= 0:
      raise ValueError(f"MelConfig.min_level_db must be negative, got {self.min_level_db}")

  @property
  def frames_per_second(self) -> float:
    """Mel frames per second (80 for Wav2Lip, 100 for RADIO)."""
    return self.sample_rate / self.hop_length

  def num_frames(self, num_samples: int) -> int:
    """F for a clip of `num_samples` (centred STFT)."""
    return 1 + num_samples // self.hop_length

  def window_spec(self, window: int) -> windows.MelWindowSpec:
    """The video-frame alignment spec of this mel rate with `window` mel frames per window."""
    return windows.MelWindowSpec(sample_rate=self.sample_rate, hop_length=self.hop_length, window=window)


# Wav2Lip hparams.py.
WAV2LIP_MEL = MelConfig()

# RADIO (Sec. 4.1) states only 16 kHz, FFT window 1280, hop 160 and 80 mel bins. Its Hann window
# spans the whole FFT (the paper gives one window size; librosa's default win_length = n_fft).
# Everything else follows Wav2Lip, the codebase RADIO builds its training on (T = 5, sync
# discriminator, masked lower half): pre-emphasis 0.97, magnitude, Slaney mel, fmin 55 Hz,
# fmax 7600 Hz, -100/20 dB levels, symmetric [-4, 4].
RADIO_MEL = MelConfig(n_fft=1280, hop_length=160, win_length=1280)

_STFT_BLOCK = 4096   # frames per block of `mel_spectrogram`'s spectra (about 64 MB at n_fft 800)


def _hz_to_slaney_mel(hz: np.ndarray) -> np.ndarray:
  # Slaney's Auditory Toolbox scale: linear (200/3 Hz per mel) below 1 kHz, logarithmic above.
  hz = np.asarray(hz, dtype=np.float64)
  f_sp, min_log_hz = 200.0 / 3.0, 1000.0
  logstep = math.log(6.4) / 27.0
  linear = hz / f_sp
  log = min_log_hz / f_sp + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep
  return np.where(hz >= min_log_hz, log, linear)


def _slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
  mel = np.asarray(mel, dtype=np.float64)
  f_sp, min_log_hz = 200.0 / 3.0, 1000.0
  min_log_mel = min_log_hz / f_sp
  logstep = math.log(6.4) / 27.0
  log = min_log_hz * np.exp(logstep * (np.maximum(mel, min_log_mel) - min_log_mel))
  return np.where(mel >= min_log_mel, log, f_sp * mel)


def slaney_mel_filterbank(*, sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
  """Triangular mel filters on the Slaney scale with Slaney (area) normalisation, [M, K] float64.

  Matches librosa.filters.mel(htk=False, norm="slaney"), librosa's default.
  """
  fft_hz = np.arange(n_fft // 2 + 1) * (sample_rate / n_fft)
  edges_hz = _slaney_mel_to_hz(np.linspace(_hz_to_slaney_mel(fmin), _hz_to_slaney_mel(fmax), n_mels + 2))
  widths = np.diff(edges_hz)  # [M + 1]
  rising = (fft_hz[None, :] - edges_hz[:-2, None]) / widths[:-1, None]  # [M, K]
  falling = (edges_hz[2:, None] - fft_hz[None, :]) / widths[1:, None]
  weights = np.maximum(0.0, np.minimum(rising, falling))
  return weights * (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]


def _analysis_window(config: MelConfig) -> np.ndarray:
  """Periodic Hann of win_length zero-padded (centred) to n_fft, [n_fft] float64."""
  n = np.arange(config.win_length)
  hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / config.win_length)
  left = (config.n_fft - config.win_length) // 2
  return np.pad(hann, (left, config.n_fft - config.win_length - left))


@functools.lru_cache(maxsize=None)
def _numpy_constants(config: MelConfig) -> tuple[np.ndarray, np.ndarray]:
  """(analysis window [n_fft], mel basis [M, K]) per config, read-only so the cache stays intact."""
  window = _analysis_window(config)
  basis = slaney_mel_filterbank(sample_rate=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels,
                                fmin=config.fmin, fmax=config.fmax)
  window.flags.writeable = basis.flags.writeable = False
  return window, basis


def _check_length(num_samples: int, config: MelConfig, clip_id: str) -> None:
  # Reflect padding of n_fft // 2 needs more samples than the pad itself.
  if num_samples <= config.n_fft // 2:
    raise ValueError(
        f"{clip_id}: audio has {num_samples} samples; the centred STFT (n_fft {config.n_fft}) needs more "
        f"than {config.n_fft // 2} ({config.n_fft // 2 / config.sample_rate * 1000:.1f} ms)")


def _normalise_db(mel_amp: Any, xp: Any, config: MelConfig) -> Any:
  """Amplitude -> dB -> symmetric clipped range, for numpy or jax.numpy (`xp`)."""
  floor = 10.0 ** (config.min_level_db / 20.0)
  db = 20.0 * xp.log10(xp.maximum(floor, mel_amp)) - config.ref_level_db
  scaled = 2.0 * config.max_abs_value * (db - config.min_level_db) / (-config.min_level_db) - config.max_abs_value
  return xp.clip(scaled, -config.max_abs_value, config.max_abs_value)


def mel_spectrogram(audio: np.ndarray, config: MelConfig = WAV2LIP_MEL, *, clip_id: str = "audio") -> np.ndarray:
  """Normalised log-mel [M, F] float32 of 1-D audio at config.sample_rate (numpy).

  Float input is taken as is (librosa.load's [-1, 1] scale); signed integer PCM is scaled to
  [-1, 1) first. Computed in float64, returned as float32.

  Raises:
    ValueError: not 1-D, non-finite, or too short for one centred frame; names `clip_id`.
  """
  audio = np.asarray(audio)
  if audio.ndim != 1:
    raise ValueError(f"{clip_id}: expected 1-D mono audio, got shape {audio.shape}")
  x = windows.as_float_audio(audio, clip_id=clip_id)
  _check_length(x.shape[0], config, clip_id)
  if config.preemphasis:
    x = np.concatenate([x[:1], x[1:] - config.preemphasis * x[:-1]])
  pad = config.n_fft // 2
  x = np.pad(x, pad, mode="reflect")
  frames = np.lib.stride_tricks.sliding_window_view(x, config.n_fft)[::config.hop_length]  # [F, n_fft]
  window, basis = _numpy_constants(config)
  mel = np.empty((basis.shape[0], frames.shape[0]))  # [M, F]
  # In blocks of frames: the float64 spectra of all F at once would take 16 KB a frame (770 MB
  # for 10 minutes at Wav2Lip's hop); each frame's mel is its own, so blocks change nothing.
  for start in range(0, frames.shape[0], _STFT_BLOCK):
    block = frames[start:start + _STFT_BLOCK]
    mel[:, start:start + len(block)] = basis @ np.abs(np.fft.rfft(block * window, axis=-1)).T
  return _normalise_db(mel, np, config).astype(np.float32)


def mel_spectrogram_time_major(audio: np.ndarray, config: MelConfig = WAV2LIP_MEL, *,
                               clip_id: str = "audio") -> np.ndarray:
  """`mel_spectrogram` transposed to [F, M] (Wav2Lip's `melspectrogram(wav).T`), C-contiguous."""
  return np.ascontiguousarray(mel_spectrogram(audio, config, clip_id=clip_id).T)


@functools.lru_cache(maxsize=None)
def _jax_mel_fn(config: MelConfig) -> Callable[[Any], Any]:
  """Jitted [B, N] -> [B, M, F] for one config (constants baked in, cached per config)."""
  # Imported here so the numpy path above never pulls jax into grain worker processes.
  import jax
  import jax.numpy as jnp

  # Kept as numpy so they become trace-time constants (no device arrays or tracers in the cache).
  window, basis = (a.astype(np.float32) for a in _numpy_constants(config))
  hop, n_fft = config.hop_length, config.n_fft
  blocks_per_frame = -(-n_fft // hop)

  def fn(audio: Any) -> Any:
    x = audio.astype(jnp.float32)
    if jnp.issubdtype(audio.dtype, jnp.signedinteger):
      x = x / float(2 ** (8 * audio.dtype.itemsize - 1))
    if config.preemphasis:
      x = jnp.concatenate([x[:, :1], x[:, 1:] - config.preemphasis * x[:, :-1]], axis=1)
    num_frames = config.num_frames(x.shape[1])
    x = jnp.pad(x, ((0, 0), (n_fft // 2, n_fft // 2)), mode="reflect")
    # Frames from hop-sized blocks (slices and a concat, no gather): frame f = blocks f..f+r-1.
    num_blocks = num_frames + blocks_per_frame - 1
    x = jnp.pad(x, ((0, 0), (0, max(0, num_blocks * hop - x.shape[1]))))[:, :num_blocks * hop]
    blocks = x.reshape(x.shape[0], num_blocks, hop)
    frames = jnp.concatenate([blocks[:, j:j + num_frames] for j in range(blocks_per_frame)], axis=-1)
    frames = frames[..., :n_fft] * window  # [B, F, n_fft]
    magnitude = jnp.abs(jnp.fft.rfft(frames, axis=-1))  # [B, F, K]
    mel = jnp.einsum("mk,bfk->bmf", basis, magnitude, precision=jax.lax.Precision.HIGHEST)  # [B, M, F]
    return _normalise_db(mel, jnp, config)

  return jax.jit(fn)


def mel_spectrogram_jax(audio: Any, config: MelConfig = WAV2LIP_MEL) -> Any:
  """Batched normalised log-mel on device: [B, N] -> float32 [B, M, F], F = 1 + N // hop.

  Same recipe and input scaling as `mel_spectrogram`, computed in float32 (rows must share one length N; pad the
  batch yourself). Jitted once per (config, shape); callable inside other jitted code.

  Raises:
    ValueError: `audio` not 2-D or N too short for one centred frame.
  """
  if audio.ndim != 2:
    raise ValueError(f"mel_spectrogram_jax expects [B, N] audio, got shape {audio.shape}")
  _check_length(audio.shape[1], config, "batch")
  return _jax_mel_fn(config)(audio)
