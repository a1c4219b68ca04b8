"""Speech-driven head motion, blinks and brow raises for the synthetic corpus.

Head pose offsets follow the speech: the head nods on stressed energy peaks,
rises with the voice's pitch, sways while the speaker talks, and drifts slowly
all the time. Blinks come every 2-6 s, last 0.1-0.3 s and are mostly
binocular. Brow raises accompany some of the strongest energy peaks.

Conventions follow `talking_heads.face.morphable`: pose offsets are
(yaw, pitch, roll) in radians and (tx, ty, tz) in millimetres, camera axes x
right, y down, z forward; positive pitch tilts the face down, so a nod is a
positive pitch pulse. The offsets are to be ADDED to a base pose. Rotations
act about the neck, about 100 mm below the head centre, so nods and tilts
also move the head centre (computed with `morphable.rotation_matrix`).

Video frame k covers audio [k, k + 1) / fps; features are computed per frame
over that window. All randomness comes from the `rng` argument.

Dimension legend: T video frames.
"""

from __future__ import annotations

from collections.abc import Callable

import librosa
import numpy as np
from scipy import ndimage
from scipy import signal

from talking_heads.audio.windows import SAMPLE_RATE
from talking_heads.face import morphable

# Soft limits of the pose offsets: (yaw, pitch, roll) rad, (tx, ty, tz) mm.
MAX_ROTATION = np.deg2rad([8.0, 6.0, 4.0])
MAX_TRANSLATION = np.array([15.0, 15.0, 15.0])
# Neck pivot below the head centre (y down), mm.
_NECK_PIVOT = np.array([0.0, 100.0, 0.0])
_F0_RANGE_HZ = (70.0, 400.0)


def _check_audio(audio: np.ndarray, name: str = "audio_16k") -> np.ndarray:
  audio = np.asarray(audio, np.float32)
  if audio.ndim != 1:
    raise ValueError(f"{name} must be mono [N], got shape {audio.shape}")
  if not np.all(np.isfinite(audio)):
    raise ValueError(f"{name} contains NaN or infinite samples")
  return audio


def _check_frames(num_frames: int, fps: float) -> None:
  if num_frames < 0:
    raise ValueError(f"num_frames must be >= 0, got {num_frames}")
  if fps <= 0:
    raise ValueError(f"fps must be > 0, got {fps}")


def _frame_bounds(num_frames: int, fps: float) -> np.ndarray:
  """Sample index where each frame starts, plus the end: [T + 1]."""
  return np.round(np.arange(num_frames + 1) * SAMPLE_RATE / fps).astype(
      np.int64)


def energy_envelope(audio_16k: np.ndarray, num_frames: int,
                    fps: float = 25.0) -> np.ndarray:
  """RMS of the 16 kHz audio over each video frame's window: float32 [T].

  Frames past the end of the audio count the missing samples as silence.
  """
  audio = _check_audio(audio_16k)
  _check_frames(num_frames, fps)
  bounds = _frame_bounds(num_frames, fps)
  padded = np.zeros(max(bounds[-1], len(audio)), np.float64)
  padded[:len(audio)] = audio
  energy = np.concatenate([[0.0], np.cumsum(padded**2)])
  sums = energy[bounds[1:]] - energy[bounds[:-1]]
  lengths = np.maximum(np.diff(bounds), 1)
  return np.sqrt(np.maximum(sums, 0.0) / lengths).astype(np.float32)


def pitch_contour(audio_16k: np.ndarray, num_frames: int,
                  fps: float = 25.0) -> tuple[np.ndarray, np.ndarray]:
  """F0 in Hz and a voicing mask per video frame: ([T] float32, [T] bool).

  librosa's YIN with one 64 ms analysis window centred on each frame; YIN has
  no voicing decision, so frames count as voiced when they carry at least 10%
  of the utterance's peak frame energy and F0 is inside the search range.
  """
  audio = _check_audio(audio_16k)
  _check_frames(num_frames, fps)
  f0 = np.zeros(num_frames, np.float32)
  voiced = np.zeros(num_frames, bool)
  hop = SAMPLE_RATE / fps
  if num_frames == 0 or len(audio) < 2:
    return f0, voiced
  centres = np.round((np.arange(num_frames) + 0.5) * hop).astype(np.int64)
  frame_length = 1024
  half = frame_length // 2
  # One YIN frame per video frame: gather windows at the frame centres.
  padded = np.pad(audio, (half, max(0, int(centres[-1]) + half - len(audio))
                           + 1))
  windows = np.stack([padded[c:c + frame_length] for c in centres])
  estimate = librosa.yin(
      windows, fmin=_F0_RANGE_HZ[0], fmax=_F0_RANGE_HZ[1], sr=SAMPLE_RATE,
      frame_length=frame_length, center=False,
      hop_length=frame_length)[:, 0]
  energy = energy_envelope(audio, num_frames, fps)
  loud = energy >= 0.1 * max(float(energy.max()), 1e-8)
  in_range = ((estimate > _F0_RANGE_HZ[0] * 1.05)
              & (estimate < _F0_RANGE_HZ[1] * 0.95))
  voiced = loud & in_range & (energy > 1e-4)
  f0 = np.where(voiced, estimate, 0.0).astype(np.float32)
  return f0, voiced


