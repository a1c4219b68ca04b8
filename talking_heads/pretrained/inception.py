"""pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` -> Flax `FIDInceptionV3` variables.

The file is the bare state dict of pytorch-fid's `fid_inception_v3()` (torchvision Inception3,
1008 classes, no AuxLogits, FID mixed blocks). Every weighted layer is a BasicConv2d
`<block>[.<branch>].conv.weight` plus its BatchNorm `.bn.{weight,bias,running_mean,running_var}`,
and the classifier is `fc.{weight,bias}`: 94 convs, 472 tensors. The Flax modules carry the same
names, so the map below is complete by construction and checked against the Flax variables.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from talking_heads.models import inception as inception_lib
from third_party import convert as convert_lib
from third_party import torch_reader
from third_party import weights

NameMap = convert_lib.NameMap

WEIGHTS_NAME = "pt_inception"

STEM: tuple[str, ...] = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1",
                         "Conv2d_4a_3x3")

# BasicConv2d branches of each mixed-block type, in torch definition order.
BRANCHES: dict[str, tuple[str, ...]] = {
    "A": ("branch1x1", "branch5x5_1", "branch5x5_2", "branch3x3dbl_1", "branch3x3dbl_2",
          "branch3x3dbl_3", "branch_pool"),
    "B": ("branch3x3", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
    "C": ("branch1x1", "branch7x7_1", "branch7x7_2", "branch7x7_3", "branch7x7dbl_1",
          "branch7x7dbl_2", "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5", "branch_pool"),
    "D": ("branch3x3_1", "branch3x3_2", "branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3",
          "branch7x7x3_4"),
    "E": ("branch1x1", "branch3x3_1", "branch3x3_2a", "branch3x3_2b", "branch3x3dbl_1",
          "branch3x3dbl_2", "branch3x3dbl_3a", "branch3x3dbl_3b", "branch_pool"),
}

MIXED: tuple[tuple[str, str], ...] = (
    ("Mixed_5b", "A"), ("Mixed_5c", "A"), ("Mixed_5d", "A"), ("Mixed_6a", "B"),
    ("Mixed_6b", "C"), ("Mixed_6c", "C"), ("Mixed_6d", "C"), ("Mixed_6e", "C"),
    ("Mixed_7a", "D"), ("Mixed_7b", "E"), ("Mixed_7c", "E"),
)


def basic_conv_paths() -> list[tuple[str, ...]]:
  """Module path of each of the 94 BasicConv2d layers, in torch order."""
  paths = [(name,) for name in STEM]
  for block, kind in MIXED:
    paths.extend((block, branch) for branch in BRANCHES[kind])
  return paths


def inception_map() -> NameMap:
  """Complete torch key -> flax target map for `fid_inception_v3()` -> `FIDInceptionV3`."""
  out: NameMap = {}
  for path in basic_conv_paths():
    prefix = ".".join(path)
    out.update(convert_lib.map_conv(f"{prefix}.conv", path + ("conv",), bias=False))
    out.update(convert_lib.map_batchnorm(f"{prefix}.bn", path + ("bn",)))
  out.update(convert_lib.map_linear("fc", ("fc",)))
  return out


def inception_variables_shape(model: inception_lib.FIDInceptionV3 | None = None) -> Any:
  """Abstract variables of `model` (default: the published configuration); no computation."""
  model = model or inception_lib.FIDInceptionV3()
  images = jnp.zeros((1, 75, 75, 3), jnp.float32)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), images))


def convert_inception(state_dict: Mapping[str, np.ndarray], *,
                      model: inception_lib.FIDInceptionV3 | None = None,
                      source: str = "state dict") -> dict[str, Any]:
  """pytorch-fid Inception state dict (optionally 'module.'-prefixed) -> {'params', 'batch_stats'}.

  Raises:
    ConversionError: naming every unknown, missing or mis-shaped key.
  """
  return convert_lib.convert(convert_lib.strip_prefix(state_dict, "module."), inception_map(),
                             inception_variables_shape(model), source=source)


def load_inception(weights_dir: str | os.PathLike[str] | None, *,
                   model: inception_lib.FIDInceptionV3 | None = None) -> dict[str, Any]:
  """Reads `pt_inception-2015-12-05-6726825d.pth` from `weights_dir` (no torch) into variables.

  Raises:
    MissingWeightsError: no folder given or the file is not in it (the message names the file
      and its public URL).
    CheckpointError / ConversionError: the file is unreadable or is not this network.
  """
  path = weights.require(weights_dir, WEIGHTS_NAME)
  return convert_inception(torch_reader.load_torch_file(path), model=model, source=os.fspath(path))
