"""The contract between a training stage and the generic loop.

A stage says what trains, on what data, with which losses; the loop (`loop.py`) owns the mesh,
sharding, jitting, checkpointing, logging and evaluation. Every method that the loop jits is a
pure function of its arguments.
"""

from __future__ import annotations

import abc
from typing import Any, Callable, Iterable, Mapping

import jax
import ml_collections

from talking_heads.training import steps

PyTree = Any
Batch = Mapping[str, Any]
Metrics = Mapping[str, jax.Array]


class Stage(abc.ABC):
  """Base class of training stages; subclasses override the methods they use.

  Required: `init_state`, `train_step`, `train_iterator`.
  Optional: `eval_step` + `eval_batches` (periodic evaluation), `after_eval` (schedules driven
  by evaluation results), `images` (image grids), `inference` (benchmarked by `experiments.bench`).
  """

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  @abc.abstractmethod
  def init_state(self, rng: jax.Array) -> PyTree:
    """Fresh train state (TrainState or AdversarialTrainState); traced by `jax.eval_shape`
    and `jax.jit`."""

  @abc.abstractmethod
  def train_step(self, state: PyTree, batch: Batch, rng: jax.Array) -> tuple[PyTree, Metrics]:
    """(state, batch, rng) -> (state, scalar metrics); pure, jitted with donated state."""

  @abc.abstractmethod
  def train_iterator(self, batch_size: int, shard_index: int, shard_count: int) -> Any:
    """A checkpointable grain iterator of process-local numpy batches of `batch_size`."""

  def eval_step(self, state: PyTree, batch: Batch, rng: jax.Array) -> Metrics | None:
    """Scalar metrics on one eval batch (averaged over `eval_batches` by the loop)."""
    return None

  def eval_batches(self, batch_size: int, shard_index: int, shard_count: int) -> Iterable[Batch]:
    """A finite iterable of process-local eval batches; empty when the stage has no evaluation."""
    return ()

  def after_eval(self, state: PyTree, eval_metrics: Mapping[str, float]) -> PyTree:
    """The state to train on after an evaluation with these (host) metrics; runs outside jit.

    A returned state must keep every leaf's shape, dtype and sharding (replace values, e.g. a
    loss weight switched on once an eval loss is low enough); it is checkpointed like any other.
    """
    del eval_metrics
    return state

  def images(self, state: PyTree, batch: Batch, rng: jax.Array) -> Mapping[str, jax.Array]:
    """Named image batches [N, H, W, 3] in [0, 1] for TensorBoard/PNG grids."""
    return {}

  def inference(self, state: PyTree) -> tuple[Callable[..., Any], tuple[Any, ...]] | None:
    """(function, example arguments) of the stage's inference path, for benchmarks."""
    return None


class LossStage(Stage):
  """A stage that trains one TrainState by `steps.gradient_step` on its `loss_fn`.

  Subclasses define `loss_fn` (signature in `training.steps`) instead of `train_step`;
  `init_state` must return a `TrainState`.
  """

  @abc.abstractmethod
  def loss_fn(self, params: PyTree, model_state: PyTree, batch: Batch, rng: jax.Array
              ) -> tuple[jax.Array, tuple[Metrics, PyTree | None]]:
    """(loss, (metrics, new model_state or None)); pure, differentiated w.r.t. `params`."""

  def train_step(self, state: PyTree, batch: Batch, rng: jax.Array) -> tuple[PyTree, Metrics]:
    return steps.gradient_step(state, self.loss_fn, batch, rng)