def _smooth(x: np.ndarray, sigma_s: float, fps: float) -> np.ndarray:
  return ndimage.gaussian_filter1d(x, sigma_s * fps, mode="nearest")


def _activity(energy: np.ndarray, fps: float) -> np.ndarray:
  """Speech activity in [0, 1]: energy over its 95th percentile, smoothed."""
  scale = max(float(np.percentile(energy, 95)), 1e-6)
  return np.clip(_smooth(energy / scale, 0.12, fps), 0.0, 1.0)


def _emphasis_peaks(energy: np.ndarray, fps: float,
                    min_gap_s: float) -> tuple[np.ndarray, np.ndarray]:
  """Frames and strengths (0-1] of prominent energy peaks."""
  if energy.size < 3 or energy.max() <= 0:
    return np.zeros(0, np.int64), np.zeros(0)
  level = _smooth(energy, 0.06, fps) / energy.max()
  peaks, props = signal.find_peaks(
      level, prominence=0.15, distance=max(1, int(round(min_gap_s * fps))))
  return peaks, np.clip(props["prominences"] / 0.6, 0.0, 1.0)


def _pulses(num_frames: int, fps: float, onsets: np.ndarray,
            amplitudes: np.ndarray, kernel_s: float,
            shape: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
  """Sum of `shape(t)` pulses (t in seconds from onset, < kernel_s)."""
  out = np.zeros(num_frames)
  t = np.arange(int(np.ceil(kernel_s * fps))) / fps
  kernel = shape(t)
  for onset, amp in zip(onsets, amplitudes):
    end = min(num_frames, onset + len(kernel))
    if onset < end:
      out[onset:end] += amp * kernel[:end - onset]
  return out


def _drift(num_frames: int, fps: float, rng: np.random.Generator,
           amplitude: float, freq_range: tuple[float, float]) -> np.ndarray:
  """Slow random motion: three sinusoids with random frequency and phase."""
  t = np.arange(num_frames) / fps
  freqs = rng.uniform(*freq_range, size=3)
  phases = rng.uniform(0, 2 * np.pi, size=3)
  weights = rng.uniform(0.5, 1.0, size=3)
  weights *= amplitude / np.sqrt(np.sum(weights**2) / 2)
  return np.sum(weights[:, None]
                * np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None]),
                axis=0)


def _soft_limit(x: np.ndarray, limit: np.ndarray) -> np.ndarray:
  """Smoothly saturates x at +-limit (tanh), keeps small values unchanged."""
  return limit * np.tanh(x / limit)


def head_pose_trajectory(audio_16k: np.ndarray, num_frames: int,
                         rng: np.random.Generator,
                         fps: float = 25.0) -> np.ndarray:
  """Head pose offsets driven by the speech: float32 [T, 6].

  Columns (yaw, pitch, roll) in radians within +-MAX_ROTATION and
  (tx, ty, tz) in millimetres within +-MAX_TRANSLATION, to be added to a base
  pose. Same audio and rng state -> same result.

  Args:
    audio_16k: mono float audio at 16 kHz.
    num_frames: T video frames (frames past the audio are silent).
    rng: random generator (drift, nod sizes, sway phase).
    fps: video frame rate.
  """
  audio = _check_audio(audio_16k)
  _check_frames(num_frames, fps)
  if num_frames == 0:
    return np.zeros((0, 6), np.float32)
  energy = energy_envelope(audio, num_frames, fps)
  f0, voiced = pitch_contour(audio, num_frames, fps)
  activity = _activity(energy, fps)

  # Draws that do not depend on the audio come first, so the same rng state
  # gives the same drift whatever is said.
  drift_angles = [
      _drift(num_frames, fps, rng, np.deg2rad(1.5), (0.03, 0.2)),
      _drift(num_frames, fps, rng, np.deg2rad(1.0), (0.03, 0.2)),
      _drift(num_frames, fps, rng, np.deg2rad(0.7), (0.03, 0.15))]
  drift_mm = np.stack([_drift(num_frames, fps, rng, 2.0, (0.02, 0.1))
                       for _ in range(3)], axis=-1)
  t = np.arange(num_frames) / fps
  sway = (np.deg2rad(rng.uniform(1.0, 2.5)) * activity
          * np.sin(2 * np.pi * rng.uniform(0.25, 0.5) * t
                   + rng.uniform(0, 2 * np.pi)))

  # Pitch accent: semitones relative to the median voiced F0, held over
  # unvoiced frames, so the head rises on high pitch. The median filter
  # removes YIN's isolated octave errors.
  semitones = np.zeros(num_frames)
  if voiced.sum() >= 2:
    st = 12 * np.log2(f0[voiced] / np.median(f0[voiced]))
    st = signal.medfilt(st, kernel_size=5) if st.size >= 5 else st
    semitones = np.interp(np.arange(num_frames), np.flatnonzero(voiced), st)
  semitones = _smooth(np.clip(semitones, -6, 6), 0.1, fps) * activity

  # Nods: a downward pulse that rebounds, at each prominent energy peak.
  peaks, strength = _emphasis_peaks(energy, fps, min_gap_s=0.45)
  nod_size = (np.deg2rad(rng.uniform(2.0, 4.0, size=len(peaks)))
              * np.maximum(strength, 0.4))
  nod_onsets = np.maximum(peaks - int(round(0.08 * fps)), 0)
  nods = _pulses(
      num_frames, fps, nod_onsets, nod_size, 0.8,
      lambda t: np.sin(2 * np.pi * t / 0.8) * np.exp(-t / 0.3))

  yaw = sway + drift_angles[0]
  pitch = nods - np.deg2rad(0.35) * semitones + drift_angles[1]
  roll = 0.3 * sway + np.deg2rad(0.15) * semitones + drift_angles[2]
  angles = _soft_limit(np.stack([yaw, pitch, roll], axis=-1), MAX_ROTATION)

  # Rotating about the neck moves the head centre: (R - I) @ (-pivot).
  rot = morphable.rotation_matrix(angles[:, 0], angles[:, 1], angles[:, 2])
  pivot_shift = np.einsum("tij,j->ti", rot - np.eye(3), -_NECK_PIVOT)
  lean = np.stack([
      np.zeros(num_frames), np.zeros(num_frames),
      -3.0 * _smooth(activity, 0.5, fps)], axis=-1)   # lean in when talking
  translation = _soft_limit(pivot_shift + lean + drift_mm, MAX_TRANSLATION)
  return np.concatenate([angles, translation], axis=-1).astype(np.float32)


