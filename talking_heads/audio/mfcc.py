"""MFCC as syncnet_python computes it for LSE-C/LSE-D (python_speech_features.mfcc defaults).

Dimension legend: N samples, F MFCC frames (100 per second), C cepstra (13), P filters (26),
K = n_fft // 2 + 1 FFT bins.

Algorithm (python_speech_features 0.6, which syncnet_python calls with defaults at 16 kHz):
  pre-emphasis y[n] = x[n] - 0.97 x[n-1] (y[0] = x[0])
  -> frames of round_half_up(0.025 sr) = 400 samples every 160, rectangular window, the last
     frame zero-padded: F = 1 if N <= 400 else 1 + ceil((N - 400) / 160)
  -> power spectrum |rfft(frame, 512)|^2 / 512
  -> 26 triangular filters on the HTK mel scale 2595 log10(1 + f / 700), edges snapped to FFT
     bins floor((n_fft + 1) f / sr), unnormalised; zeros replaced by float eps; natural log
  -> orthonormal DCT-II, first 13 coefficients -> lifter 1 + (22 / 2) sin(pi c / 22)
  -> coefficient 0 replaced by the log of the frame's total power.
syncnet_python passes the raw int16 samples (not scaled to [-1, 1]); this module does the same:
samples are analysed in the scale given, and the scale only moves coefficient 0.

Pure numpy; python_speech_features is used only as the test reference.
"""

from __future__ import annotations

import dataclasses
import decimal

import numpy as np
import numpy.typing as npt


def _round_half_up(x: float) -> int:
  # Decimal of the exact binary value, as python_speech_features rounds frame sizes.
  return int(decimal.Decimal(x).quantize(decimal.Decimal(1), rounding=decimal.ROUND_HALF_UP))


