"""Restoring a trained stage from its workdir, for generation, evaluation and frozen experts.

A workdir counts as trained only when its checkpoint was written after at least one optimiser
step: a step-0 checkpoint holds the random initial weights and is refused (`UntrainedWorkdirError`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections

from talking_heads.training import registry, sharding
from talking_heads.training.checkpoint import Checkpointer, abstract_with_shardings
from talking_heads.training.stage import Stage


class UntrainedWorkdirError(FileNotFoundError):
  """The workdir's checkpoint is step 0: saved before any optimiser step, its weights are random."""


def trained_step(checkpointer: Checkpointer, workdir: str, step: int | None = None) -> int:
  """`step`, or the newest step of `checkpointer`, once it is known to hold trained weights.

  Raises:
    FileNotFoundError: the workdir has no checkpoint.
    UntrainedWorkdirError: the step is 0 (naming the workdir).
  """
  latest = checkpointer.latest_step()
  if latest is None:
    raise FileNotFoundError(f"No checkpoint in {checkpointer.directory}: train the stage first.")
  step = latest if step is None else step
  if step == 0:
    problem = "was never trained" if latest == 0 else f"was asked for step 0 (newest: {latest})"
    raise UntrainedWorkdirError(f"{workdir} {problem}: checkpoint 0 holds the random initial "
                                "weights, saved before any optimiser step; train it first.")
  return step


def load_config(workdir: str, expected_stage: str | None = None) -> ml_collections.ConfigDict:
  """The workdir's config; ValueError when `expected_stage` is given and the workdir trained another."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{workdir} is not a training workdir: {path} is missing.")
  with open(path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  if expected_stage is not None and config.stage != expected_stage:
    raise ValueError(f"{workdir} trained stage {config.stage!r}, not {expected_stage!r}")
  return config


def restore_stage(workdir: str, step: int | None = None, stage: Stage | None = None,
                  expected_stage: str | None = None) -> tuple[Stage, Any, int]:
  """(stage, train state, step) of a workdir's newest (or given) checkpoint, replicated on this host's devices.

  `stage` replaces building the stage from the workdir's config (e.g. one built without the
  dataset its constructor would otherwise read); `expected_stage` is checked before anything is
  restored (ValueError naming both stages, as `load_config`).
  """
  config = load_config(workdir, expected_stage)
  checkpointer = Checkpointer(workdir)
  try:
    step = trained_step(checkpointer, workdir, step)
    stage = stage or registry.build(config)
    abstract = jax.eval_shape(stage.init_state, jax.random.PRNGKey(0))
    mesh = sharding.make_mesh({"data": -1, "fsdp": 1}, jax.local_devices())
    shardings = jax.tree_util.tree_map(lambda _: sharding.replicated(mesh), abstract)
    step, state = checkpointer.restore(abstract_with_shardings(abstract, shardings), step=step)
  finally:
    checkpointer.close()
  return stage, state, step