def blink_trajectory(num_frames: int, rng: np.random.Generator,
                     fps: float = 25.0) -> np.ndarray:
  """Eye closure per frame: float32 [T, 2] (left, right) in [0, 1].

  Blinks start 2-6 s apart, last 0.1-0.3 s (fast close, brief hold, slower
  open) and are timed so a frame samples the fully closed moment. About 90%
  are binocular; the rest close one eye only partly.
  """
  _check_frames(num_frames, fps)
  out = np.zeros((num_frames, 2))
  t_frames = (np.arange(num_frames) + 0.5) / fps
  onset = rng.uniform(0.3, 4.0)
  duration_s = num_frames / fps
  while onset < duration_s:
    length = rng.uniform(0.1, 0.3)
    amplitude = np.ones(2)
    if rng.random() < 0.1:
      amplitude[rng.integers(2)] = rng.uniform(0.3, 0.8)
    # Snap the closed moment to a frame centre.
    peak = (np.floor(onset * fps) + 0.5) / fps
    close, hold = 0.35 * length, 0.15 * length
    opening = length - close - hold
    u = t_frames - (peak - close - 0.5 * hold)
    shape = np.where(
        u < close, np.sin(0.5 * np.pi * np.clip(u / close, 0, 1))**2,
        np.where(u < close + hold, 1.0,
                 np.cos(0.5 * np.pi * np.clip(
                     (u - close - hold) / opening, 0, 1))**2))
    shape = np.where((u >= 0) & (u <= length), shape, 0.0)
    out = np.maximum(out, shape[:, None] * amplitude[None])
    onset += rng.uniform(2.0, 6.0)
  return out.astype(np.float32)


def brow_trajectory(audio_16k: np.ndarray, num_frames: int,
                    rng: np.random.Generator,
                    fps: float = 25.0) -> np.ndarray:
  """brow_raise coefficient from energy peaks: float32 [T] in [0, 1].

  About half of the prominent energy peaks (at least 1 s apart) raise the
  brows by 0.2-0.6 (rise 0.15 s, hold 0.2 s, relax 0.4 s). Combine with the
  viseme trajectory's brow column by taking the maximum.
  """
  audio = _check_audio(audio_16k)
  _check_frames(num_frames, fps)
  energy = energy_envelope(audio, num_frames, fps)
  peaks, strength = _emphasis_peaks(energy, fps, min_gap_s=1.0)
  chosen = rng.random(len(peaks)) < 0.5
  sizes = rng.uniform(0.2, 0.6, size=len(peaks)) * np.maximum(strength, 0.5)
  rise, hold, relax = 0.15, 0.2, 0.4
  onsets = np.maximum(peaks - int(round(rise * fps)), 0)

  def shape(t):
    return np.where(
        t < rise, np.sin(0.5 * np.pi * t / rise)**2,
        np.where(t < rise + hold, 1.0,
                 np.cos(0.5 * np.pi * np.clip(
                     (t - rise - hold) / relax, 0, 1))**2))

  brows = _pulses(num_frames, fps, onsets[chosen], sizes[chosen],
                  rise + hold + relax, shape)
  return np.clip(brows, 0.0, 1.0).astype(np.float32)
