"""One loader for frozen networks: a trained workdir of ours OR a public checkpoint file.

Experts, perceptual networks and base models that a stage keeps frozen come either from a
workdir trained here (restored with `talking_heads.training.restore`) or from the public file
through its converter (`talking_heads.pretrained.*`). Exactly one source must be given; nothing
falls back to random weights.

Example (Wav2Lip's lip-sync expert):
  frozen = load_frozen(
      stage="syncnet", variables_of=lambda stage, state: stage.variables(state),
      weights_key="wav2lip_lipsync_expert", convert=pretrained.syncnet.load_syncnet_color,
      workdir=cfg.workdir, checkpoint=cfg.checkpoint,
      train_config="experiments/configs/syncnet.py:demo", what="sync_expert")
  frozen.variables, frozen.source, frozen.config   # config: the workdir's, None for a file
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any, Callable

import jax
import ml_collections

from talking_heads.training import restore
from third_party import weights as weights_lib

Variables = Any


@dataclasses.dataclass(frozen=True)
class Frozen:
  """A frozen network's variables (numpy, on the host), where they came from and, for a trained
  workdir, its stage config (None for a public file)."""
  variables: Variables
  source: str
  config: ml_collections.ConfigDict | None = None


def load_frozen(*, stage: str, variables_of: Callable[[Any, Any], Variables], weights_key: str,
                convert: Callable[[pathlib.Path], Variables],
                workdir: str | os.PathLike[str] | None = None,
                checkpoint: str | os.PathLike[str] | None = None, step: int | None = None,
                train_config: str | None = None, what: str = "frozen network",
                names: tuple[str, str] = ("workdir", "checkpoint")) -> Frozen:
  """Loads a frozen network from exactly one of `workdir` and `checkpoint`.

  Args:
    stage: the stage name a workdir must have trained (its config's `stage`).
    variables_of: (restored stage, train state) -> the network's variables.
    weights_key: the `third_party.weights.WEIGHTS` entry of the public file.
    convert: reads the public file (a path) into variables, e.g.
      `pretrained.syncnet.load_syncnet_color`.
    workdir: a training workdir of `stage`.
    checkpoint: the public file, or the weights folder holding it under its registered name.
    step: the workdir checkpoint to restore (default: the newest).
    train_config: the config to name in the "train it first" hint (default `<stage>.py:demo`).
    what: names the network (e.g. a config field) in error messages.
    names: what `workdir` and `checkpoint` are called where the user set them (config keys or
      flags), so that errors point there.

  Raises:
    ValueError: both or neither source given, or the workdir trained another stage.
    FileNotFoundError: the workdir has no config or no checkpoint, or it was never trained (only
      a step-0 checkpoint: random weights); the message gives the train command.
    MissingWeightsError: the public file is missing (naming it, what it is and its source).
  """
  entry = weights_lib.WEIGHTS[weights_key]
  if workdir and checkpoint:
    raise ValueError(f"{what}: give a trained workdir or a public checkpoint, not both: set only "
                     f"one of {names[0]}={os.fspath(workdir)!r} and {names[1]}="
                     f"{os.fspath(checkpoint)!r}")
  hint = ("python -m experiments.train --config="
          f"{train_config or f'experiments/configs/{stage}.py:demo'} --workdir=...")
  if workdir:
    workdir = os.fspath(workdir)
    try:
      restored_stage, state, restored_step = restore.restore_stage(workdir, step,
                                                                   expected_stage=stage)
      config = restored_stage.config
    except FileNotFoundError as e:
      raise FileNotFoundError(f"{what}: {names[0]}={workdir!r} is not a trained {stage!r} stage "
                              f"({e}) Train one with `{hint}`.") from e
    except ValueError as e:
      raise ValueError(f"{what}: {e}") from e
    variables = jax.device_get(variables_of(restored_stage, state))
    return Frozen(variables, f"{workdir} step {restored_step}", config)
  if checkpoint:
    path = pathlib.Path(checkpoint)
    if path.is_dir():
      path = weights_lib.require(path, weights_key)
    elif not path.is_file():
      raise weights_lib.MissingWeightsError(
          f"{what}: {names[1]}={os.fspath(checkpoint)!r} does not exist: it should be "
          f"{entry.filename} ({entry.description}); get it from {entry.source_url}")
    return Frozen(convert(path), os.fspath(path))
  raise ValueError(f"{what}: no weights given and frozen networks are never random: set a "
                   f"workdir of the {stage!r} stage (train one with `{hint}`) or the public "
                   f"checkpoint {entry.filename} ({entry.description}; from {entry.source_url})")
