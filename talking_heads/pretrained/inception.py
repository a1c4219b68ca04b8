"""pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` -> `FIDInceptionV3` variables.

The key layout (94 BasicConv2d + BatchNorm, `fc`) is `third_party.inception_keys`; our modules
carry the same names, so the map is complete by construction and checked against the variables.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from talking_heads.models import inception as inception_lib
from third_party import convert as convert_lib
from third_party import inception_keys
from third_party import torch_reader
from third_party import weights

WEIGHTS_NAME = "pt_inception"


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
  return convert_lib.convert(convert_lib.strip_prefix(state_dict, "module."),
                             inception_keys.inception_map(), inception_variables_shape(model),
                             source=source)


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
