"""The compute-dtype policy (`model.dtype`): with bfloat16 activations and matmuls a stage keeps
float32 parameters and optimiser state, and its training loss follows the float32 curve.

Stages of each network family (convolutional expert, diffusion UNet, transformer), tiny configs
on the tiny corpus, 20 steps on the same 4 batches from the same initial parameters. Tolerance:
at every step the bfloat16 loss is within 35% of the float32 one (measured on 2 cores: 29% for
SyncNet's BCE on its tiny batch, 1e-4 for the DAE, 7e-4 for the DiT), and both curves fall.
Marked `bench` (experiments/test_bench.sh): each stage compiles twice."""

import jax
import numpy as np
import pytest

from experiments import bench_suite
from talking_heads.training import registry

STEPS = 20
TOLERANCE = 0.35


@pytest.fixture(scope="module")
def space(tmp_path_factory):
  return bench_suite.Workspace(str(tmp_path_factory.mktemp("bf16")), "tiny")


def train_losses(config):
  stage = registry.build(config)
  rng = jax.random.PRNGKey(0)
  state = jax.jit(stage.init_state)(rng)
  batches = [b for b, _ in zip(stage.train_iterator(config.batch_size, 0, 1), range(4))]
  step = jax.jit(stage.train_step)
  losses = []
  for i in range(STEPS):
    state, metrics = step(state, batches[i % len(batches)], jax.random.fold_in(rng, i))
    losses.append(float(metrics["loss"]))
  return np.asarray(losses), state


@pytest.mark.bench
@pytest.mark.parametrize("stage", ["syncnet", "dae", "fd2talk_motion"])
def test_bfloat16_follows_the_float32_curve(space, stage):
  curves = {}
  for dtype in ("float32", "bfloat16"):
    curves[dtype], state = train_losses(space.config(stage, {"model.dtype": dtype}))
    assert {x.dtype for x in jax.tree_util.tree_leaves(state.params)} == {np.dtype("float32")}
    assert {x.dtype for x in jax.tree_util.tree_leaves(state.opt_state)
            if np.issubdtype(x.dtype, np.floating)} == {np.dtype("float32")}
  f32, bf16 = curves["float32"], curves["bfloat16"]
  gap = np.abs(bf16 - f32) / np.abs(f32)
  assert gap.max() <= TOLERANCE, (stage, f32, bf16)
  for curve in (f32, bf16):
    assert curve[-5:].mean() < curve[:5].mean(), (stage, curve)
