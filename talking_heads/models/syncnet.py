"""Lip-sync experts: Wav2Lip's SyncNet_color and syncnet_python's network S (LSE-C/LSE-D).

Dimensions: B batch, T frames in a window (5), H, W image size, M mel bins (80), F audio frames
(16 mel frames for SyncNet_color, 20 MFCC frames for S), K MFCC coefficients (13), D embedding
width.

SyncNetColor (Wav2Lip `models/syncnet.py`, weights `lipsync_expert.pth`):
  faces [B, 48, 96, 3T]  lower halves of T=5 96x96 frames, BGR / 255, frame-major channels
  mels  [B, 80, 16, 1]   Wav2Lip mel window (0.2 s)
  -> two L2-normalised [B, 512] embeddings (non-negative: the last block ends in a ReLU).

SyncNetS (syncnet_python `SyncNetModel.S`, weights `syncnet_v2.model`):
  lips [B, 5, 224, 224, 3]  NDHWC, BGR raw 0..255 floats
  mfcc [B, 13, 20, 1]       python_speech_features MFCC columns 4v .. 4v+19
  -> [B, 1024] embeddings, NOT normalised (LSE-D is the Euclidean distance between them).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talking_heads.models import conv_blocks
from talking_heads.models.conv_blocks import ConvSpec
from talking_heads.models.conv_blocks import res

SYNCNET_T = 5
FACE_SIZE = 96
MEL_BINS = 80
MEL_STEP = 16

# Wav2Lip SyncNet_color.face_encoder (sizes for a 48x96 input in the comments).
FACE_ENCODER: tuple[ConvSpec, ...] = (
    ConvSpec(32, 7, 1, 3),                                 # 48x96
    ConvSpec(64, 5, (1, 2), 1), *res(64, 2),               # 46x47
    ConvSpec(128, 3, 2, 1), *res(128, 3),                  # 23x24
    ConvSpec(256, 3, 2, 1), *res(256, 2),                  # 12x12
    ConvSpec(512, 3, 2, 1), *res(512, 2),                  # 6x6
    ConvSpec(512, 3, 2, 1),                                # 3x3
    ConvSpec(512, 3, 1, 0),                                # 1x1
    ConvSpec(512, 1, 1, 0),
)

# Wav2Lip SyncNet_color.audio_encoder (sizes for an 80x16 mel window).
AUDIO_ENCODER: tuple[ConvSpec, ...] = (
    ConvSpec(32, 3, 1, 1), *res(32, 2),                    # 80x16
    ConvSpec(64, 3, (3, 1), 1), *res(64, 2),               # 27x16
    ConvSpec(128, 3, 3, 1), *res(128, 2),                  # 9x6
    ConvSpec(256, 3, (3, 2), 1), *res(256, 2),             # 3x3
    ConvSpec(512, 3, 1, 0),                                # 1x1
    ConvSpec(512, 1, 1, 0),
)

# syncnet_python S: conv layers (features, kernel, stride, padding) and the max-pool after each
# (window, stride, padding) or None. The audio tower's 1x1/1 max-pool is the identity and omitted.
S_AUDIO_CONVS = (
    (64, (3, 3), (1, 1), (1, 1), None),
    (192, (3, 3), (1, 1), (1, 1), ((3, 3), (1, 2), (0, 0))),
    (384, (3, 3), (1, 1), (1, 1), None),
    (256, (3, 3), (1, 1), (1, 1), None),
    (256, (3, 3), (1, 1), (1, 1), ((3, 3), (2, 2), (0, 0))),
    (512, (5, 4), (1, 1), (0, 0), None),
)
S_LIP_CONVS = (
    (96, (5, 7, 7), (1, 2, 2), (0, 0, 0), ((1, 3, 3), (1, 2, 2), (0, 0, 0))),
    (256, (1, 5, 5), (1, 2, 2), (0, 1, 1), ((1, 3, 3), (1, 2, 2), (0, 1, 1))),
    (256, (1, 3, 3), (1, 1, 1), (0, 1, 1), None),
    (256, (1, 3, 3), (1, 1, 1), (0, 1, 1), None),
    (256, (1, 3, 3), (1, 1, 1), (0, 1, 1), ((1, 3, 3), (1, 2, 2), (0, 0, 0))),
    (512, (1, 6, 6), (1, 1, 1), (0, 0, 0), None),   # kernel = the 6x6 map left at 224 px
)
S_EMBED = 1024
S_LIP_SIZE = 224


def _pooled_size(n: int, kernel: int, stride: int, padding: int) -> int:
  return (n + 2 * padding - kernel) // stride + 1


def s_lip_map_size(lip_size: int) -> int:
  """Side of S's lip feature map before its last conv (6 at the published 224 px input)."""
  n = lip_size
  for _, kernel, stride, padding, pool in S_LIP_CONVS[:-1]:
    n = _pooled_size(n, kernel[1], stride[1], padding[1])
    if pool is not None:
      n = _pooled_size(n, pool[0][1], pool[1][1], pool[2][1])
  if n < 1:
    raise ValueError(f"SyncNetS: lips of {lip_size} px leave no feature map before the last conv")
  return n


