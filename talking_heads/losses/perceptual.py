"""Perceptual (feature reconstruction) losses on frozen public networks: VGG16, VGG19, LPIPS.

VGG: loss = sum_l lambda_l * mean |phi_l(x) - phi_l(y)|^p over ReLU activations phi_l of
ImageNet-normalised images, p = 1 (mean absolute) or 2 (mean squared). The configurations the
papers use (`make_perceptual_loss`):

* "vgg16", Johnson et al. 2016: relu1_2, relu2_2, relu3_3, relu4_3 (torchvision `features`
  slices [0:4], [4:9], [9:16], [16:23]), lambda = 1; PIR uses p = 2 (components B and C,
  shared/reference/systems/pir.md section 4), FD2Talk/RADIO-style L1 uses p = 1
  (shared/reference/eg3d_stylegan_speaker_metrics.md section 6).
* "vgg19", pix2pixHD `VGGLoss` (`NVIDIA/pix2pixHD` models/networks.py `Vgg19`): relu1_1, relu2_1,
  relu3_1, relu4_1, relu5_1 (slices [0:2], [2:7], [7:12], [12:21], [21:30]) with lambda = 1/32,
  1/16, 1/8, 1/4, 1 and p = 1: RADIO's Eq. 2 ("weight increasing for deeper layers",
  shared/reference/systems/radio.md section 4).
* "lpips": mean over the batch of LPIPS v0.1 with the VGG16 backbone (FD2Talk Eq. 14, taming's
  `vqperceptual.py`; `talking_heads.metrics.lpips`).

Weights are the public files (torchvision `vgg16-397923af.pth`, `vgg19-dcbb9e9d.pth`, the `lpips`
wheel's linear layers) loaded through `talking_heads.pretrained`; they stay frozen (an argument,
never trained parameters). Nothing is loaded at import time.

Dimensions: B batch, H, W image size (NHWC, 3 channels).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp

from talking_heads.metrics import lpips as lpips_metric
from talking_heads.models import vgg
from talking_heads.pretrained import lpips as lpips_pretrained
from talking_heads.pretrained import vgg as vgg_pretrained
from third_party import weights as weights_lib

KINDS: tuple[str, ...] = ("vgg16", "vgg19", "lpips")
LAYERS: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")   # Johnson, VGG16
PIX2PIXHD_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
PIX2PIXHD_WEIGHTS: tuple[float, ...] = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def perceptual_vgg(layers: Sequence[str] = LAYERS, dtype: jnp.dtype = jnp.float32,
                   variant: str = "vgg16") -> vgg.VGGFeatures:
  """The VGG trunk the loss runs (built only up to the deepest layer)."""
  return vgg.VGGFeatures(variant, taps=tuple(layers), dtype=dtype)


def imagenet_normalise(images: jax.Array, value_range: tuple[float, float] = (0.0, 1.0)
                       ) -> jax.Array:
  """Maps images [..., 3] in `value_range` to [0, 1], then (x - mean) / std per channel."""
  low, high = value_range
  unit = (images.astype(jnp.float32) - low) / (high - low)
  return (unit - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)


def perceptual_loss(vgg_variables: Mapping[str, Any], x: jax.Array, y: jax.Array, *,
                    layers: Sequence[str] = LAYERS,
                    layer_weights: Sequence[float] | None = None, distance: str = "l1",
                    value_range: tuple[float, float] = (0.0, 1.0),
                    dtype: jnp.dtype = jnp.float32, variant: str = "vgg16") -> jax.Array:
  """Scalar weighted sum over layers of the mean feature distance between x and y.

  Args:
    vgg_variables: variables of `perceptual_vgg(layers, variant=variant)` (public weights).
    x: generated images [B, H, W, 3].
    y: target images [B, H, W, 3].
    layers: VGG taps to compare.
    layer_weights: lambda_l per layer (default all 1).
    distance: "l1" (mean absolute) or "l2" (mean squared).
    value_range: the range x and y are in.
    dtype: compute dtype of the VGG trunk; distances are taken in float32.
    variant: "vgg16" or "vgg19".

  Returns:
    The loss, a float32 scalar.
  """
  if x.shape != y.shape:
    raise ValueError(f"perceptual_loss: x and y differ in shape: {x.shape} vs {y.shape}")
  if distance not in ("l1", "l2"):
    raise ValueError(f"perceptual_loss: distance must be 'l1' or 'l2', got {distance!r}")
  weights = tuple(layer_weights) if layer_weights is not None else (1.0,) * len(layers)
  if len(weights) != len(layers):
    raise ValueError(f"perceptual_loss: {len(weights)} layer weights for {len(layers)} layers")
  both = imagenet_normalise(jnp.concatenate([x, y], axis=0), value_range)   # [2B, H, W, 3]
  feats = perceptual_vgg(layers, dtype, variant).apply(vgg_variables, both)
  batch = x.shape[0]
  total = jnp.zeros((), jnp.float32)
  for name, weight in zip(layers, weights):
    f = feats[name].astype(jnp.float32)                                      # [2B, h, w, C]
    diff = f[:batch] - f[batch:]
    per_layer = jnp.abs(diff) if distance == "l1" else jnp.square(diff)
    total = total + weight * jnp.mean(per_layer)
  return total


@dataclasses.dataclass(frozen=True, eq=False)
class PerceptualLoss:
  """A perceptual loss with its frozen variables: `loss(x, y)` -> float32 scalar.

  `apply(variables, x, y)` takes the variables as an argument, so a jitted step can pass them in
  rather than baking them into the compiled program as constants.

  Attributes:
    kind: one of `KINDS`.
    variables: the frozen network's variables (numpy, host).
    layers: VGG taps compared (empty for "lpips").
    layer_weights: lambda_l per tap (empty for "lpips").
    p: 1 (mean absolute) or 2 (mean squared) feature distance (VGG kinds).
    value_range: the range x and y are in.
  """
  kind: str
  variables: Mapping[str, Any]
  layers: tuple[str, ...] = ()
  layer_weights: tuple[float, ...] = ()
  p: int = 1
  value_range: tuple[float, float] = (-1.0, 1.0)

  def apply(self, variables: Mapping[str, Any], x: jax.Array, y: jax.Array) -> jax.Array:
    """The loss between generated x and target y [B, H, W, 3] under `variables`."""
    if self.kind == "lpips":
      if x.shape != y.shape:
        raise ValueError(f"perceptual loss (lpips): x and y differ in shape: {x.shape} vs "
                         f"{y.shape}")
      low, high = self.value_range
      to_signed = lambda a: 2.0 * (a.astype(jnp.float32) - low) / (high - low) - 1.0
      return jnp.mean(lpips_metric.LPIPS(net="vgg").apply(variables, to_signed(x), to_signed(y)))
    return perceptual_loss(variables, x, y, layers=self.layers, layer_weights=self.layer_weights,
                           distance="l1" if self.p == 1 else "l2", value_range=self.value_range,
                           variant=self.kind)

  def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
    return self.apply(self.variables, x, y)


def make_perceptual_loss(kind: str, weights_dir: str | os.PathLike[str] | None, *,
                         layers: Sequence[str] | None = None,
                         weights: Sequence[float] | None = None, p: int = 1,
                         value_range: tuple[float, float] = (-1.0, 1.0)) -> PerceptualLoss:
  """Loads the public weights for `kind` from `weights_dir` and returns the loss (module docstring).

  Args:
    kind: "vgg16" (default taps `LAYERS`, weights 1), "vgg19" (default taps `PIX2PIXHD_LAYERS`
      with `PIX2PIXHD_WEIGHTS`) or "lpips" (VGG LPIPS; takes no layers, weights or p).
    weights_dir: the folder of public checkpoints (`third_party.weights` file names).
    layers: VGG taps (relu<block>_<i> of the variant); default per kind.
    weights: lambda_l per tap; default per kind when `layers` is None, else all 1.
    p: 1 or 2.
    value_range: the range the images are in.

  Raises:
    ValueError: unknown kind, bad layers/weights/p, or an empty `weights_dir` (the loss needs the
      public weights: the caller decides whether to switch the term off instead).
    MissingWeightsError: a file is not in `weights_dir` (the message names it and its source).
  """
  if kind not in KINDS:
    raise ValueError(f"perceptual loss kind must be one of {KINDS}, got {kind!r}")
  files = ("vgg16", "lpips_vgg") if kind == "lpips" else (kind,)
  if not weights_dir:
    names = ", ".join(weights_lib.WEIGHTS[f].filename for f in files)
    raise ValueError(f"the {kind} perceptual loss needs the public weights ({names}) but "
                     "weights_dir is empty: set it, or switch the perceptual term off")
  value_range = (float(value_range[0]), float(value_range[1]))
  if kind == "lpips":
    if layers is not None or weights is not None or p != 1:
      raise ValueError("the lpips perceptual loss fixes its layers, weights and distance; got "
                       f"layers={layers}, weights={weights}, p={p}")
    return PerceptualLoss(kind, lpips_pretrained.load_lpips(weights_dir, "vgg"),
                          value_range=value_range)
  if p not in (1, 2):
    raise ValueError(f"perceptual loss p must be 1 or 2, got {p!r}")
  default_layers, default_weights = ((LAYERS, (1.0,) * len(LAYERS)) if kind == "vgg16"
                                     else (PIX2PIXHD_LAYERS, PIX2PIXHD_WEIGHTS))
  if layers is None:
    layers, weights = default_layers, default_weights if weights is None else weights
  layers = tuple(layers)
  weights = tuple(float(w) for w in weights) if weights is not None else (1.0,) * len(layers)
  if len(weights) != len(layers):
    raise ValueError(f"perceptual loss ({kind}): {len(weights)} weights for {len(layers)} layers")
  variables = vgg_pretrained.load_vgg(weights_dir, perceptual_vgg(layers, variant=kind))
  return PerceptualLoss(kind, variables, layers, weights, p, value_range)
