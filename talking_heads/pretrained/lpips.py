"""LPIPS v0.1 public files -> `talking_heads.metrics.lpips.LPIPS` variables.

Two files per backbone: the torchvision trunk (`vgg16-397923af.pth` or
`alexnet-owt-7be5be79.pth`) and the linear layers that ship inside the `lpips` wheel
(`lpips/weights/v0.1/{alex,vgg}.pth`, key layout in `third_party.lpips_keys`).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from talking_heads.metrics import lpips as lpips_metric
from talking_heads.pretrained import vgg as vgg_pretrained
from third_party import convert
from third_party import lpips_keys
from third_party import torch_reader
from third_party import weights


def convert_lpips_linear(state_dict: Mapping[str, np.ndarray],
                         expected_variables: Mapping[str, Any],
                         source: str = "lpips linear layers") -> dict[str, Any]:
  """`lpips/weights/v0.1/<net>.pth` -> {"params": {"lin0": ..., ...}} (backbone not included).

  Raises:
    ConversionError: unknown/missing/mis-shaped keys, or negative weights.
  """
  lpips_keys.check_non_negative(state_dict, source)
  lins = {k: v for k, v in expected_variables["params"].items() if k.startswith("lin")}
  return convert.convert(state_dict, lpips_keys.linear_name_map(len(lins)), {"params": lins},
                         source=source)


def convert_lpips(net: str, backbone_state_dict: Mapping[str, np.ndarray],
                  linear_state_dict: Mapping[str, np.ndarray],
                  expected_variables: Mapping[str, Any],
                  sources: tuple[str, str] = ("backbone", "lpips linear layers")
                  ) -> dict[str, Any]:
  """Both torch state dicts -> the full variables of `LPIPS(net)`."""
  backbone_expected = {"params": expected_variables["params"]["backbone"]}
  if net == "alex":
    backbone = vgg_pretrained.convert_alexnet(backbone_state_dict, backbone_expected, sources[0])
  elif net == "vgg":
    backbone = vgg_pretrained.convert_vgg(backbone_state_dict, backbone_expected,
                                          source=sources[0])
  else:
    raise ValueError(f"LPIPS net must be one of {lpips_metric.NETS}, got {net!r}")
  linear = convert_lpips_linear(linear_state_dict, expected_variables, sources[1])
  return {"params": {"backbone": backbone["params"], **linear["params"]}}


def lpips_expected_variables(net: str) -> Mapping[str, Any]:
  """Shapes of `LPIPS(net)` variables (no computation)."""
  x = jnp.zeros((1, 64, 64, 3), jnp.float32)
  return jax.eval_shape(lpips_metric.LPIPS(net=net).init, jax.random.key(0), x, x)


def load_lpips(weights_dir: str | os.PathLike[str] | None, net: str = "alex") -> dict[str, Any]:
  """Variables for `LPIPS(net)` / `lpips_distance` from the public files in `weights_dir`.

  Raises:
    MissingWeightsError: naming each file when the backbone or linear file is absent.
  """
  if net not in lpips_metric.NETS:
    raise ValueError(f"LPIPS net must be one of {lpips_metric.NETS}, got {net!r}")
  names = ("alexnet", "lpips_alex") if net == "alex" else ("vgg16", "lpips_vgg")
  problems, paths = [], []
  for name in names:
    try:
      paths.append(weights.require(weights_dir, name))
    except weights.MissingWeightsError as e:
      problems.append(str(e))
  if problems:
    raise weights.MissingWeightsError(f"LPIPS ({net}) needs two files:\n" + "\n".join(problems))
  backbone_path, linear_path = paths
  return convert_lpips(net, torch_reader.load_torch_file(backbone_path),
                       torch_reader.load_torch_file(linear_path), lpips_expected_variables(net),
                       (str(backbone_path), str(linear_path)))
