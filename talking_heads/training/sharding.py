"""Device mesh and sharding rules.

One mesh with axes `data` and `fsdp`. The batch is split over both axes. Parameters (and
everything shaped like them: optimiser moments, EMA) are replicated, or split over `fsdp`
along their largest dimension divisible by the `fsdp` size when they hold at least
`fsdp_min_size` elements. Regex rules over '/'-joined pytree paths override the default.

The mesh config (ConfigDict or mapping) has:
  data: size of the data axis, -1 for "all devices not used by fsdp".
  fsdp: size of the fsdp axis (1 disables FSDP).
  num_devices: use only the first N devices (0: all); tests compare 1 device with 8.
The sharding config has:
  fsdp_min_size: smallest parameter (in elements) that FSDP splits.
  rules: sequence of (regex, "replicate" | "fsdp") pairs, first match wins.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from talking_heads.training.tree_utils import path_names

PyTree = Any
DATA_AXES = ("data", "fsdp")


def make_mesh(cfg: Mapping[str, Any], devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A (data, fsdp) mesh over the given (default: all global) devices."""
  devices = list(jax.devices() if devices is None else devices)
  num = int(cfg.get("num_devices", 0) or 0)
  if num:
    if num > len(devices):
      raise ValueError(f"mesh.num_devices={num} but only {len(devices)} devices are visible.")
    devices = devices[:num]
  fsdp = int(cfg.get("fsdp", 1))
  data = int(cfg.get("data", -1))
  if fsdp < 1 or len(devices) % fsdp:
    raise ValueError(f"mesh.fsdp={fsdp} must divide the number of devices ({len(devices)}).")
  if data == -1:
    data = len(devices) // fsdp
  if data * fsdp != len(devices):
    raise ValueError(f"mesh data={data} x fsdp={fsdp} does not match {len(devices)} devices; "
                     "set mesh.data=-1 to use all of them.")
  return Mesh(np.asarray(devices, dtype=object).reshape(data, fsdp), DATA_AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over every mesh axis."""
  return NamedSharding(mesh, P(DATA_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def _fsdp_spec(shape: Sequence[int], fsdp_size: int, min_size: int) -> P:
  if fsdp_size <= 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
    return P()
  # Largest dimension that divides evenly; ties go to the later (usually output) dimension.
  candidates = [(d, i) for i, d in enumerate(shape) if d % fsdp_size == 0]
  if not candidates:
    return P()
  _, axis = max(candidates)
  spec = [None] * len(shape)
  spec[axis] = "fsdp"
  return P(*spec)


def state_specs(abstract_state: PyTree, fsdp_size: int, cfg: Mapping[str, Any]) -> PyTree:
  """PartitionSpecs for every leaf of a (abstract) state on an `fsdp_size`-wide fsdp axis, by the
  FSDP rule and regex overrides (no devices needed)."""
  min_size = int(cfg.get("fsdp_min_size", 2**18))
  rules = [(re.compile(pattern), tactic) for pattern, tactic in cfg.get("rules", ())]
  for _, tactic in rules:
    if tactic not in ("replicate", "fsdp"):
      raise ValueError(f"Unknown sharding tactic {tactic!r}; expected 'replicate' or 'fsdp'.")

  def leaf_spec(name: str, leaf: Any) -> P:
    shape = getattr(leaf, "shape", ())
    tactic = next((t for r, t in rules if r.search(name)), None)
    if tactic == "replicate" or not shape:
      return P()
    return _fsdp_spec(shape, fsdp_size, 0 if tactic == "fsdp" else min_size)

  return jax.tree_util.tree_map(leaf_spec, path_names(abstract_state), abstract_state)


def state_shardings(abstract_state: PyTree, mesh: Mesh, cfg: Mapping[str, Any]) -> PyTree:
  """NamedShardings for every leaf of a (abstract) state, by the FSDP rule and regex overrides."""
  specs = state_specs(abstract_state, mesh.shape["fsdp"], cfg)
  return jax.tree_util.tree_map(lambda spec: NamedSharding(mesh, spec), specs,
                                is_leaf=lambda x: isinstance(x, P))


def bytes_per_device(abstract_state: PyTree, fsdp_size: int, cfg: Mapping[str, Any]) -> int:
  """Bytes of the state (parameters, optimiser moments, EMA, ...) one device holds with an
  `fsdp_size`-wide fsdp axis: replicated leaves whole, FSDP leaves 1/fsdp_size of them."""
  specs = state_specs(abstract_state, fsdp_size, cfg)
  total = 0
  for leaf, spec in zip(jax.tree_util.tree_leaves(abstract_state),
                        jax.tree_util.tree_leaves(specs, is_leaf=lambda x: isinstance(x, P))):
    split = fsdp_size if "fsdp" in tuple(spec) else 1
    total += int(np.prod(leaf.shape, dtype=np.int64)) * np.dtype(leaf.dtype).itemsize // split
  return total
