"""Converters from torchvision's VGG16 and AlexNet checkpoints to `talking_heads.models.vgg`.

torchvision state dicts name layers by their index in `features` (`features.N.weight/bias`);
the Flax trunks name them conv1_1 ... conv5_3 (VGG16) and conv1 ... conv5 (AlexNet). The
`classifier.*` keys (the fully connected ImageNet head) are ignored explicitly: perceptual
networks use the conv trunk only. Conv layers beyond the deepest tap a model was built with
are ignored too, since that model has no parameters for them.
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
from third_party import weights

# torchvision `features` index of each conv.
VGG16_INDICES: dict[str, int] = {
    "conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7, "conv3_1": 10, "conv3_2": 12,
    "conv3_3": 14, "conv4_1": 17, "conv4_2": 19, "conv4_3": 21, "conv5_1": 24, "conv5_2": 26,
    "conv5_3": 28,
}
ALEXNET_INDICES: dict[str, int] = {"conv1": 0, "conv2": 3, "conv3": 6, "conv4": 8, "conv5": 10}
_CLASSIFIER = r"classifier\..*"


def _convert(state_dict: Mapping[str, np.ndarray], expected_variables: Mapping[str, Any],
             indices: Mapping[str, int], source: str) -> dict[str, Any]:
  present = set(expected_variables.get("params", {}))
  unknown_layers = present - set(indices)
  if unknown_layers:
    raise convert.ConversionError(f"{source}: flax model has layers {sorted(unknown_layers)} "
                                  "that the torchvision trunk does not")
  mapping: convert.NameMap = {}
  ignore = [_CLASSIFIER]
  for name, index in indices.items():
    if name in present:
      mapping.update(convert.map_conv(f"features.{index}", (name,)))
    else:  # A trunk built for shallower taps has no parameters for this conv.
      ignore.append(rf"features\.{index}\.(weight|bias)")
  return convert.convert(state_dict, mapping, expected_variables, ignore=ignore, source=source)


def convert_vgg16(state_dict: Mapping[str, np.ndarray], expected_variables: Mapping[str, Any],
                  source: str = "vgg16 state dict") -> dict[str, Any]:
  """torchvision `vgg16` state dict -> variables of a `VGG16Features` (any taps)."""
  return _convert(state_dict, expected_variables, VGG16_INDICES, source)


def convert_alexnet(state_dict: Mapping[str, np.ndarray], expected_variables: Mapping[str, Any],
                    source: str = "alexnet state dict") -> dict[str, Any]:
  """torchvision `alexnet` state dict -> variables of an `AlexNetFeatures` (any taps)."""
  return _convert(state_dict, expected_variables, ALEXNET_INDICES, source)


def _expected(model: Any) -> Mapping[str, Any]:
  return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3), jnp.float32))


def load_vgg16(weights_dir: str | os.PathLike[str] | None,
               model: vgg.VGG16Features | None = None) -> dict[str, Any]:
  """Reads `vgg16-397923af.pth` from `weights_dir` into variables for `model` (default all taps).

  Raises:
    MissingWeightsError: the file is not there.
  """
  path = weights.require(weights_dir, "vgg16")
  model = model or vgg.VGG16Features()
  return convert_vgg16(torch_reader.load_torch_file(path), _expected(model), str(path))


def load_alexnet(weights_dir: str | os.PathLike[str] | None,
                 model: vgg.AlexNetFeatures | None = None) -> dict[str, Any]:
  """Reads `alexnet-owt-7be5be79.pth` from `weights_dir` into variables for `model`.

  Raises:
    MissingWeightsError: the file is not there.
  """
  path = weights.require(weights_dir, "alexnet")
  model = model or vgg.AlexNetFeatures()
  return convert_alexnet(torch_reader.load_torch_file(path), _expected(model), str(path))
