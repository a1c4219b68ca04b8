"""PIR component B: an EG3D tri-plane generator conditioned on the morphable model's identity and
expression, its volume-rendered feature image I_F, and the proxy upsampler to the face image
(Huang et al. 2023 §3.2 and supp. §2; Chan et al. 2022, `NVlabs/eg3d` `training/triplane.py`,
`superresolution.py`, `volumetric_rendering/renderer.py`). Layers from `nn.stylegan`, geometry
from `talking_heads.rendering`.

Dimensions: B batch, A identity and E expression parameters, Z style width, R plane size,
C plane (= feature image) channels, r neural-rendering resolution, S output image size.

  (identity [B, A], expression [B, E])
    -> PIR mapping: concat -> EqualDense Z lrelu -> EqualDense Z lrelu          z [B, Z]
    -> EG3D mapping with c = z ("as both input and condition vector"):
       concat(norm2nd(z), norm2nd(EqualDense(c))) -> `mapping_layers` x EqualDense Z lrelu,
       lr_mul 0.01                                                               w [B, Z]
       (`eg3d_mapping=False` uses w = z, spec ambiguity 8)
    -> StyleGAN2 'skip' synthesis 4 -> R, widths min(channel_base / res, channel_max), ToRGB
       with 3 C channels                                                         [B, R, R, 3 C]
    -> planes [B, 3, R, R, C] (channel k of plane p = channel p C + k, EG3D's view(B, 3, C, R, R))
  camera (`rendering.camera.Camera`) -> r x r rays -> two-pass volume rendering
    (coarse + fine samples, box [-box_warp / 2, box_warp / 2]^3) of the OSG decoder:
      point features = sum of the 3 planes' bilinear samples (PIR; EG3D averages)
      -> EqualDense hidden softplus -> EqualDense 1 + C: sigma raw, features
         sigmoid(x) (1 + 2e-3) - 1e-3
    -> feature image I_F [B, r, r, C] (2 sum w c - 1), depth and opacity [B, r, r]
  ProxyUpsampler (EG3D SuperresolutionHybrid): I_F and its first 3 channels bilinearly resized to
    2 r, then StyleGAN2 synthesis blocks (x2 each, 'skip' RGB), styles from w -> I_face [B, S, S, 3].

One w drives every layer (EG3D broadcasts the mapping output to all num_ws = 14 layers and the
upsampler repeats the last one; without truncation or style mixing they are all equal).
Noise inputs are off by default (spec: noise_mode 'none' for this regression task).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from talking_heads.nn import stylegan
from talking_heads.rendering import camera as camera_lib
from talking_heads.rendering import planes as planes_lib
from talking_heads.rendering import volume

COLOR_MARGIN = 0.001


def normalize_2nd_moment(x: jax.Array, eps: float = 1e-8) -> jax.Array:
  """x * rsqrt(mean(x^2) + eps) over the last axis (StyleGAN2)."""
  x32 = x.astype(jnp.float32)
  return (x32 * jax.lax.rsqrt(jnp.mean(x32 ** 2, axis=-1, keepdims=True) + eps)).astype(x.dtype)


class ConditionalMapping(nn.Module):
  """z [B, Z_in], c [B, Z_c] -> w [B, Z]: StyleGAN2's MappingNetwork with a condition embedding
  (ada `MappingNetwork(c_dim > 0)`; EG3D's 2 layers, lr_mul 0.01)."""
  features: int
  num_layers: int = 2
  lr_mul: float = 0.01
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array, c: jax.Array) -> jax.Array:
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    embedded = stylegan.EqualDense(self.features, name="embed", **kw)(c)
    x = jnp.concatenate([normalize_2nd_moment(z), normalize_2nd_moment(embedded)], axis=-1)
    for i in range(self.num_layers):
      x = stylegan.EqualDense(self.features, lr_mul=self.lr_mul, activation="lrelu",
                              name=f"fc{i}", **kw)(x)
    return x


