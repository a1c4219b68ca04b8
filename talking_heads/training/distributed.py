"""Multi-host set-up and global batch assembly.

Each JAX process reads its own shard of the data (`shard_index = jax.process_index()`); the
per-process arrays are stitched into one global array with
`jax.make_array_from_process_local_data`, so the jitted step sees the global batch.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import Sharding

PyTree = Any


def maybe_initialize(enabled: bool, coordinator_address: str | None = None,
                     num_processes: int | None = None, process_id: int | None = None) -> None:
  """Calls `jax.distributed.initialize` once when multi-host training is requested.

  On TPU pods and SLURM/GPU clusters the arguments are discovered from the environment;
  pass them explicitly elsewhere.
  """
  if not enabled:
    return
  kwargs = {k: v for k, v in dict(coordinator_address=coordinator_address, num_processes=num_processes,
                                   process_id=process_id).items() if v is not None}
  jax.distributed.initialize(**kwargs)
  logging.info("jax.distributed: process %d of %d, %d local / %d global devices.",
               jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count())


def process_shard() -> tuple[int, int]:
  """(shard_index, shard_count) of this process's data."""
  return jax.process_index(), jax.process_count()


def local_batch_size(global_batch_size: int) -> int:
  count = jax.process_count()
  if global_batch_size % count:
    raise ValueError(f"batch_size={global_batch_size} is not divisible by the {count} processes.")
  return global_batch_size // count


def global_batch(local_batch: PyTree, sharding: Sharding) -> PyTree:
  """Process-local numpy batch -> globally sharded jax arrays (leading dim is the batch)."""
  return jax.tree_util.tree_map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)
