"""Converts flat PyTorch state dicts (from `torch_reader`) into Flax variable trees.

A converter for one network is a name map: torch key -> (collection, flax path, transform). The
map is checked against the variables the Flax model expects (`model.init` or `jax.eval_shape`
of it), so a checkpoint either converts completely or fails with every problem named:
unknown torch keys, torch keys the map needs but the file lacks, flax leaves nobody fills, and
shape mismatches after the layout transform. `num_batches_tracked` buffers (BatchNorm step
counters that inference never reads) are skipped explicitly; other keys a network deliberately
drops (e.g. a classifier head) are passed as `ignore` patterns.

Layouts: torch convs are O I [D] H W, flax convs [D] H W I O; torch linears (out, in), flax
Dense kernels (in, out).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Mapping

import numpy as np

Transform = Callable[[np.ndarray], np.ndarray]
FlaxTarget = tuple[str, tuple[str, ...], Transform | None]
NameMap = dict[str, FlaxTarget]

_ALWAYS_IGNORED = re.compile(r"(^|\.)num_batches_tracked$")
_MAX_LISTED = 20


class ConversionError(ValueError):
  """A state dict does not match a converter's name map or the Flax model's variables."""


def conv_kernel(w: np.ndarray) -> np.ndarray:
  """Torch conv weight O I [D] H W (or O I W for conv1d) -> flax kernel [D] H W I O."""
  if w.ndim < 3:
    raise ConversionError(f"conv weight must have >= 3 dims (O, I, spatial...), got {w.shape}")
  return np.transpose(w, tuple(range(2, w.ndim)) + (1, 0))


def conv_transpose_kernel(w: np.ndarray) -> np.ndarray:
  """Torch ConvTranspose weight I O [D] H W -> kernel for flax `nn.ConvTranspose`.

  Torch's transposed conv correlates the zero-dilated input with the spatially flipped kernel;
  flax's (with the default `transpose_kernel=False`) uses the kernel as given, so the kernel is
  flipped here. The flax layer must then use padding ((k-1-p, k-1-p+output_padding), ...) per
  spatial dim for torch's padding p, and `groups == 1`.
  """
  if w.ndim < 3:
    raise ConversionError(f"conv-transpose weight must have >= 3 dims (I, O, spatial...), "
                          f"got {w.shape}")
  spatial = tuple(range(2, w.ndim))
  return np.ascontiguousarray(np.transpose(np.flip(w, axis=spatial), spatial + (0, 1)))


def linear_kernel(w: np.ndarray) -> np.ndarray:
  """Torch Linear weight (out, in) -> flax Dense kernel (in, out)."""
  if w.ndim != 2:
    raise ConversionError(f"linear weight must be 2-D (out, in), got {w.shape}")
  return w.T


def strip_prefix(state_dict: Mapping[str, np.ndarray],
                 prefixes: str | Iterable[str]) -> dict[str, np.ndarray]:
  """Removes the first matching prefix (e.g. 'module.') from each key; other keys are kept.

  Raises:
    ConversionError: two keys become equal after stripping.
  """
  prefixes = (prefixes,) if isinstance(prefixes, str) else tuple(prefixes)
  out: dict[str, np.ndarray] = {}
  for key, value in state_dict.items():
    new = next((key[len(p):] for p in prefixes if key.startswith(p)), key)
    if new in out:
      raise ConversionError(f"keys collide after stripping {prefixes}: {new!r}")
    out[new] = value
  return out


def subtree(state_dict: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
  """Keeps only keys under `prefix` (e.g. 'state_dict.'), with the prefix removed.

  Raises:
    ConversionError: no key starts with `prefix`.
  """
  out = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
  if not out:
    sample = sorted(state_dict)[:5]
    raise ConversionError(f"no key starts with {prefix!r} (first keys: {sample})")
  return out


def map_conv(torch_prefix: str, flax_path: tuple[str, ...], *, bias: bool = True) -> NameMap:
  """Name-map entries for a torch Conv{1,2,3}d -> flax `nn.Conv` (kernel [, bias])."""
  entries: NameMap = {f"{torch_prefix}.weight": ("params", flax_path + ("kernel",), conv_kernel)}
  if bias:
    entries[f"{torch_prefix}.bias"] = ("params", flax_path + ("bias",), None)
  return entries


def map_conv_transpose(torch_prefix: str, flax_path: tuple[str, ...], *,
                       bias: bool = True) -> NameMap:
  """Name-map entries for a torch ConvTranspose -> flax `nn.ConvTranspose` (see its padding)."""
  entries: NameMap = {
      f"{torch_prefix}.weight": ("params", flax_path + ("kernel",), conv_transpose_kernel)}
  if bias:
    entries[f"{torch_prefix}.bias"] = ("params", flax_path + ("bias",), None)
  return entries


def map_linear(torch_prefix: str, flax_path: tuple[str, ...], *, bias: bool = True) -> NameMap:
  """Name-map entries for a torch Linear -> flax `nn.Dense`."""
  entries: NameMap = {f"{torch_prefix}.weight": ("params", flax_path + ("kernel",), linear_kernel)}
  if bias:
    entries[f"{torch_prefix}.bias"] = ("params", flax_path + ("bias",), None)
  return entries


def map_batchnorm(torch_prefix: str, flax_path: tuple[str, ...]) -> NameMap:
  """Name-map entries for a torch BatchNorm{1,2,3}d -> flax `nn.BatchNorm` (+ batch_stats)."""
  return {
      f"{torch_prefix}.weight": ("params", flax_path + ("scale",), None),
      f"{torch_prefix}.bias": ("params", flax_path + ("bias",), None),
      f"{torch_prefix}.running_mean": ("batch_stats", flax_path + ("mean",), None),
      f"{torch_prefix}.running_var": ("batch_stats", flax_path + ("var",), None),
  }


def _flatten_variables(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()
                       ) -> dict[tuple[str, ...], Any]:
  out: dict[tuple[str, ...], Any] = {}
  for key, value in tree.items():
    path = prefix + (str(key),)
    if isinstance(value, Mapping):
      out.update(_flatten_variables(value, path))
    else:
      out[path] = value
  return out


def _unflatten(flat: Mapping[tuple[str, ...], np.ndarray]) -> dict[str, Any]:
  tree: dict[str, Any] = {}
  for path, value in flat.items():
    node = tree
    for part in path[:-1]:
      node = node.setdefault(part, {})
    node[path[-1]] = value
  return tree


def _problems(kind: str, items: list[str]) -> list[str]:
  listed = [f"  {kind}: {item}" for item in items[:_MAX_LISTED]]
  if len(items) > _MAX_LISTED:
    listed.append(f"  ... and {len(items) - _MAX_LISTED} more {kind} problems")
  return listed


def convert(state_dict: Mapping[str, np.ndarray], mapping: Mapping[str, FlaxTarget],
            expected_variables: Mapping[str, Any], *, ignore: Iterable[str] = (),
            source: str = "state dict") -> dict[str, Any]:
  """Builds Flax variables from a torch state dict through a complete name map.

  Args:
    state_dict: flat {torch key: array}, prefixes already stripped.
    mapping: {torch key: (collection, flax path, transform or None)}.
    expected_variables: the model's variables (arrays or `jax.ShapeDtypeStruct`s), e.g.
      `jax.eval_shape(model.init, ...)`; defines the leaves to fill, their shapes and dtypes.
    ignore: regular expressions (full match) of torch keys dropped on purpose.
    source: names the checkpoint in error messages (e.g. its path).

  Returns:
    {collection: nested dict of np.ndarray}, cast to the expected dtypes.

  Raises:
    ConversionError: listing every unknown, missing, unfilled, duplicated or mis-shaped key.
  """
  ignored = [re.compile(p) for p in ignore]
  expected = {(c,) + path: leaf for c, tree in expected_variables.items()
              for path, leaf in _flatten_variables(tree).items()}
  filled: dict[tuple[str, ...], np.ndarray] = {}
  filled_by: dict[tuple[str, ...], str] = {}
  unknown, missing, mismatched, duplicated, no_target = [], [], [], [], []

  for key in state_dict:
    if key not in mapping and not _ALWAYS_IGNORED.search(key) and not any(
        p.fullmatch(key) for p in ignored):
      unknown.append(key)
  for key, (collection, path, transform) in mapping.items():
    target = (collection,) + tuple(path)
    if key not in state_dict:
      missing.append(f"{key} (for {'/'.join(target)})")
      continue
    if target not in expected:
      no_target.append(f"{key} -> {'/'.join(target)}")
      continue
    if target in filled_by:
      duplicated.append(f"{key} and {filled_by[target]} -> {'/'.join(target)}")
      continue
    value = np.asarray(state_dict[key])
    try:
      value = transform(value) if transform is not None else value
    except ConversionError as e:
      mismatched.append(f"{key}: {e}")
      continue
    want = expected[target]
    if tuple(value.shape) != tuple(want.shape):
      mismatched.append(f"{key} {tuple(state_dict[key].shape)} -> {'/'.join(target)}: "
                        f"{tuple(value.shape)} after transform, model expects {tuple(want.shape)}")
      continue
    filled[target] = np.asarray(value, dtype=want.dtype)
    filled_by[target] = key
  unfilled = ["/".join(t) for t in expected if t not in filled]

  report = (_problems("unknown torch key", unknown) + _problems("missing torch key", missing)
            + _problems("target not in the flax model", no_target)
            + _problems("two keys, one target", duplicated) + _problems("shape", mismatched)
            + _problems("flax leaf not filled", unfilled))
  if report:
    raise ConversionError(f"{source}: cannot convert to the flax model:\n" + "\n".join(report))
  return _unflatten(filled)