class SynthesisBlock(nn.Module):
  """x [B, H, W, C_in] (or None for the first, constant 4 x 4 block), img [B, H, W, D] (or None),
  w [B, Z] -> (x [B, 2H, 2W, C], img [B, 2H, 2W, D]) (ada SynthesisBlock, 'skip'):
  StyledConv up, StyledConv, ToRGB added to the upsampled img. The first block: constant,
  StyledConv, ToRGB at 4 x 4."""
  features: int
  img_channels: int
  use_noise: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array | None, img: jax.Array | None, w: jax.Array,
               add_noise: bool = False) -> tuple[jax.Array, jax.Array]:
    kw = dict(use_noise=self.use_noise, dtype=self.dtype, param_dtype=self.param_dtype)
    if x is None:
      const = self.param("const", nn.initializers.normal(1.0), (4, 4, self.features),
                         self.param_dtype)
      x = jnp.broadcast_to(const.astype(self.dtype), (w.shape[0],) + const.shape)
    else:
      x = stylegan.StyledConv(self.features, up=True, name="conv0", **kw)(x, w, add_noise)
    x = stylegan.StyledConv(self.features, name="conv1", **kw)(x, w, add_noise)
    img = stylegan.ToRGB(self.img_channels, dtype=self.dtype, param_dtype=self.param_dtype,
                         name="torgb")(x, w, img)
    return x, img


class TriplaneBackbone(nn.Module):
  """w [B, Z] -> planes [B, 3, R, R, C]: StyleGAN2 synthesis 4 -> R with 3 C output channels."""
  resolution: int = 256
  plane_channels: int = 32
  channel_base: int = 32768
  channel_max: int = 512
  use_noise: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, w: jax.Array, add_noise: bool = False) -> jax.Array:
    r = self.resolution
    if r < 4 or r & (r - 1):
      raise ValueError(f"TriplaneBackbone: resolution must be a power of two >= 4, got {r}")
    x = img = None
    res = 4
    while res <= r:
      x, img = SynthesisBlock(stylegan.channels_at(res, self.channel_base, self.channel_max),
                              3 * self.plane_channels, self.use_noise, self.dtype,
                              self.param_dtype, name=f"b{res}")(x, img, w, add_noise)
      res *= 2
    b = w.shape[0]
    planes = img.reshape(b, r, r, 3, self.plane_channels)
    return jnp.moveaxis(planes, 3, 1)                                     # [B, 3, R, R, C]


class OSGDecoder(nn.Module):
  """Point features [..., C] -> (features [..., C_out], raw sigma [..., 1]) (EG3D OSGDecoder)."""
  out_features: int
  hidden: int = 64
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    h = jax.nn.softplus(stylegan.EqualDense(self.hidden, name="fc0", **kw)(x))
    out = stylegan.EqualDense(1 + self.out_features, name="fc1", **kw)(h).astype(jnp.float32)
    features = jax.nn.sigmoid(out[..., 1:]) * (1 + 2 * COLOR_MARGIN) - COLOR_MARGIN
    return features, out[..., :1]


class RenderedFeatures(NamedTuple):
  """image I_F [B, r, r, C], depth and opacity [B, r, r], w [B, Z] (for the upsampler)."""
  image: jax.Array
  depth: jax.Array
  opacity: jax.Array
  w: jax.Array


