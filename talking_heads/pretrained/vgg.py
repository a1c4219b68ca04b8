"""torchvision's VGG16/VGG19 and AlexNet checkpoints -> `talking_heads.models.vgg` variables.

The key layout (`features.<index>.*`, the ignored `classifier.*`) is `third_party.vgg_keys`.
Conv layers beyond the deepest tap a model was built with are ignored, since that model has no
parameters for them.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from talking_heads.models import vgg
from third_party import convert
from third_party import torch_reader
from third_party import vgg_keys
from third_party import weights


def _convert(state_dict: Mapping[str, np.ndarray], expected_variables: Mapping[str, Any],
             indices: Mapping[str, int], source: str) -> dict[str, Any]:
  mapping, ignore = vgg_keys.features_name_map(
      indices, set(expected_variables.get("params", {})), source)
  return convert.convert(state_dict, mapping, expected_variables, ignore=ignore, source=source)


def convert_vgg(state_dict: Mapping[str, np.ndarray], expected_variables: Mapping[str, Any], *,
                variant: str = "vgg16", source: str | None = None) -> dict[str, Any]:
  """torchvision `vgg16`/`vgg19` state dict -> variables of a `VGGFeatures(variant)` (any taps)."""
  return _convert(state_dict, expected_variables, vgg_keys.vgg_indices(variant),
                  source or f"{variant} state dict")


def convert_alexnet(state_dict: Mapping[str, np.ndarray], expected_variables: Mapping[str, Any],
                    source: str = "alexnet state dict") -> dict[str, Any]:
  """torchvision `alexnet` state dict -> variables of an `AlexNetFeatures` (any taps)."""
  return _convert(state_dict, expected_variables, vgg_keys.ALEXNET_INDICES, source)


def _expected(model: Any) -> Mapping[str, Any]:
  return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3), jnp.float32))


def load_vgg(weights_dir: str | os.PathLike[str] | None,
             model: vgg.VGGFeatures | None = None) -> dict[str, Any]:
  """Reads torchvision's file for `model.variant` (`vgg16-397923af.pth` or `vgg19-dcbb9e9d.pth`)
  from `weights_dir` into variables for `model` (default: VGG16, all block taps).

  Raises:
    MissingWeightsError: the file is not there.
  """
  model = model or vgg.VGGFeatures()
  path = weights.require(weights_dir, model.variant)
  return convert_vgg(torch_reader.load_torch_file(path), _expected(model), variant=model.variant,
                     source=str(path))


def load_alexnet(weights_dir: str | os.PathLike[str] | None,
                 model: vgg.AlexNetFeatures | None = None) -> dict[str, Any]:
  """Reads `alexnet-owt-7be5be79.pth` from `weights_dir` into variables for `model`.

  Raises:
    MissingWeightsError: the file is not there.
  """
  path = weights.require(weights_dir, "alexnet")
  model = model or vgg.AlexNetFeatures()
  return convert_alexnet(torch_reader.load_torch_file(path), _expected(model), str(path))