@dataclasses.dataclass(frozen=True)
class MfccConfig:
  """MFCC parameters, named after python_speech_features.mfcc's arguments.

  Attributes:
    sample_rate: Hz.
    win_length_s, hop_length_s: analysis frame length and step in seconds.
    num_cepstra: C, coefficients kept.
    num_filters: P, mel filters.
    n_fft: FFT size (must cover the frame: frames are never truncated).
    low_freq, high_freq: filterbank edges in Hz; high_freq None means sample_rate / 2.
    preemphasis: coefficient (0 disables it).
    cep_lifter: lifter L (0 disables it).
    append_energy: replace coefficient 0 by the log frame power.
  """

  sample_rate: int = 16000
  win_length_s: float = 0.025
  hop_length_s: float = 0.01
  num_cepstra: int = 13
  num_filters: int = 26
  n_fft: int = 512
  low_freq: float = 0.0
  high_freq: float | None = None
  preemphasis: float = 0.97
  cep_lifter: int = 22
  append_energy: bool = True

  def __post_init__(self):
    if self.win_length > self.n_fft:
      raise ValueError(f"MfccConfig: frame of {self.win_length} samples exceeds n_fft {self.n_fft}")
    if self.hop_length <= 0:
      raise ValueError(f"MfccConfig: hop of {self.hop_length_s} s is under one sample")
    if not 0 <= self.low_freq < self.top_freq <= self.sample_rate / 2:
      raise ValueError(f"MfccConfig needs 0 <= low_freq < high_freq <= sample_rate/2, got {self.low_freq}, "
                       f"{self.top_freq}")
    if not 0 < self.num_cepstra <= self.num_filters:
      raise ValueError(f"MfccConfig: num_cepstra {self.num_cepstra} must be in [1, num_filters]")

  @property
  def win_length(self) -> int:
    """Frame length in samples (400 at 16 kHz)."""
    return _round_half_up(self.win_length_s * self.sample_rate)

  @property
  def hop_length(self) -> int:
    """Frame step in samples (160 at 16 kHz)."""
    return _round_half_up(self.hop_length_s * self.sample_rate)

  @property
  def top_freq(self) -> float:
    """Upper filterbank edge in Hz."""
    return self.sample_rate / 2 if self.high_freq is None else self.high_freq

  def num_frames(self, num_samples: int) -> int:
    """F for `num_samples` samples (the last partial frame is zero-padded, not dropped)."""
    if num_samples <= self.win_length:
      return 1
    return 1 + -(-(num_samples - self.win_length) // self.hop_length)


# syncnet_python `SyncNetInstance.evaluate`: python_speech_features.mfcc(audio, 16000) defaults.
SYNCNET_MFCC = MfccConfig()


def _hz_to_htk_mel(hz: npt.ArrayLike) -> np.ndarray:
  return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _htk_mel_to_hz(mel: npt.ArrayLike) -> np.ndarray:
  return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mfcc_filterbank(config: MfccConfig = SYNCNET_MFCC) -> np.ndarray:
  """Unnormalised triangular filters with FFT-bin-snapped edges, [P, K] float64.

  Filter p rises over bins [b_p, b_{p+1}) as (k - b_p) / (b_{p+1} - b_p) and falls over
  [b_{p+1}, b_{p+2}) as (b_{p+2} - k) / (b_{p+2} - b_{p+1}); empty ranges contribute nothing.
  """
  mels = np.linspace(_hz_to_htk_mel(config.low_freq), _hz_to_htk_mel(config.top_freq), config.num_filters + 2)
  edges = np.floor((config.n_fft + 1) * _htk_mel_to_hz(mels) / config.sample_rate)  # [P + 2]
  k = np.arange(config.n_fft // 2 + 1, dtype=np.float64)[None, :]
  lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
  rising_mask = (k >= lo) & (k < mid)
  falling_mask = (k >= mid) & (k < hi)
  # The masks are empty wherever a denominator is zero, so the guard value never shows.
  rising = (k - lo) / np.where(mid > lo, mid - lo, 1.0)
  falling = (hi - k) / np.where(hi > mid, hi - mid, 1.0)
  return np.where(rising_mask, rising, 0.0) + np.where(falling_mask, falling, 0.0)


def _dct2_ortho_matrix(num_in: int, num_out: int) -> np.ndarray:
  """[num_out, num_in] orthonormal DCT-II rows: X_c = s_c sum_n x_n cos(pi c (2n + 1) / (2 num_in))."""
  c = np.arange(num_out)[:, None]
  n = np.arange(num_in)[None, :]
  scale = np.where(c == 0, np.sqrt(1.0 / num_in), np.sqrt(2.0 / num_in))
  return scale * np.cos(np.pi * c * (2 * n + 1) / (2 * num_in))


def mfcc(signal: np.ndarray, config: MfccConfig = SYNCNET_MFCC, *, clip_id: str = "audio") -> np.ndarray:
  """MFCC [C, F] float64 of a 1-D signal, in syncnet_python's layout (cepstra first).

  Equals numpy.stack(list(zip(*python_speech_features.mfcc(signal, sr)))) for the defaults;
  syncnet_python then casts to float32 and reads columns 4v..4v+19 for video frame v.

  Raises:
    ValueError: not 1-D, empty, non-numeric or non-finite; names `clip_id`.
  """
  signal = np.asarray(signal)
  if signal.ndim != 1 or signal.size == 0:
    raise ValueError(f"{clip_id}: expected non-empty 1-D mono audio, got shape {signal.shape}")
  if not (np.issubdtype(signal.dtype, np.integer) or np.issubdtype(signal.dtype, np.floating)):
    raise ValueError(f"{clip_id}: audio must be integer PCM or real float samples, got dtype {signal.dtype}")
  x = signal.astype(np.float64)
  if not np.all(np.isfinite(x)):
    raise ValueError(f"{clip_id}: audio has a non-finite sample at index {int(np.flatnonzero(~np.isfinite(x))[0])}")
  if config.preemphasis:
    x = np.concatenate([x[:1], x[1:] - config.preemphasis * x[:-1]])

  num_frames = config.num_frames(x.shape[0])
  padded_len = (num_frames - 1) * config.hop_length + config.win_length
  x = np.pad(x, (0, padded_len - x.shape[0]))
  frames = np.lib.stride_tricks.sliding_window_view(x, config.win_length)[::config.hop_length]  # [F, 400]
  power = np.square(np.abs(np.fft.rfft(frames, config.n_fft, axis=-1))) / config.n_fft  # [F, K]

  eps = np.finfo(np.float64).eps
  energy = power.sum(axis=-1)
  energy = np.where(energy == 0, eps, energy)
  filtered = power @ mfcc_filterbank(config).T  # [F, P]
  filtered = np.where(filtered == 0, eps, filtered)
  cepstra = np.log(filtered) @ _dct2_ortho_matrix(config.num_filters, config.num_cepstra).T  # [F, C]
  if config.cep_lifter > 0:
    c = np.arange(config.num_cepstra)
    cepstra = cepstra * (1.0 + config.cep_lifter / 2.0 * np.sin(np.pi * c / config.cep_lifter))
  if config.append_energy:
    cepstra[:, 0] = np.log(energy)
  return np.ascontiguousarray(cepstra.T)
