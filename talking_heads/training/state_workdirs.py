"""Stage workdirs without training: a config's stage state written as a checkpoint.

For tests and benchmarks (`experiments.bench_suite`: speed does not depend on the weights' values).
Running a stage's compiled init costs 20-60 s on 2 cores, so the state is built from the abstract
shapes (`jax.eval_shape`) and filled by `random_values` (loaders and evaluations run; the numbers
mean nothing) or `zeros` (a run that failed before its first step, which loaders must refuse).
"""

from __future__ import annotations

import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from talking_heads.training import loop
from talking_heads.training import registry
from talking_heads.training.checkpoint import Checkpointer

# (path of the leaf in the state, abstract leaf) -> array.
Fill = Callable[[Any, jax.ShapeDtypeStruct], jax.Array]


def zeros(path: Any, x: jax.ShapeDtypeStruct) -> jax.Array:
  del path
  return jnp.zeros(x.shape, x.dtype)


def random_values(seed: int = 0) -> Fill:
  """He-normal kernels and codebooks, unit scales and variances, zero biases and means, zero
  integers (step counters): activations stay finite through deep tiny networks."""
  rng = np.random.default_rng(seed)

  def fill(path: Any, x: jax.ShapeDtypeStruct) -> jax.Array:
    name = getattr(path[-1], "key", getattr(path[-1], "name", None))
    if not jnp.issubdtype(x.dtype, jnp.floating):
      return jnp.zeros(x.shape, x.dtype)
    if name in ("kernel", "codebook"):
      fan_in = np.prod(x.shape[:-1]) if name == "kernel" else 1
      return jnp.asarray(rng.normal(size=x.shape) * np.sqrt(2.0 / fan_in), x.dtype)
    return jnp.full(x.shape, 1.0 if name in ("scale", "var") else 0.0, x.dtype)

  return fill


def write_state_workdir(workdir: str | os.PathLike, config: Any, step: int = 1,
                        fill: Fill | None = None) -> str:
  """A workdir of `config`'s stage (`registry.build`) holding one checkpoint at `step` whose
  state is `fill` (default `random_values()`) of the stage's abstract state; returns its path."""
  workdir = str(workdir)
  fill = fill or random_values()
  abstract = jax.eval_shape(registry.build(config).init_state, jax.random.PRNGKey(config.seed))
  state = jax.tree_util.tree_map_with_path(fill, abstract)
  checkpointer = Checkpointer(workdir, async_save=False)
  checkpointer.save(step, state, config=loop.config_to_dict(config))
  checkpointer.close()
  loop.record_config(workdir, loop.config_to_dict(config), step)
  return workdir
