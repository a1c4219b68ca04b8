"""Small pytree helpers shared by the optimiser, sharding and logging code."""

from __future__ import annotations

from typing import Any

import jax

PyTree = Any


def _key_name(key: Any) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def path_names(tree: PyTree) -> PyTree:
  """A tree of '/'-joined key paths (e.g. 'params/encoder/conv_0/kernel') shaped like `tree`."""
  return jax.tree_util.tree_map_with_path(lambda path, _: "/".join(_key_name(k) for k in path), tree)


def count_params(tree: PyTree) -> int:
  return sum(int(x.size) for x in jax.tree_util.tree_leaves(tree))