def _check_shape(x: jax.Array, expected: tuple[int, ...], what: str) -> None:
  if tuple(x.shape[1:]) != expected:
    raise ValueError(f"{what}: expected shape [B, {', '.join(map(str, expected))}], "
                     f"got {tuple(x.shape)}")


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """x / max(||x||, eps) over the last axis (PyTorch `F.normalize`), in float32."""
  x = x.astype(jnp.float32)
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def stack_lower_halves(frames: jax.Array | np.ndarray, *, to_bgr: bool) -> jax.Array:
  """Frames [B, T, H, W, 3] -> SyncNetColor faces [B, H - H//2, W, 3T] float32 in [0, 1].

  Integer frames are divided by 255, floating frames are taken as already in [0, 1]. Channels are
  frame-major (frame t occupies 3t .. 3t+2) as Wav2Lip concatenates its window. `to_bgr` reverses
  RGB to BGR, the order the published Wav2Lip weights were trained on (OpenCV frames).
  """
  frames = jnp.asarray(frames)
  if frames.ndim != 5 or frames.shape[-1] != 3:
    raise ValueError(f"stack_lower_halves: expected frames [B, T, H, W, 3], "
                     f"got {tuple(frames.shape)}")
  x = frames.astype(jnp.float32)
  if jnp.issubdtype(frames.dtype, jnp.integer):
    x = x / 255.0
  if to_bgr:
    x = x[..., ::-1]
  b, t, h, w, _ = x.shape
  x = x[:, :, h // 2:]                                         # [B, T, H/2, W, 3]
  return x.transpose(0, 2, 3, 1, 4).reshape(b, h - h // 2, w, 3 * t)


class SyncNetColor(nn.Module):
  """Wav2Lip's colour lip-sync expert (SyncNet_color); see the module docstring for inputs.

  `__call__` returns (audio_embedding, face_embedding), each [B, D] float32 and L2-normalised,
  in the reference's order. BatchNorm runs on batch statistics when `use_running_average` is False.

  Attributes:
    width: channel multiplier of every layer (1.0 is the published network, D = 512; demo
      configs use less to train on a CPU).
  """
  width: float = 1.0
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  def setup(self):
    self.face_encoder = conv_blocks.conv_blocks(conv_blocks.scale_widths(FACE_ENCODER, self.width),
                                                self.dtype, self.param_dtype)
    self.audio_encoder = conv_blocks.conv_blocks(conv_blocks.scale_widths(AUDIO_ENCODER, self.width),
                                                 self.dtype, self.param_dtype)

  def encode_faces(self, faces: jax.Array, *, use_running_average: bool) -> jax.Array:
    """faces [B, 48, 96, 15] -> [B, D] normalised face embeddings."""
    _check_shape(faces, (FACE_SIZE // 2, FACE_SIZE, 3 * SYNCNET_T), "SyncNetColor faces")
    x = conv_blocks.apply_blocks(self.face_encoder, faces.astype(self.dtype), use_running_average)
    return l2_normalize(x.reshape(x.shape[0], -1))             # [B, D]

  def encode_audio(self, mels: jax.Array, *, use_running_average: bool) -> jax.Array:
    """mels [B, 80, 16, 1] -> [B, D] normalised audio embeddings."""
    _check_shape(mels, (MEL_BINS, MEL_STEP, 1), "SyncNetColor mels")
    x = conv_blocks.apply_blocks(self.audio_encoder, mels.astype(self.dtype), use_running_average)
    return l2_normalize(x.reshape(x.shape[0], -1))             # [B, D]

  def __call__(self, mels: jax.Array, faces: jax.Array, *,
               use_running_average: bool) -> tuple[jax.Array, jax.Array]:
    audio = self.encode_audio(mels, use_running_average=use_running_average)
    face = self.encode_faces(faces, use_running_average=use_running_average)
    return audio, face


class SyncNetS(nn.Module):
  """syncnet_python's network S, the official LSE-C/LSE-D scorer (inputs: module docstring).

  Layers are named by role and index (`aud_conv_i`/`aud_bn_i`, `lip_conv_i`/`lip_bn_i`, `aud_fc*`,
  `lip_fc*`); `third_party/syncnet_keys.py` maps them to the reference Sequential indices.
  S is only used as a frozen scorer, so `use_running_average` defaults to True here.

  Smaller variants (trained here as an independent evaluation expert, never the published
  weights): `width` scales every conv and the 512-wide FC layer; `lip_size` shrinks the square lip
  input, and the last lip conv's kernel becomes the side of the map left before it (6 at 224 px,
  2 at 96, 1 at 64), so that it still sees the whole map, as the published one does.

  Attributes:
    embed_dim: D (S's `num_layers_in_fc_layers`, 1024 in the published model).
    width: channel multiplier (1.0: the published network).
    lip_size: side of the lip crops (224: the published network).
  """
  embed_dim: int = S_EMBED
  width: float = 1.0
  lip_size: int = S_LIP_SIZE
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  def setup(self):
    scaled = lambda features: max(1, int(round(features * self.width)))
    conv = lambda spec: nn.Conv(scaled(spec[0]), spec[1], spec[2],
                                padding=tuple((p, p) for p in spec[3]),
                                dtype=self.dtype, param_dtype=self.param_dtype)
    bn = lambda: nn.BatchNorm(momentum=conv_blocks.BN_MOMENTUM, epsilon=conv_blocks.BN_EPSILON,
                              dtype=jnp.float32, param_dtype=self.param_dtype)
    dense = lambda d: nn.Dense(d, dtype=self.dtype, param_dtype=self.param_dtype)
    self.aud_conv = [conv(s) for s in S_AUDIO_CONVS]
    self.aud_bn = [bn() for _ in S_AUDIO_CONVS]
    self.lip_conv = [conv(s) for s in self._lip_convs()]
    self.lip_bn = [bn() for _ in S_LIP_CONVS]
    self.aud_fc1, self.aud_fc_bn, self.aud_fc2 = dense(scaled(512)), bn(), dense(self.embed_dim)
    self.lip_fc1, self.lip_fc_bn, self.lip_fc2 = dense(scaled(512)), bn(), dense(self.embed_dim)

  def _lip_convs(self) -> tuple:
    """S_LIP_CONVS with the last kernel fitted to the map left at `lip_size`."""
    side = s_lip_map_size(self.lip_size)
    last = S_LIP_CONVS[-1]
    return S_LIP_CONVS[:-1] + ((last[0], (1, side, side)) + last[2:],)

  def _tower(self, x: jax.Array, specs: tuple, convs: list[nn.Conv], bns: list[nn.BatchNorm],
             fc1: nn.Dense, fc_bn: nn.BatchNorm, fc2: nn.Dense,
             use_running_average: bool) -> jax.Array:
    for spec, conv, bn in zip(specs, convs, bns):
      x = conv(x)                                               # [B, (T,) H', W', C']
      x = nn.relu(bn(x, use_running_average=use_running_average).astype(self.dtype))
      if spec[4] is not None:
        window, strides, padding = spec[4]
        x = nn.max_pool(x, window, strides, padding=tuple((p, p) for p in padding))
    x = x.reshape(x.shape[0], -1)                               # [B, 512 width]
    x = nn.relu(fc_bn(fc1(x), use_running_average=use_running_average).astype(self.dtype))
    return fc2(x).astype(jnp.float32)                           # [B, D]

  def forward_aud(self, mfcc: jax.Array, *, use_running_average: bool = True) -> jax.Array:
    """mfcc [B, 13, 20, 1] -> audio embeddings [B, D]."""
    _check_shape(mfcc, (13, 20, 1), "SyncNetS mfcc")
    return self._tower(mfcc.astype(self.dtype), S_AUDIO_CONVS, self.aud_conv, self.aud_bn,
                       self.aud_fc1, self.aud_fc_bn, self.aud_fc2, use_running_average)

  def forward_lip(self, lips: jax.Array, *, use_running_average: bool = True) -> jax.Array:
    """lips [B, 5, L, L, 3] (L = lip_size, 224 published) -> lip embeddings [B, D]."""
    _check_shape(lips, (SYNCNET_T, self.lip_size, self.lip_size, 3), "SyncNetS lips")
    return self._tower(lips.astype(self.dtype), self._lip_convs(), self.lip_conv, self.lip_bn,
                       self.lip_fc1, self.lip_fc_bn, self.lip_fc2, use_running_average)

  def __call__(self, lips: jax.Array, mfcc: jax.Array, *,
               use_running_average: bool = True) -> tuple[jax.Array, jax.Array]:
    return (self.forward_lip(lips, use_running_average=use_running_average),
            self.forward_aud(mfcc, use_running_average=use_running_average))