class TriplaneGenerator(nn.Module):
  """(identity [B, A], expression [B, E], camera) -> `RenderedFeatures` (module docstring).

  Attributes:
    style_dim: Z (paper 512).
    eg3d_mapping: the EG3D mapping with c = z after the PIR mapping (else w = z).
    mapping_layers: the EG3D mapping's depth (2).
    plane_resolution: R (256).
    plane_channels: C (32).
    channel_base, channel_max: the backbone's channel rule (32768, 512).
    decoder_hidden: the OSG decoder's hidden width (64).
    neural_resolution: r (64).
    num_coarse, num_fine: samples per ray (48 + 48).
    box_warp: side of the box the planes cover (1).
    plane_axes, plane_reduce: see `rendering.planes`.
    use_noise: StyleGAN2 noise inputs.
  """
  style_dim: int = 512
  eg3d_mapping: bool = True
  mapping_layers: int = 2
  plane_resolution: int = 256
  plane_channels: int = 32
  channel_base: int = 32768
  channel_max: int = 512
  decoder_hidden: int = 64
  neural_resolution: int = 64
  num_coarse: int = 48
  num_fine: int = 48
  box_warp: float = 1.0
  plane_axes: Sequence[tuple[int, int]] = planes_lib.PLANE_AXES
  plane_reduce: planes_lib.Reduce = "sum"
  use_noise: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def setup(self):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    self.pir_mapping = [stylegan.EqualDense(self.style_dim, activation="lrelu", **kw)
                        for _ in range(2)]
    if self.eg3d_mapping:
      self.mapping = ConditionalMapping(self.style_dim, self.mapping_layers, **kw)
    self.backbone = TriplaneBackbone(self.plane_resolution, self.plane_channels,
                                     self.channel_base, self.channel_max, self.use_noise, **kw)
    self.decoder = OSGDecoder(self.plane_channels, self.decoder_hidden, **kw)

  def style(self, identity: jax.Array, expression: jax.Array) -> jax.Array:
    """w [B, Z] of (identity, expression)."""
    z = jnp.concatenate([identity, expression], axis=-1).astype(jnp.float32)
    for layer in self.pir_mapping:
      z = layer(z)
    return self.mapping(z, z) if self.eg3d_mapping else z

  def planes(self, w: jax.Array, add_noise: bool = False) -> jax.Array:
    """[B, 3, R, R, C]."""
    return self.backbone(w, add_noise)

  def render(self, planes: jax.Array, camera: camera_lib.Camera,
             sample_key: jax.Array | None = None) -> volume.RayMarch:
    """The r x r feature image of `planes` under `camera` (cam2world [B, 4, 4]); rays
    [B, r^2, .]. `sample_key` perturbs and draws the samples (training)."""
    origins, directions = camera_lib.image_rays(camera, self.neural_resolution)

    def field(points):
      features = planes_lib.sample_planes(planes.astype(jnp.float32), points, self.box_warp,
                                          self.plane_axes, self.plane_reduce)
      return self.decoder(features)

    return volume.render_rays(field, origins, directions, self.num_coarse, self.num_fine,
                              self.box_warp / 2, sample_key)

  def __call__(self, identity: jax.Array, expression: jax.Array, camera: camera_lib.Camera,
               sample_key: jax.Array | None = None, add_noise: bool = False
               ) -> RenderedFeatures:
    if camera.cam2world.shape != (identity.shape[0], 4, 4):
      raise ValueError(f"TriplaneGenerator: camera must be [B, 4, 4] with B = "
                       f"{identity.shape[0]}, got {camera.cam2world.shape}")
    w = self.style(identity, expression)
    out = self.render(self.planes(w, add_noise), camera, sample_key)
    b, r = identity.shape[0], self.neural_resolution
    return RenderedFeatures(out.features.reshape(b, r, r, -1), out.depth.reshape(b, r, r),
                            out.weight_sum.reshape(b, r, r), w)


class ProxyUpsampler(nn.Module):
  """I_F [B, r, r, C], w [B, Z] -> I_face [B, S, S, 3], S = 2 r 2^len(channels) (EG3D
  SuperresolutionHybrid: paper channels (256, 128), 64 -> 128 -> 256 -> 512).

  Attributes:
    channels: widths of the x2 synthesis blocks.
    use_noise: StyleGAN2 noise inputs.
  """
  channels: Sequence[int] = (256, 128)
  use_noise: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: jax.Array, w: jax.Array, add_noise: bool = False) -> jax.Array:
    b, r, _, c = features.shape
    x = jax.image.resize(features, (b, 2 * r, 2 * r, c), "bilinear").astype(self.dtype)
    img = x[..., :3]
    for i, width in enumerate(self.channels):
      x, img = SynthesisBlock(width, 3, self.use_noise, self.dtype, self.param_dtype,
                              name=f"block{i}")(x, img, w, add_noise)
    return img.astype(jnp.float32)
