"""Temporal metrics: frame-to-frame flicker, head-motion diversity and the beat-align score.

Dimension legend: ... leading batch dimensions (e.g. B videos), T frames, H height, W width,
C channels, D motion features (e.g. yaw, pitch, roll), J tracked points.

Flicker: mean over t = 0..T-2 and all pixels of |f[t+1] - f[t]|, in the input's units (grey levels
for uint8 frames). `flicker_error` compares with the reference video instead: the mean of
|(g[t+1] - g[t]) - (r[t+1] - r[t])|, which is 0 when the generated video changes exactly as the
reference does, however much the reference moves.

Head-motion diversity (FD2Talk, following SadTalker): head-motion features per frame (FD2Talk uses
Hopenet's; yaw/pitch/roll in degrees are the usual stand-in, e.g. `pose[:, :3]` of the dataset in
degrees), the standard deviation over frames (population, ddof 0) of each feature, averaged over the
D features. Values are in the features' units.

Beat-align score (FD2Talk cites Bailando; this is Bailando's `utils/beat_align_score.py`):
  motion beats: kinetic velocity v[t] = mean over points j of ||m[t+1, j] - m[t, j]|| (T-1 values),
    smoothed by `scipy.ndimage.gaussian_filter` (sigma 5 frames, 'reflect'), beats = strict local minima
    (`scipy.signal.argrelextrema(v, np.less)`; end points never count);
  audio beats: audio resampled to fps * 512 Hz so that one onset frame (hop 512) is one video frame;
    librosa onset strength, then `librosa.beat.beat_track(hop_length=512, tightness=100)` seeded with
    the tempo librosa estimates on the audio at 22050 Hz (Bailando's `start_bpm`); beats at frames
    >= T-1 (past the velocity curve) are dropped as Bailando's truncation does;
  score = mean over audio beats b of exp(-min_m (m - b)^2 / (2 sigma^2)), sigma = 3 frames.
Bailando's constants are for 60 fps dance; they are kept as defaults and exposed as arguments.
A video without motion beats scores 0 (Bailando's code would fail); audio without beats raises.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import numpy.typing as npt
import scipy.ndimage
import scipy.signal

BEAT_HOP_LENGTH = 512
TEMPO_SAMPLE_RATE = 22050


def _check_video(name: str, frames: jax.Array) -> None:
  if frames.ndim < 4:
    raise ValueError(f"{name}: expected frames [..., T, H, W, C], got shape {frames.shape}")
  if frames.shape[-4] < 2:
    raise ValueError(f"{name}: needs at least 2 frames, got {frames.shape[-4]}")


@jax.jit
def flicker(frames: jax.Array) -> jax.Array:
  """Mean absolute frame-to-frame change per video: `[..., T, H, W, C]` -> `[...]` float32."""
  frames = jnp.asarray(frames)
  _check_video("flicker", frames)
  x = frames.astype(jnp.float32)
  return jnp.mean(jnp.abs(x[..., 1:, :, :, :] - x[..., :-1, :, :, :]), axis=(-4, -3, -2, -1))


@jax.jit
def flicker_error(generated: jax.Array, reference: jax.Array) -> jax.Array:
  """Mean |generated change - reference change| per video: `[..., T, H, W, C]` x 2 -> `[...]`."""
  generated, reference = jnp.asarray(generated), jnp.asarray(reference)
  _check_video("flicker_error", generated)
  if generated.shape != reference.shape:
    raise ValueError(f"flicker_error: generated {generated.shape} and reference {reference.shape} differ")
  g = generated.astype(jnp.float32)
  r = reference.astype(jnp.float32)
  change = (g[..., 1:, :, :, :] - g[..., :-1, :, :, :]) - (r[..., 1:, :, :, :] - r[..., :-1, :, :, :])
  return jnp.mean(jnp.abs(change), axis=(-4, -3, -2, -1))


@jax.jit
def head_motion_diversity(features: jax.Array) -> jax.Array:
  """Mean over features of the per-feature std over frames: `[..., T, D]` -> `[...]` float32."""
  features = jnp.asarray(features)
  if features.ndim < 2 or features.shape[-2] < 2:
    raise ValueError(f"head_motion_diversity: expected [..., T >= 2, D] features, got shape {features.shape}")
  return jnp.mean(jnp.std(features.astype(jnp.float32), axis=-2), axis=-1)


def kinetic_velocity(motion: npt.ArrayLike, smoothing_sigma: float = 5.0) -> np.ndarray:
  """Smoothed kinetic velocity: `[T, D]` (one point) or `[T, J, D]` -> `[T-1]` float64."""
  motion = np.asarray(motion, dtype=np.float64)
  if motion.ndim == 2:
    motion = motion[:, None, :]
  if motion.ndim != 3 or motion.shape[0] < 3:
    raise ValueError(f"kinetic_velocity: expected motion [T >= 3, D] or [T >= 3, J, D], got {motion.shape}")
  if not np.isfinite(motion).all():
    frame = int(np.argwhere(~np.isfinite(motion))[0, 0])
    raise ValueError(f"kinetic_velocity: motion at frame {frame} is not finite")
  velocity = np.linalg.norm(np.diff(motion, axis=0), axis=-1).mean(axis=-1)
  return scipy.ndimage.gaussian_filter(velocity, smoothing_sigma)


def motion_beats(motion: npt.ArrayLike, smoothing_sigma: float = 5.0) -> np.ndarray:
  """Frames (indices into the T-1 velocities) where the smoothed kinetic velocity has a strict local minimum."""
  velocity = kinetic_velocity(motion, smoothing_sigma)
  return scipy.signal.argrelextrema(velocity, np.less)[0]


def audio_beats(audio: npt.ArrayLike, sample_rate: int, fps: float, *, tightness: float = 100.0) -> np.ndarray:
  """Beat positions in video frames: mono audio `[N]` -> sorted int frame indices."""
  audio = np.asarray(audio, dtype=np.float32)
  if audio.ndim != 1 or audio.size == 0:
    raise ValueError(f"audio_beats: expected mono audio [N > 0], got shape {audio.shape}")
  if not np.isfinite(audio).all():
    raise ValueError("audio_beats: audio has non-finite samples")
  beat_rate = fps * BEAT_HOP_LENGTH
  if not math.isclose(beat_rate, round(beat_rate)):
    raise ValueError(f"audio_beats: fps {fps} x {BEAT_HOP_LENGTH} is not a whole sample rate")
  beat_rate = int(round(beat_rate))
  resampled = librosa.resample(audio, orig_sr=sample_rate, target_sr=beat_rate)
  for_tempo = librosa.resample(audio, orig_sr=sample_rate, target_sr=TEMPO_SAMPLE_RATE)
  start_bpm = float(librosa.feature.tempo(y=for_tempo, sr=TEMPO_SAMPLE_RATE)[0])
  envelope = librosa.onset.onset_strength(y=resampled, sr=beat_rate)
  _, beats = librosa.beat.beat_track(onset_envelope=envelope, sr=beat_rate, hop_length=BEAT_HOP_LENGTH,
                                     start_bpm=start_bpm, tightness=tightness)
  return np.asarray(beats, dtype=np.int64)


def beat_align_score(audio_beat_frames: npt.ArrayLike, motion_beat_frames: npt.ArrayLike,
                     sigma: float = 3.0) -> float:
  """Mean over audio beats of exp(-(distance to the nearest motion beat)^2 / (2 sigma^2)), in frames."""
  audio_beat_frames = np.asarray(audio_beat_frames, dtype=np.float64).reshape(-1)
  motion_beat_frames = np.asarray(motion_beat_frames, dtype=np.float64).reshape(-1)
  if audio_beat_frames.size == 0:
    raise ValueError("beat_align_score: no audio beats, the score is undefined")
  if motion_beat_frames.size == 0:
    return 0.0
  nearest = np.min((motion_beat_frames[None, :] - audio_beat_frames[:, None]) ** 2, axis=1)
  return float(np.mean(np.exp(-nearest / (2.0 * sigma * sigma))))


def beat_align(motion: npt.ArrayLike, audio: npt.ArrayLike, sample_rate: int, fps: float, *,
               smoothing_sigma: float = 5.0, sigma: float = 3.0) -> float:
  """Bailando's beat-align score of one video's head motion `[T, D]` / `[T, J, D]` against its audio `[N]`."""
  motion = np.asarray(motion)
  num_velocities = motion.shape[0] - 1 if motion.ndim >= 2 else 0
  beats = audio_beats(audio, sample_rate, fps)
  beats = beats[beats < num_velocities]
  if beats.size == 0:
    raise ValueError(f"beat_align: no audio beat within the {num_velocities + 1} frames of motion")
  return beat_align_score(beats, motion_beats(motion, smoothing_sigma), sigma)

