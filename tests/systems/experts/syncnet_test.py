"""SyncNet_color training stage: overfits a tiny batch, trains end to end, resumes, restores."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs.experts import syncnet as syncnet_config
from talking_heads.pipelines import sync as sync_pipeline
from talking_heads.pipelines import testing
from talking_heads.systems.experts.syncnet import SyncNetStage
from talking_heads.training import loop, restore


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  root = tmp_path_factory.mktemp("sync_ds")
  testing.write_random_dataset(root, [40, 40, 30], image_size=96, splits=["train", "train", "val"])
  return str(root)


def tiny_config(root, **kw):
  c = syncnet_config.get_config("tiny")
  c.data.root = root
  c.progress_bar = False
  for k, v in kw.items():
    c[k] = v
  return c


def test_overfits_a_tiny_batch(dataset):
  config = tiny_config(dataset)
  config.optimizer.learning_rate = 1e-3
  stage = SyncNetStage(config)
  it = sync_pipeline.make_sync_iterator(dataset, batch_size=8, shard_index=0, shard_count=1, seed=0,
                                        num_workers=0, num_frames=5, image_size=96)
  batch = {k: jnp.asarray(v) for k, v in next(it).items() if k in ("frames", "mel", "label")}
  assert 0 < float(batch["label"].sum()) < 8   # both classes present
  state = stage.init_state(jax.random.PRNGKey(0))
  step = jax.jit(stage.train_step)
  losses = []
  for i in range(40):
    state, metrics = step(state, batch, jax.random.PRNGKey(i))
    losses.append(float(metrics["loss"]))
  assert losses[-1] < 0.3 * losses[0], losses
  assert float(metrics["accuracy"]) == 1.0


# Slow (about 50 s): main_test trains and restores the tiny expert in the default suite.
@pytest.mark.slow
def test_trains_evaluates_resumes_and_restores(dataset, tmp_path):
  config = tiny_config(dataset, total_steps=4, checkpoint_every=2, eval_every=4, image_every=0, log_every=2)
  result = loop.train_and_evaluate(config, str(tmp_path))
  assert result.step == 4 and all(np.isfinite(h["loss"]) for h in result.history)
  ev = result.eval_history[-1]
  assert 0.0 <= ev["accuracy"] <= 1.0 and ev["loss"] > 0
  stage, state, step = restore.restore_stage(str(tmp_path))
  assert step == 4
  batch = {"frames": jnp.zeros((2, 5, 96, 96, 3), jnp.uint8), "mel": jnp.zeros((2, 80, 16))}
  audio, face = stage.embed(stage.variables(state), batch)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(face), axis=-1), 1.0, rtol=1e-5)
  assert audio.shape == face.shape == (2, 64)   # 512 * width 1/8
  # BatchNorm statistics were trained and are restored with the parameters.
  assert any(float(jnp.abs(x).sum()) > 0 for x in jax.tree_util.tree_leaves(state.model_state["batch_stats"]))
