"""DAE-Talker's speech2latent (Sec. 3.2, 4.1.2): audio features -> diffusion-autoencoder latents.

Dimensions: B batch, F audio feature frames, A feature width, T video frames, R = F' / T feature
frames per video frame after resampling, D model width (256), P pose parameters (3: roll, pitch,
yaw, in the order the caller's data uses), Z latent width (512).

  features [B, F, A]  --resample to T*R frames (only when the feature rate is not R * video fps)
  --Conv1d, stride R--------------------------------------> [B, T, D]
  --speech encoder: N Conformer blocks--------------------> h [B, T, D]
  --pose predictor: 2 x (Conv1d k3 -> ReLU -> LN -> dropout), Dense(P) -> predicted pose [B, T, P]
  h + pose adaptor Dense(P -> D)(conditioning pose)
  --latent decoder: N Conformer blocks--> Dense(Z) ------> latents [B, T, Z]

Conditioning pose: the ground-truth pose in training (teacher forcing, as the paper: "the
ground-truth head poses are projected and added to the speech encoder output"); at inference the
predicted pose (stop-gradient) or a user-given `pose_override` (pose control, Table 4).

Frame rates. The paper's wav2vec2 XLSR features run at 50 fps, 2 per 25 fps video frame, so the
first convolution has stride 2. Wav2Lip's mel runs at 80 fps, 3.2 frames per video frame, which
no stride matches: features are linearly resampled to R = ceil(rate / video fps) frames per video
frame (80 fps -> 100 fps, R = 4) before the stride-R convolution. Resampled frame j sits at time
j / (R * video fps) and source frame i at i / rate (Wav2Lip's alignment: video frame t starts at
mel frame 3.2 t); with a whole ratio (wav2vec2, RADIO's 100 fps mel) resampling is the identity
and is skipped. T is the mask's length; F must be within R + 1 frames of T * rate / video fps.

Padding. `mask [B, T]` marks valid video frames. A feature frame is padding when the video frame
it falls in is, and is zeroed before anything mixes frames; the Conformers and the pose predictor
mask padded frames too, so outputs at valid frames do not depend on anything at padded ones.
Outputs at padded frames are zero.

The loss (Eq. 5) is masked MSE on latents + alpha * masked MSE on pose. The paper does not give
alpha.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talking_heads.nn import conformer

VIDEO_FPS = 25.0
LATENT_DIM = 512
POSE_DIM = 3
# Features may differ from T * rate / video fps by R + this many frames (centred mel frames add
# one, wav2vec2's receptive field drops one); more means features and video do not match.
_LENGTH_SLACK = 1


@dataclasses.dataclass(frozen=True)
class AudioFeatureSpec:
  """What speech2latent reads: a named feature of width `dim` at `frames_per_second`.

  A feature extractor (Wav2Lip mel now, wav2vec2 later) describes its output with one of these.
  """
  name: str
  dim: int
  frames_per_second: float

  def __post_init__(self):
    if self.dim < 1 or not self.frames_per_second > 0:
      raise ValueError(f"audio feature {self.name!r}: dim and frames_per_second must be "
                       f"positive, got {self.dim}, {self.frames_per_second}")

  def frames_per_video_frame(self, video_fps: float) -> int:
    """R: feature frames per video frame after resampling (ceil of the rate ratio)."""
    return max(1, math.ceil(self.frames_per_second / video_fps - 1e-9))

  def needs_resampling(self, video_fps: float) -> bool:
    """False when the rate is already a whole multiple R of the video rate."""
    return not math.isclose(self.frames_per_second,
                            self.frames_per_video_frame(video_fps) * video_fps)


WAV2LIP_MEL_FEATURES = AudioFeatureSpec("wav2lip_mel", 80, 80.0)     # 16 kHz, hop 200
RADIO_MEL_FEATURES = AudioFeatureSpec("radio_mel", 80, 100.0)       # 16 kHz, hop 160
WAV2VEC2_BASE_FEATURES = AudioFeatureSpec("wav2vec2_base", 768, 50.0)
WAV2VEC2_XLSR_FEATURES = AudioFeatureSpec("wav2vec2_xlsr", 1024, 50.0)  # the paper's


def resample_features(features: jax.Array, num_frames: int, source_fps: float,
                      target_fps: float) -> jax.Array:
  """Linear interpolation in time: [B, F, A] at source_fps -> [B, num_frames, A] at target_fps.

  Output frame j reads source position j * source_fps / target_fps, clamped to the last frame.
  """
  length = features.shape[1]
  pos = np.minimum(np.arange(num_frames) * (source_fps / target_fps), length - 1)
  lo = np.floor(pos).astype(np.int32)
  hi = np.minimum(lo + 1, length - 1)
  w = jnp.asarray((pos - lo)[None, :, None], features.dtype)
  return features[:, lo] * (1 - w) + features[:, hi] * w


def feature_frame_mask(mask: jax.Array, num_features: int, feature_fps: float,
                       video_fps: float) -> jax.Array:
  """[B, T] video-frame mask -> [B, F]: feature frame i is valid when its video frame is."""
  length = mask.shape[1]
  # The epsilon keeps frames that sit exactly on a video frame's start (i * 25 / 80 = 5) in it.
  video_index = np.floor(np.arange(num_features) * (video_fps / feature_fps) + 1e-6)
  inside = video_index < length
  return mask[:, np.minimum(video_index, length - 1).astype(np.int32)] & inside[None, :]


def _check(name: str, x: jax.Array | None, shape: tuple[int, ...]) -> None:
  if x is not None and tuple(x.shape) != shape:
    raise ValueError(f"Speech2Latent {name}: expected shape {shape}, got {tuple(x.shape)}")


class Speech2Latent(nn.Module):
  """Speech2latent (module docstring). Sizes default to the paper's (Sec. 4.1.2).

  `__call__(features [B, F, A], pose [B, T, P] or None, mask [B, T] bool, train,
  pose_override=None)` -> {"latents": [B, T, Z], "pose": [B, T, P] predicted}, float32. The
  latent decoder is conditioned on `pose_override` when given, else on `pose` when `train` (which
  then requires it), else on the predicted pose. Dropout draws from the "dropout" rng in training.

  Attributes:
    feature_spec: the audio feature read (the paper: WAV2VEC2_XLSR_FEATURES; the Wav2Lip mel
      until a wav2vec2 encoder exists).
    video_fps: video frame rate.
    model_dim: D, the Conformer width (256).
    num_heads: attention heads (2).
    encoder_blocks, decoder_blocks: Conformer blocks in the speech encoder and latent decoder (4).
    ffn_dim: Conformer FFN width (not given by the paper; 4 D).
    kernel_size: Conformer depthwise kernel (13).
    input_kernel: kernel of the strided input convolution (not given; None = the stride R, one
      video frame's features). It must be >= R; the extra frames are split between both sides.
    pose_channels: pose predictor channels (384).
    pose_kernel: pose predictor kernel (3).
    pose_dim: P (3).
    latent_dim: Z (512, the diffusion autoencoder's semantic latent).
    dropout_rate: every dropout (the paper does not give it; ESPnet's default).
  """
  feature_spec: AudioFeatureSpec = WAV2LIP_MEL_FEATURES
  video_fps: float = VIDEO_FPS
  model_dim: int = 256
  num_heads: int = 2
  encoder_blocks: int = 4
  decoder_blocks: int = 4
  ffn_dim: int = 1024
  kernel_size: int = 13
  input_kernel: int | None = None
  pose_channels: int = 384
  pose_kernel: int = 3
  pose_dim: int = POSE_DIM
  latent_dim: int = LATENT_DIM
  dropout_rate: float = 0.1
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  def _conformer(self, num_blocks: int, name: str) -> conformer.Conformer:
    return conformer.Conformer(num_blocks, self.num_heads, self.ffn_dim, self.kernel_size,
                               dropout_rate=self.dropout_rate,
                               attention_dropout_rate=self.dropout_rate, dtype=self.dtype,
                               param_dtype=self.param_dtype, name=name)

  def _input_conv(self, features: jax.Array, mask: jax.Array) -> jax.Array:
    """features [B, F, A] -> [B, T, D] through the stride-R convolution."""
    spec, length = self.feature_spec, mask.shape[1]
    stride = spec.frames_per_video_frame(self.video_fps)
    kernel = stride if self.input_kernel is None else self.input_kernel
    if kernel < stride:
      raise ValueError(f"Speech2Latent: input_kernel {kernel} is smaller than the stride "
                       f"{stride}; frames of {spec.name} would be skipped")
    expected = length * spec.frames_per_second / self.video_fps
    if abs(features.shape[1] - expected) > stride + _LENGTH_SLACK:
      raise ValueError(f"Speech2Latent: {features.shape[1]} {spec.name} frames at "
                       f"{spec.frames_per_second:g} fps do not match {length} video frames at "
                       f"{self.video_fps:g} fps (expected about {expected:g})")
    valid = feature_frame_mask(mask, features.shape[1], spec.frames_per_second, self.video_fps)
    x = jnp.where(valid[..., None], features.astype(self.dtype), 0)
    if spec.needs_resampling(self.video_fps):
      x = resample_features(x, length * stride, spec.frames_per_second,
                            stride * self.video_fps)                           # [B, T*R, A]
    else:
      x = jnp.pad(x[:, :length * stride],
                  ((0, 0), (0, max(0, length * stride - x.shape[1])), (0, 0)))
    extra = kernel - stride
    padding = (extra // 2, extra - extra // 2)
    return nn.Conv(self.model_dim, (kernel,), strides=(stride,), padding=(padding,),
                   dtype=self.dtype, param_dtype=self.param_dtype, name="input_conv")(x)

  def _pose_predictor(self, h: jax.Array, mask: jax.Array, deterministic: bool) -> jax.Array:
    """Speech encoder output [B, T, D] -> predicted pose [B, T, P]."""
    padding = conformer.conv_padding(self.pose_kernel, causal=False)
    for i in range(2):
      h = jnp.where(mask[..., None], h, 0)
      h = nn.Conv(self.pose_channels, (self.pose_kernel,), padding=(padding,), dtype=self.dtype,
                  param_dtype=self.param_dtype, name=f"pose_conv_{i}")(h)      # [B, T, 384]
      h = nn.LayerNorm(dtype=jnp.float32, param_dtype=self.param_dtype,
                       name=f"pose_norm_{i}")(nn.relu(h)).astype(self.dtype)
      h = nn.Dropout(self.dropout_rate)(h, deterministic=deterministic)
    return nn.Dense(self.pose_dim, dtype=self.dtype, param_dtype=self.param_dtype,
                    name="pose_out")(h).astype(jnp.float32)

  @nn.compact
  def __call__(self, features: jax.Array, pose: jax.Array | None, mask: jax.Array,
               train: bool, pose_override: jax.Array | None = None) -> dict[str, jax.Array]:
    if features.ndim != 3 or mask.ndim != 2 or features.shape[0] != mask.shape[0]:
      raise ValueError(f"Speech2Latent: expected features [B, F, A] and mask [B, T], got "
                       f"{tuple(features.shape)} and {tuple(mask.shape)}")
    batch, length = mask.shape
    _check("features", features, (batch, features.shape[1], self.feature_spec.dim))
    _check("pose", pose, (batch, length, self.pose_dim))
    _check("pose_override", pose_override, (batch, length, self.pose_dim))
    mask = mask.astype(bool)
    deterministic = not train

    x = self._input_conv(features, mask)                                       # [B, T, D]
    h = self._conformer(self.encoder_blocks, "speech_encoder")(
        x, mask, deterministic=deterministic)                                  # [B, T, D]
    predicted = self._pose_predictor(h, mask, deterministic)                   # [B, T, P]

    if pose_override is not None:
      condition = pose_override
    elif train:
      if pose is None:
        raise ValueError("Speech2Latent: training needs the ground-truth pose [B, T, P]")
      condition = pose
    else:
      condition = jax.lax.stop_gradient(predicted)
    h = h + nn.Dense(self.model_dim, dtype=self.dtype, param_dtype=self.param_dtype,
                     name="pose_adaptor")(condition.astype(self.dtype))        # [B, T, D]
    h = self._conformer(self.decoder_blocks, "latent_decoder")(
        h, mask, deterministic=deterministic)
    latents = nn.Dense(self.latent_dim, dtype=self.dtype, param_dtype=self.param_dtype,
                       name="latent_out")(h).astype(jnp.float32)               # [B, T, Z]
    keep = mask[..., None]
    return {"latents": jnp.where(keep, latents, 0), "pose": jnp.where(keep, predicted, 0)}


def masked_mse(pred: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of (pred - target)^2 over valid frames and features: [B, T, ...], mask [B, T]."""
  if pred.shape != target.shape or tuple(mask.shape) != tuple(pred.shape[:2]):
    raise ValueError(f"masked_mse: prediction {tuple(pred.shape)}, target {tuple(target.shape)} "
                     f"and mask {tuple(mask.shape)} do not match")
  err = jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32))
  err = err.reshape(err.shape[:2] + (-1,))                                     # [B, T, E]
  weight = mask.astype(jnp.float32)[..., None]
  count = jnp.maximum(jnp.sum(weight) * err.shape[-1], 1.0)
  return jnp.sum(err * weight) / count


def speech2latent_loss(pred: dict[str, jax.Array], target_latents: jax.Array,
                       target_pose: jax.Array, mask: jax.Array,
                       alpha: float = 1.0) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Eq. 5: L_latent + alpha * L_pose over valid frames -> (loss, {"latent_mse", "pose_mse"}).

  `pred` is Speech2Latent's output; alpha is not given by the paper (1 weighs both equally).
  """
  latent = masked_mse(pred["latents"], target_latents, mask)
  pose = masked_mse(pred["pose"], target_pose, mask)
  return latent + alpha * pose, {"latent_mse": latent, "pose_mse": pose}
