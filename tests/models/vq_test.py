"""SOVQAE quantiser and autoencoder: structure, hand cases, VQ-loss inputs, gradients.

The taming blocks it is built from are tested in tests/nn (resnet_test, attention_test, norm_test).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.losses import vq as vq_losses
from talking_heads.models import vq


def _small(**kw):
  return vq.SOVQAE(**{"channels": (8, 16), "num_codes": 16, "code_dim": 4, **kw})


def _image(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32))


@pytest.fixture(scope="module")
def small_variables():
  """`_small()`'s initial variables, compiled once for the tests below (init dominates them)."""
  return jax.jit(_small().init)(jax.random.PRNGKey(0), _image((2, 32, 32, 3)))


def test_shapes_and_parameter_names(small_variables):
  model = _small()
  x = _image((2, 32, 32, 3))
  variables = small_variables
  x_hat, aux = jax.eval_shape(model.apply, variables, x)
  assert x_hat.shape == (2, 32, 32, 3) and x_hat.dtype == jnp.float32
  assert aux["indices"].shape == (2, 8, 8) and aux["indices"].dtype == jnp.int32
  assert set(aux) == {"indices", "z_e", "z_q"}
  assert aux["z_e"].shape == aux["z_q"].shape == (2, 8, 8, 4)
  z_e = jax.eval_shape(lambda v, x: model.apply(v, x, method=model.encode), variables, x)
  assert z_e.shape == (2, 8, 8, 4)
  params = variables["params"]
  assert set(params) == {"encoder", "quantizer", "decoder"}
  assert set(params["encoder"]) == {"conv_in", "down_0_res", "down_0_down", "down_1_res", "down_1_down",
                                    "mid_res_0", "mid_attn", "mid_res_1", "norm_out", "conv_out"}
  assert set(params["decoder"]) == {"conv_in", "mid_res_0", "mid_attn", "mid_res_1", "up_0_res", "up_0_up",
                                    "up_1_res", "up_1_up", "norm_out", "conv_out"}
  # A 1x1 shortcut only where the width changes: 8 -> 16 in the encoder, 16 -> 8 in the decoder.
  assert "nin_shortcut" in params["encoder"]["down_1_res"]
  assert "nin_shortcut" not in params["encoder"]["down_0_res"]
  assert "nin_shortcut" in params["decoder"]["up_1_res"]
  assert "nin_shortcut" not in params["decoder"]["up_0_res"]
  assert set(params["encoder"]["mid_attn"]) == {"norm", "q", "k", "v", "proj_out"}
  assert params["encoder"]["down_0_down"]["conv"]["kernel"].shape == (3, 3, 8, 8)
  assert params["decoder"]["conv_out"]["kernel"].shape == (3, 3, 8, 3)
  assert params["quantizer"]["codebook"].shape == (16, 4)
  # taming's initialisation: uniform(-1/N, 1/N).
  assert float(jnp.max(jnp.abs(params["quantizer"]["codebook"]))) <= 1 / 16


def test_rejects_sizes_the_encoder_cannot_halve():
  with pytest.raises(ValueError, match="multiples of 4"):
    jax.eval_shape(_small().init, jax.random.PRNGKey(0), _image((1, 30, 32, 3)))


def test_quantizer_picks_the_true_nearest_code():
  rng = np.random.default_rng(0)
  quantizer = vq.VectorQuantizer(num_codes=64, code_dim=8)
  codebook = rng.normal(size=(64, 8)).astype(np.float32)
  z = rng.normal(size=(3, 5, 7, 8)).astype(np.float32)
  z_q, indices, aux = quantizer.apply({"params": {"codebook": jnp.asarray(codebook)}}, jnp.asarray(z))
  brute = np.argmin(((z[..., None, :] - codebook) ** 2).sum(-1), axis=-1)
  np.testing.assert_array_equal(np.asarray(indices), brute)
  np.testing.assert_allclose(np.asarray(z_q), codebook[brute], atol=1e-6)
  # aux carries the loss inputs: z_e as given and the codes themselves (not straight-through).
  np.testing.assert_array_equal(np.asarray(aux["z_e"]), z)
  np.testing.assert_array_equal(np.asarray(aux["z_q"]), codebook[brute])
  codebook_loss, commitment_loss = vq_losses.codebook_and_commitment(aux["z_e"], aux["z_q"])
  mse = np.mean((z - codebook[brute]) ** 2)
  np.testing.assert_allclose(float(codebook_loss), mse, rtol=1e-5)
  np.testing.assert_allclose(float(commitment_loss), mse, rtol=1e-5)
  with pytest.raises(ValueError, match="width 4"):
    quantizer.apply({"params": {"codebook": jnp.asarray(codebook)}}, jnp.zeros((2, 4)))


def test_straight_through_gradients(small_variables):
  model = _small()
  x = _image((2, 32, 32, 3))
  params = small_variables["params"]

  @jax.jit
  def all_grads(p):
    def loss(p, term):
      x_hat, aux = model.apply({"params": p}, x)
      codebook_loss, commitment_loss = vq_losses.codebook_and_commitment(aux["z_e"], aux["z_q"])
      return {"reconstruction": jnp.mean((x_hat - x) ** 2), "codebook_loss": codebook_loss,
              "commitment_loss": commitment_loss}[term]
    return {t: jax.grad(loss)(p, t) for t in ("reconstruction", "codebook_loss", "commitment_loss")}

  grads = all_grads(params).__getitem__

  norm = lambda tree: float(sum(jnp.sum(jnp.abs(a)) for a in jax.tree_util.tree_leaves(tree)))
  rec = grads("reconstruction")
  # The reconstruction reaches the encoder through the quantiser, but not the codebook.
  assert norm(rec["encoder"]["conv_in"]) > 0 and norm(rec["encoder"]["conv_out"]) > 0
  assert norm(rec["quantizer"]) == 0
  codebook = grads("codebook_loss")
  assert norm(codebook["quantizer"]) > 0 and norm(codebook["encoder"]) == 0
  commitment = grads("commitment_loss")
  assert norm(commitment["quantizer"]) == 0 and norm(commitment["encoder"]) > 0
  assert norm(commitment["decoder"]) == 0


def test_decoder_features_feed_its_last_conv(small_variables):
  model = _small()
  x = _image((1, 32, 32, 3))
  params = small_variables["params"]
  x_hat, aux = jax.jit(lambda p: model.apply({"params": p}, x, return_features=True))(params)
  conv = params["decoder"]["conv_out"]
  again = jax.lax.conv_general_dilated(aux["decoder_features"], conv["kernel"], (1, 1), "SAME",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC")) + conv["bias"]
  np.testing.assert_allclose(np.asarray(x_hat), np.asarray(again), atol=1e-5)
