"""The generic training loop: one function trains any registered stage.

Flow (big_vision style): mesh -> data iterator (this process's shard) -> abstract state via
`jax.eval_shape` -> shardings by rule -> restore the newest checkpoint or jitted init straight
into those shardings -> jitted, donated train step -> logging, NaN guard, evaluation (followed by
the stage's `after_eval`), images and checkpoints at their intervals. An interruption (Ctrl-C,
SIGTERM from a scheduler or `kill`, a failing hook) saves the finished steps before it exits; a
run that fails before its first step writes no checkpoint, so every checkpoint holds trained weights.
One run per workdir: the run holds `<workdir>/.lock` (`workdir_lock`) until it exits.

Trainer config fields (see `experiments/configs/common.py` for defaults):
  stage, seed, total_steps, batch_size (global), mesh{data,fsdp,num_devices},
  sharding{fsdp_min_size,rules}, log_every, checkpoint_every, keep_checkpoints, eval_every,
  eval_batch_size, image_every, progress_bar.
"""

from __future__ import annotations

import dataclasses
import json
import contextlib
import os
import signal
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from talking_heads.training import distributed, registry, sharding, workdir_lock
from talking_heads.training.checkpoint import Checkpointer, abstract_with_shardings
from talking_heads.training.stage import Stage
from talking_heads.training.writers import MetricWriter, Progress

PyTree = Any
# Called after every step with (step, state, metrics); may raise to stop the run.
Hook = Callable[[int, PyTree, Mapping[str, jax.Array]], None]


class NonFiniteLossError(FloatingPointError):
  """Raised when a loss or metric becomes NaN/Inf; the last good checkpoint is kept."""

  def __init__(self, step: int, terms: Sequence[str], last_checkpoint: int | None):
    self.step, self.terms, self.last_checkpoint = step, tuple(terms), last_checkpoint
    where = (f"the newest good checkpoint is step {last_checkpoint}" if last_checkpoint is not None
             else "no checkpoint was written yet")
    super().__init__(f"Non-finite values at step {step} in: {', '.join(terms)}. Training stopped; {where}.")


@dataclasses.dataclass
class TrainResult:
  state: PyTree
  step: int
  history: list[dict[str, float]]   # one entry per step: the step's scalar metrics on the host
  eval_history: list[dict[str, float]]


def _mean_metrics(metrics: Sequence[Mapping[str, Any]]) -> dict[str, float]:
  return {k: float(np.mean([m[k] for m in metrics])) for k in metrics[0]} if metrics else {}


def _non_finite_terms(metrics: Mapping[str, Any]) -> list[str]:
  return [k for k, v in metrics.items() if not np.all(np.isfinite(v))]


@jax.jit
def _tree_is_finite(tree: PyTree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def config_to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return json.loads(config.to_json_best_effort())


def evaluate(state: PyTree, batches: Iterable[Mapping[str, Any]], eval_step: Callable,
             data_sharding: jax.sharding.Sharding, rng: jax.Array) -> dict[str, float]:
  """Mean of the stage's eval metrics over a finite set of batches.

  A stage whose batches carry padding returns `eval_weight` (its number of real examples) with
  per-batch means; batches are then weighted by it, so padding never biases the result.
  """
  results = []
  for i, batch in enumerate(batches):
    metrics = eval_step(state, distributed.global_batch(batch, data_sharding), jax.random.fold_in(rng, i))
    results.append(jax.device_get(metrics))
  if not results:
    return {}
  weights = np.asarray([float(m.pop("eval_weight", 1.0)) for m in results])
  if weights.sum() <= 0:
    return {}
  return {k: float(np.sum([m[k] * w for m, w in zip(results, weights)]) / weights.sum()) for k in results[0]}


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
  """SIGTERM and SIGINT raise KeyboardInterrupt inside the block, so the loop saves and exits.

  SIGTERM ends a job on schedulers and under `kill`; SIGINT is ignored in jobs started in the
  background by a non-interactive shell (`nohup ... &`), which would otherwise never save.
  Outside the main thread (where Python cannot set handlers) nothing changes.
  """
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  def interrupt(signum, frame):
    del frame
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")
  previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)


