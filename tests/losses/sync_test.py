"""Wav2Lip's expert sync loss: BCE on the cosine similarity of audio and face embeddings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.losses import sync


def test_hand_computed_values():
  a = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
  v = jnp.array([[1.0, 1.0], [1.0, 1.0], [0.0, 5.0]])
  # cos = 1/sqrt(2), 1/sqrt(2), 1; labels 1, 0, 1.
  expected = (-np.log(2 ** -0.5) - np.log(1 - 2 ** -0.5) - 0.0) / 3
  loss = sync.cosine_bce(a, v, jnp.array([1.0, 0.0, 1.0]))
  assert loss.dtype == jnp.float32
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  # Labels shaped [B, 1] as in Wav2Lip give the same value.
  np.testing.assert_allclose(sync.cosine_bce(a, v, jnp.array([[1.0], [0.0], [1.0]])), expected,
                             rtol=1e-6)


def test_log_clamp_gives_finite_loss_and_gradients():
  a = jnp.array([[1.0, 0.0], [1.0, 0.0]])
  v = jnp.array([[0.0, 1.0], [1.0, 0.0]])                      # cos 0 and 1
  np.testing.assert_allclose(sync.cosine_bce(a, v, jnp.array([1.0, 0.0])), 100.0, rtol=1e-6)
  np.testing.assert_allclose(sync.cosine_bce(a, v, jnp.array([0.0, 1.0])), 0.0, atol=1e-6)
  grads = jax.grad(lambda a, v: sync.cosine_bce(a, v, jnp.array([1.0, 0.0])), argnums=(0, 1))(a, v)
  assert all(np.all(np.isfinite(g)) for g in grads)
  # bfloat16 embeddings are scored in float32.
  low = sync.cosine_bce(a.astype(jnp.bfloat16), v.astype(jnp.bfloat16), jnp.ones(2))
  assert low.dtype == jnp.float32


def test_mask_averages_only_valid_entries():
  rng = np.random.default_rng(0)
  a, v = jnp.asarray(rng.uniform(size=(5, 8))), jnp.asarray(rng.uniform(size=(5, 8)))
  y = jnp.array([1.0, 0.0, 1.0, 1.0, 0.0])
  mask = jnp.array([True, False, True, True, False])
  np.testing.assert_allclose(sync.cosine_bce(a, v, y, mask),
                             sync.cosine_bce(a[mask], v[mask], y[mask]), rtol=1e-6)


def test_rejects_mismatched_shapes():
  with pytest.raises(ValueError, match="embeddings must both be"):
    sync.cosine_bce(jnp.ones((2, 4)), jnp.ones((2, 5)), jnp.ones(2))
  with pytest.raises(ValueError, match="expected 2 labels"):
    sync.cosine_bce(jnp.ones((2, 4)), jnp.ones((2, 4)), jnp.ones(3))


@pytest.mark.parity
def test_matches_torch_bce_on_cosine():
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(1)
  a = rng.uniform(size=(16, 512)).astype(np.float32)
  v = rng.uniform(size=(16, 512)).astype(np.float32) ** 4
  y = (rng.uniform(size=(16, 1)) < 0.5).astype(np.float32)
  d = torch.nn.functional.cosine_similarity(torch.from_numpy(a), torch.from_numpy(v))
  ref = torch.nn.BCELoss()(d.unsqueeze(1), torch.from_numpy(y)).item()
  ours = sync.cosine_bce(jnp.asarray(a), jnp.asarray(v), jnp.asarray(y))
  np.testing.assert_allclose(ours, ref, rtol=1e-5)
