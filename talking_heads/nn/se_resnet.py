"""Squeeze-excitation ResNets for audio-visual embeddings: the speaker encoder of
`clovaai/voxceleb_trainer` (ResNetSE34L with self-attentive pooling, `models/ResNetSE34L.py`,
`models/ResNetBlocks.py`) and a visual SE-ResNet ending in CBAM (`Jongchan/attention-module`
`MODELS/cbam.py`). RADIO's audio encoder E_a and its sync discriminator's S_a and S_v use them.

Dimensions: B batch, H, W spatial size (for a spectrogram H = M mel bins, W = F mel frames),
C channels, E embedding width, T time steps after pooling over H, N input frames.

  SqueezeExcitation     x * sigmoid(FC(ReLU(FC(mean_HW x)))), C -> C/r -> C (voxceleb SELayer,
                        r = 8)
  SEBasicBlock          conv3x3 (stride) -> act -> norm -> conv3x3 -> norm -> SE -> + shortcut
                        -> act; shortcut = 1x1 conv (stride) -> norm when the shape changes
                        (voxceleb SEBasicBlock's order: activation before the first norm)
  CBAM                  channel gate sigmoid(MLP(avgpool x) + MLP(maxpool x)), shared MLP
                        C -> C/r -> C with ReLU (r = 16); then spatial gate
                        sigmoid(norm(conv7x7([max_C x, mean_C x]))) (conv without bias)
  SelfAttentivePooling  x [B, T, C] -> sum_t softmax_t(tanh(x_t W + b) . a) x_t (voxceleb SAP;
                        a xavier-normal)
  ResNetSE              stem conv K x K (stride) -> norm -> act; stages of SEBasicBlocks
  SpeakerEncoder        mel [B, M, F] -> instance norm of each mel bin over its F frames
                        (voxceleb's InstanceNorm1d front end, no affine) -> ResNetSE34L trunk
                        (stem 7x7 stride (2, 1)) -> mean over the mel axis -> SAP -> FC E
  VisualEncoder         frames [B, H, W, N] (N grayscale frames as channels) -> SE-ResNet (stem
                        7x7 stride 2) -> CBAM -> global average pool -> FC E

Norms: "batch" (PyTorch BatchNorm2d: running = 0.9 running + 0.1 batch, eps 1e-5; running
statistics in `batch_stats`, used unless train=True) or "instance" (InstanceNorm2d with affine
parameters, eps 1e-5). Activations: "relu" or "lrelu" (leaky ReLU 0.2); the gates keep their
published ReLU and sigmoid. Norms, gates and pooling weights compute in float32. Convs have no
bias (voxceleb), kaiming-normal fan_out initialisation (voxceleb's init) and PyTorch's symmetric
zero padding K // 2.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Norm = Literal["batch", "instance"]
Activation = Literal["relu", "lrelu"]

NORMS = ("batch", "instance")
ACTIVATIONS = ("relu", "lrelu")
BN_MOMENTUM = 0.9
NORM_EPS = 1e-5
LRELU_SLOPE = 0.2

Pair = tuple[int, int]


def _pair(v: int | Sequence[int]) -> Pair:
  return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def act(x: jax.Array, activation: Activation) -> jax.Array:
  if activation == "relu":
    return jax.nn.relu(x)
  if activation == "lrelu":
    return jax.nn.leaky_relu(x, LRELU_SLOPE)
  raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def norm_layer(kind: Norm, train: bool, param_dtype: Any, name: str) -> nn.Module:
  """The norm of the module docstring, computing in float32."""
  if kind == "batch":
    return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=NORM_EPS,
                        dtype=jnp.float32, param_dtype=param_dtype, name=name)
  if kind == "instance":
    return nn.InstanceNorm(epsilon=NORM_EPS, dtype=jnp.float32, param_dtype=param_dtype,
                           name=name)
  raise ValueError(f"{name}: norm must be one of {NORMS}, got {kind!r}")


def conv(features: int, kernel: int | Sequence[int], strides: int | Sequence[int] = 1, *,
         dtype: Any, param_dtype: Any, name: str, use_bias: bool = False) -> nn.Conv:
  """A PyTorch-padded (K // 2 each side) conv, kaiming-normal fan_out, no bias by default."""
  k = _pair(kernel)
  return nn.Conv(features, k, _pair(strides), padding=tuple((d // 2, d // 2) for d in k),
                 use_bias=use_bias,
                 kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
                 dtype=dtype, param_dtype=param_dtype, name=name)


class SqueezeExcitation(nn.Module):
  """x [B, H, W, C] -> x * gate [B, 1, 1, C] (module docstring).

  Attributes:
    reduction: r (hidden width C / r, at least 1).
  """
  reduction: int = 8
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    dense = lambda d, name: nn.Dense(d, dtype=jnp.float32, param_dtype=self.param_dtype, name=name)
    s = x.astype(jnp.float32).mean(axis=(1, 2))                          # [B, C]
    s = jax.nn.sigmoid(dense(c, "fc2")(jax.nn.relu(dense(max(1, c // self.reduction), "fc1")(s))))
    return x * s[:, None, None, :].astype(x.dtype)


class SEBasicBlock(nn.Module):
  """x [B, H, W, C] -> [B, H / s_h, W / s_w, D] (module docstring).

  Attributes:
    features: D.
    strides: (s_h, s_w) of the first conv and the shortcut.
    norm, activation: see the module docstring.
    reduction: the SE reduction r.
  """
  features: int
  strides: int | Sequence[int] = 1
  norm: Norm = "batch"
  activation: Activation = "relu"
  reduction: int = 8
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    nrm = lambda name: norm_layer(self.norm, train, self.param_dtype, name)
    strides = _pair(self.strides)
    h = act(conv(self.features, 3, strides, name="conv1", **kw)(x), self.activation)
    h = nrm("norm1")(h).astype(self.dtype)
    h = nrm("norm2")(conv(self.features, 3, name="conv2", **kw)(h)).astype(self.dtype)
    h = SqueezeExcitation(self.reduction, name="se", **kw)(h)
    shortcut = x.astype(self.dtype)
    if strides != (1, 1) or x.shape[-1] != self.features:
      shortcut = nrm("shortcut_norm")(conv(self.features, 1, strides, name="shortcut", **kw)(x))
    return act(h + shortcut.astype(self.dtype), self.activation)   # [B, H', W', D]


class CBAM(nn.Module):
  """x [B, H, W, C] -> channel- then spatially-gated x [B, H, W, C] (module docstring).

  Attributes:
    reduction: r of the channel gate's MLP.
    spatial_kernel: K of the spatial gate's conv.
    norm: the spatial gate's norm ("batch" in the reference).
  """
  reduction: int = 16
  spatial_kernel: int = 7
  norm: Norm = "batch"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    c = x.shape[-1]
    dense = lambda d, name: nn.Dense(d, dtype=jnp.float32, param_dtype=self.param_dtype, name=name)
    hidden, out = dense(max(1, c // self.reduction), "mlp_fc1"), dense(c, "mlp_fc2")
    mlp = lambda v: out(jax.nn.relu(hidden(v)))
    xf = x.astype(jnp.float32)
    gate = jax.nn.sigmoid(mlp(xf.mean(axis=(1, 2))) + mlp(xf.max(axis=(1, 2))))  # [B, C]
    xf = xf * gate[:, None, None, :]
    pooled = jnp.stack([xf.max(axis=-1), xf.mean(axis=-1)], axis=-1)             # [B, H, W, 2]
    s = conv(1, self.spatial_kernel, name="spatial_conv", dtype=jnp.float32,
             param_dtype=self.param_dtype)(pooled)
    s = jax.nn.sigmoid(norm_layer(self.norm, train, self.param_dtype, "spatial_norm")(s))
    return (xf * s).astype(self.dtype)                                            # [B, H, W, C]


class SelfAttentivePooling(nn.Module):
  """x [B, T, C] -> [B, C], attention weights over T (module docstring)."""
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.astype(jnp.float32)
    h = jnp.tanh(nn.Dense(x.shape[-1], param_dtype=self.param_dtype, name="linear")(x))  # [B, T, C]
    a = self.param("attention", nn.initializers.xavier_normal(), (x.shape[-1], 1),
                   self.param_dtype)
    w = jax.nn.softmax((h @ a)[..., 0], axis=-1)                                 # [B, T]
    return jnp.einsum("bt,btc->bc", w, x)


class ResNetSE(nn.Module):
  """x [B, H, W, C_in] -> features [B, H', W', channels[-1]]: stem conv -> norm -> act, then
  stage i = blocks[i] SEBasicBlocks of width channels[i], the first with strides[i].

  Attributes:
    channels, blocks, strides: per stage (equal lengths); a stride is an int or (s_h, s_w).
    stem_kernel, stem_strides: the stem conv's K and (s_h, s_w).
    norm, activation, reduction: of every block (module docstring).
  """
  channels: Sequence[int]
  blocks: Sequence[int]
  strides: Sequence[Any]
  stem_kernel: int = 7
  stem_strides: Any = 1
  norm: Norm = "batch"
  activation: Activation = "relu"
  reduction: int = 8
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if not len(self.channels) == len(self.blocks) == len(self.strides):
      raise ValueError(f"ResNetSE {self.name}: channels {self.channels}, blocks {self.blocks} and "
                       f"strides {self.strides} need one entry per stage")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    h = conv(self.channels[0], self.stem_kernel, self.stem_strides, name="stem", **kw)(x)
    h = act(norm_layer(self.norm, train, self.param_dtype, "stem_norm")(h), self.activation)
    h = h.astype(self.dtype)
    for i, (c, n, s) in enumerate(zip(self.channels, self.blocks, self.strides)):
      for j in range(n):
        h = SEBasicBlock(c, s if j == 0 else 1, self.norm, self.activation, self.reduction,
                         name=f"stage{i + 1}_block{j + 1}", **kw)(h, train)
    return h


def instance_normalise_bins(mel: jax.Array, eps: float = NORM_EPS) -> jax.Array:
  """mel [B, M, F] -> each bin normalised to zero mean, unit variance over its F frames."""
  mel = mel.astype(jnp.float32)
  mean = mel.mean(axis=-1, keepdims=True)
  var = mel.var(axis=-1, keepdims=True)
  return (mel - mean) * jax.lax.rsqrt(var + eps)


class SpeakerEncoder(nn.Module):
  """mel [B, M, F] -> embedding [B, E], ResNetSE34L with SAP (module docstring). The defaults
  are ResNetSE34L's: channels (16, 32, 64, 128), blocks (3, 4, 6, 3), strides 1, 2, 2, 1.

  Attributes:
    embed_dim: E.
    channels, blocks, strides: the trunk's stages (`ResNetSE`).
    norm, activation: "batch"/"relu" (voxceleb) or "instance"/"lrelu" (RADIO's E_a).
    normalise_input: the instance norm of each mel bin over its frames.
  """
  embed_dim: int = 512
  channels: Sequence[int] = (16, 32, 64, 128)
  blocks: Sequence[int] = (3, 4, 6, 3)
  strides: Sequence[Any] = (1, 2, 2, 1)
  norm: Norm = "batch"
  activation: Activation = "relu"
  normalise_input: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, mel: jax.Array, train: bool = False) -> jax.Array:
    if mel.ndim != 3:
      raise ValueError(f"SpeakerEncoder {self.name}: mel must be [B, M, F], got {mel.shape}")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = instance_normalise_bins(mel) if self.normalise_input else mel.astype(jnp.float32)
    x = x[..., None].astype(self.dtype)                                    # [B, M, F, 1]
    h = ResNetSE(self.channels, self.blocks, self.strides, stem_kernel=7, stem_strides=(2, 1),
                 norm=self.norm, activation=self.activation, name="trunk", **kw)(x, train)
    h = h.mean(axis=1)                                                     # [B, T, C]
    pooled = SelfAttentivePooling(self.param_dtype, name="sap")(h)         # [B, C]
    return nn.Dense(self.embed_dim, name="fc", **kw)(pooled)               # [B, E]


class VisualEncoder(nn.Module):
  """frames [B, H, W, N] -> embedding [B, E], an SE-ResNet ending in CBAM (module docstring).

  Attributes:
    embed_dim: E.
    channels, blocks, strides: the trunk's stages (`ResNetSE`; stem 7x7 stride 2).
    norm, activation: of the trunk and CBAM's spatial gate.
    cbam_reduction: r of CBAM's channel gate.
  """
  embed_dim: int = 512
  channels: Sequence[int] = (32, 64, 128, 256)
  blocks: Sequence[int] = (3, 4, 6, 3)
  strides: Sequence[Any] = (1, 2, 2, 2)
  norm: Norm = "batch"
  activation: Activation = "relu"
  cbam_reduction: int = 16
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, frames: jax.Array, train: bool = False) -> jax.Array:
    if frames.ndim != 4:
      raise ValueError(f"VisualEncoder {self.name}: frames must be [B, H, W, N], got "
                       f"{frames.shape}")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    h = ResNetSE(self.channels, self.blocks, self.strides, stem_kernel=7, stem_strides=2,
                 norm=self.norm, activation=self.activation, name="trunk",
                 **kw)(frames.astype(self.dtype), train)                   # [B, H', W', C]
    h = CBAM(self.cbam_reduction, norm=self.norm, name="cbam", **kw)(h, train)
    pooled = h.astype(jnp.float32).mean(axis=(1, 2))                       # [B, C]
    return nn.Dense(self.embed_dim, name="fc", **kw)(pooled)               # [B, E]