def record_config(workdir: str, config_dict: dict[str, Any], start_step: int) -> None:
  """Writes `<workdir>/config.json`, the config the workdir's loaders rebuild the stage from.

  A relaunch with a changed config (longer schedule, another EMA decay, another
  parameterisation) replaces it, so the newest checkpoints load with the settings that trained
  them; the replaced one is kept as `config_until_step_<start_step>.json`.
  """
  path = os.path.join(workdir, "config.json")
  if os.path.exists(path):
    with open(path) as f:
      previous = json.load(f)
    if previous == json.loads(json.dumps(config_dict)):
      return
    kept = os.path.join(workdir, f"config_until_step_{start_step}.json")
    os.replace(path, kept)
    logging.warning("The config differs from the one %s was trained with until step %d; that "
                    "one is kept as %s.", workdir, start_step, kept)
  with open(path, "w") as f:
    json.dump(config_dict, f, indent=2)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, stage: Stage | None = None,
                       hooks: Sequence[Hook] = ()) -> TrainResult:
  """Trains `config.stage` to `config.total_steps`, resuming from `workdir` when it has checkpoints.

  The run holds the workdir's lock (`workdir_lock`; process 0 of a multi-host run), so a second
  training there fails at once with `WorkdirLockedError` naming the first.
  """
  os.makedirs(workdir, exist_ok=True)
  with workdir_lock.hold(workdir) if jax.process_index() == 0 else contextlib.nullcontext():
    return _train_and_evaluate(config, workdir, stage, hooks)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, stage: Stage | None,
                        hooks: Sequence[Hook]) -> TrainResult:
  stage = stage or registry.build(config)
  mesh = sharding.make_mesh(config.mesh)
  data_sharding = sharding.batch_sharding(mesh)
  replicated = sharding.replicated(mesh)
  shard_index, shard_count = distributed.process_shard()
  local_batch = distributed.local_batch_size(config.batch_size)
  if config.batch_size % mesh.size:
    raise ValueError(f"batch_size={config.batch_size} must be divisible by the {mesh.size} devices of the mesh.")
  logging.info("Mesh %s over %d devices; global batch %d (%d per process).",
               dict(mesh.shape), mesh.size, config.batch_size, local_batch)

  train_iter = stage.train_iterator(local_batch, shard_index, shard_count)
  init_rng = jax.random.PRNGKey(config.seed)
  abstract_state = jax.eval_shape(stage.init_state, init_rng)
  state_shardings = sharding.state_shardings(abstract_state, mesh, config.sharding)

  checkpointer = Checkpointer(workdir, keep=config.keep_checkpoints)
  config_dict = config_to_dict(config)
  if checkpointer.latest_step() is not None:
    start_step, state = checkpointer.restore(abstract_with_shardings(abstract_state, state_shardings), train_iter)
    logging.info("Resumed from step %d in %s.", start_step, checkpointer.directory)
  else:
    state = jax.jit(stage.init_state, out_shardings=state_shardings)(init_rng)
    start_step = 0
  if jax.process_index() == 0:
    record_config(workdir, config_dict, start_step)
  if int(state.step) != start_step:
    raise RuntimeError(f"Checkpoint step {start_step} disagrees with the restored state's step {int(state.step)}.")

  train_step = jax.jit(stage.train_step, in_shardings=(state_shardings, data_sharding, replicated),
                       out_shardings=(state_shardings, replicated), donate_argnums=(0,))
  eval_step = jax.jit(stage.eval_step, in_shardings=(state_shardings, data_sharding, replicated),
                      out_shardings=replicated)
  images_fn = jax.jit(stage.images, in_shardings=(state_shardings, data_sharding, replicated),
                      out_shardings=replicated)
  eval_rng = jax.random.PRNGKey(config.seed + 1)

  writer = MetricWriter(workdir)
  progress = Progress(config.total_steps, start_step, enabled=config.get("progress_bar", True))
  history: list[dict[str, float]] = []
  eval_history: list[dict[str, float]] = []
  pending: list[tuple[int, Mapping[str, jax.Array]]] = []  # device metrics not yet fetched/checked
  last_saved = checkpointer.latest_step()
  step = start_step
  last_log_time, last_log_step = time.perf_counter(), step

  def fetch_and_check() -> list[dict[str, float]]:
    """Moves pending metrics to the host; raises on the first step with NaN/Inf values."""
    fetched = jax.device_get([m for _, m in pending])
    out = []
    for (s, _), m in zip(pending, fetched):
      bad = _non_finite_terms(m)
      if bad:
        raise NonFiniteLossError(s, bad, last_saved)
      out.append({k: float(v) for k, v in m.items()})
    pending.clear()
    history.extend(out)
    return out

  def save(at_step: int) -> None:
    nonlocal last_saved
    fetch_and_check()
    if not bool(_tree_is_finite(state)):
      raise NonFiniteLossError(at_step, ["parameters/optimizer state"], last_saved)
    checkpointer.save(at_step, state, train_iter, config_dict)
    last_saved = at_step

  with signals_interrupt():
    try:
      while step < config.total_steps:
        local = next(train_iter)
        batch = distributed.global_batch(local, data_sharding)
        state, metrics = train_step(state, batch, jax.random.fold_in(state.rng, step))
        step += 1
        pending.append((step, metrics))
        for hook in hooks:
          hook(step, state, metrics)

        final = step == config.total_steps
        if step % config.log_every == 0 or final:
          logged = fetch_and_check()
          now = time.perf_counter()
          scalars = _mean_metrics(logged)
          scalars["steps_per_second"] = (step - last_log_step) / max(now - last_log_time, 1e-9)
          last_log_time, last_log_step = now, step
          writer.write_scalars(step, scalars)
          progress.update(len(logged), {k: v for k, v in scalars.items() if "loss" in k})
        if config.eval_every and (step % config.eval_every == 0 or final):
          eval_metrics = evaluate(state, stage.eval_batches(
              distributed.local_batch_size(config.eval_batch_size), shard_index, shard_count),
              eval_step, data_sharding, eval_rng)
          if eval_metrics:
            eval_history.append({"step": step, **eval_metrics})
            writer.write_scalars(step, {f"eval/{k}": v for k, v in eval_metrics.items()})
            state = stage.after_eval(state, eval_metrics)
        if config.image_every and (step % config.image_every == 0 or final):
          images = images_fn(state, batch, jax.random.fold_in(eval_rng, step))
          writer.write_images(step, jax.device_get(images))
        if step % config.checkpoint_every == 0 or final:
          save(step)
        elif checkpointer.reached_preemption(step):
          logging.warning("Preemption signalled at step %d: saving and stopping.", step)
          save(step)
          break
    except NonFiniteLossError:
      logging.error("NaN guard fired; keeping checkpoint %s.", last_saved)
      raise
    except BaseException:
      # Interrupted (Ctrl-C, a failing hook or data source): keep the finished steps. Before a
      # first step there are none: a checkpoint would pass random initial weights off as trained.
      if step > start_step and step != last_saved and not _state_deleted(state):
        logging.warning("Run interrupted at step %d: saving a checkpoint before exiting.", step)
        save(step)
      raise
    finally:
      if hasattr(train_iter, "close"):
        train_iter.close()   # stops grain worker processes and read threads
      checkpointer.close()
      writer.close()
      progress.close()
  return TrainResult(state=state, step=step, history=history, eval_history=eval_history)


def _state_deleted(state: PyTree) -> bool:
  """True when a failed donated step left the state's buffers invalid."""
  return any(getattr(x, "is_deleted", lambda: False)() for x in jax.tree_util.tree_leaves(state))
