"""Checkpointing behind one small class, so the orbax API can change in one place.

A checkpoint at step s is a directory `<workdir>/checkpoints/<s>` holding three items saved
together: the train state (sharded arrays, restored straight into the target shardings), the
grain data-iterator state (one file per process) and the run's config as JSON. Orbax writes into
a temporary directory and renames it when complete, so a crash during a save leaves the previous
checkpoint as the newest good one. Saves are asynchronous; `wait()` blocks until they land.
"""

from __future__ import annotations

import json
import os
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from absl import logging

PyTree = Any


class Checkpointer:
  """Keeps the last `keep` checkpoints of a run under `<workdir>/checkpoints`."""

  def __init__(self, workdir: str, keep: int = 3, async_save: bool = True):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, cleanup_tmp_directories=True,
            enable_async_checkpointing=async_save))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: PyTree, data_iterator: Any | None = None,
           config: dict[str, Any] | None = None, force: bool = True) -> bool:
    items = {"state": ocp.args.StandardSave(state)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    if config is not None:
      items["config"] = ocp.args.JsonSave(json.loads(json.dumps(config, default=str)))
    saved = self._manager.save(step, args=ocp.args.Composite(**items), force=force)
    if saved:
      logging.info("Saving checkpoint at step %d to %s.", step, self.directory)
    return saved

  def restore(self, abstract_state: PyTree, data_iterator: Any | None = None,
              step: int | None = None) -> tuple[int, PyTree]:
    """Restores `step` (default: newest) into the shardings carried by `abstract_state`.

    `abstract_state` is a tree of `jax.ShapeDtypeStruct`s with `.sharding` set; the data
    iterator, if given, is moved to the saved position in place.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"No checkpoint found in {self.directory}.")
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    return step, restored["state"]

  def restore_config(self, step: int | None = None) -> dict[str, Any]:
    step = self.latest_step() if step is None else step
    return self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]

  def reached_preemption(self, step: int) -> bool:
    """True when the cluster signalled a preemption (multi-host synchronised)."""
    return self._manager.reached_preemption(step)

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def abstract_with_shardings(tree: PyTree, shardings: PyTree) -> PyTree:
  """ShapeDtypeStructs of `tree` carrying the target shardings (restore reshards into them)."""
  return jax.tree_util.tree_map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
