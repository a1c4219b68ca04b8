"""PatchGAN: taming's layer table, patch-map sizes, initialisation and BatchNorm modes."""

import jax
import jax.numpy as jnp
import numpy as np

from talking_heads.models.patchgan import PatchGAN


def test_layer_table_and_patch_map_sizes():
  model = PatchGAN()
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((2, 256, 256, 3)))
  params = shapes["params"]
  assert [params[f"conv_{k}"]["kernel"].shape for k in range(4)] == [
      (4, 4, 3, 64), (4, 4, 64, 128), (4, 4, 128, 256), (4, 4, 256, 512)]
  assert params["conv_out"]["kernel"].shape == (4, 4, 512, 1)
  # Convs followed by BatchNorm carry no bias (taming: use_bias = norm is not BatchNorm).
  assert "bias" in params["conv_0"] and "bias" in params["conv_out"]
  assert all("bias" not in params[f"conv_{k}"] for k in (1, 2, 3))
  assert set(shapes["batch_stats"]) == {"bn_1", "bn_2", "bn_3"}
  for size, patches in ((256, 30), (128, 14), (64, 6)):
    out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), shapes,
                         jnp.zeros((2, size, size, 3)))
    assert out.shape == (2, patches, patches, 1)


def test_initialisation():
  variables = jax.jit(lambda x: PatchGAN().init(jax.random.PRNGKey(0), x, train=False))(jnp.zeros((1, 64, 64, 3)))
  kernel = np.asarray(variables["params"]["conv_3"]["kernel"])
  assert abs(kernel.std() - 0.02) < 0.001 and abs(kernel.mean()) < 0.001
  scales = np.concatenate([np.asarray(variables["params"][f"bn_{k}"]["scale"]) for k in (1, 2, 3)])
  assert abs(scales.mean() - 1.0) < 0.005 and 0.01 < scales.std() < 0.03
  assert not np.any(np.asarray(variables["params"]["conv_out"]["bias"]))


def test_batch_statistics_only_in_train_mode():
  model = PatchGAN(base_features=8)
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32))
  variables = jax.jit(lambda x: model.init(jax.random.PRNGKey(0), x, train=False))(x)
  logits, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
  assert logits.shape == (4, 2, 2, 1)
  moved = jax.tree_util.tree_map(lambda a, b: float(jnp.max(jnp.abs(a - b))), updates["batch_stats"],
                                 variables["batch_stats"])
  assert all(v > 0 for v in jax.tree_util.tree_leaves(moved))
  # Evaluation uses the running statistics: one example's logits do not depend on the others.
  evaluate = jax.jit(lambda v, x: model.apply(v, x, train=False))
  alone, together = evaluate(variables, x[:1]), evaluate(variables, x)
  np.testing.assert_allclose(np.asarray(alone[0]), np.asarray(together[0]), atol=1e-5)
