"""FD2Talk's frame autoencoder: the decoder reads [E(F1), E(F2)] (2d channels) and learns to
rebuild F2 from a pair on a tiny batch."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from talking_heads.models import fd2talk_autoencoder
from talking_heads.systems.fd2talk import sizes

TINY = sizes.sizes("tiny")


def _frames(seed, n=2):
  r = np.random.default_rng(seed)
  size = TINY.image_size
  yy, xx = np.mgrid[:size, :size] / size
  phase = r.uniform(0, 2 * np.pi, size=(n, 1, 1, 3))
  return jnp.asarray(np.sin(4 * xx[None, ..., None] + 3 * yy[None, ..., None] + phase), jnp.float32)


def test_decoder_reads_both_latents_through_2d_channels():
  ae = fd2talk_autoencoder.FrameAutoencoder(**TINY.autoencoder)
  f1, f2 = _frames(0), _frames(1)
  params = ae.init(jax.random.key(0), f1, f2)
  d = TINY.autoencoder["latent_channels"]
  assert params["params"]["decoder"]["conv_in"]["kernel"].shape[2] == 2 * d
  encode = jax.jit(lambda f: ae.apply(params, f, method=ae.encode))
  decode = jax.jit(lambda r, j: ae.apply(params, r, j, method=ae.decode))
  latent = encode(f2)
  assert latent.shape == (2, TINY.latent_size, TINY.latent_size, d)
  out, aux = jax.jit(ae.apply)(params, f1, f2)
  assert out.shape == f2.shape and aux["z_e"].shape == (4,) + latent.shape[1:]
  ref = encode(f1)
  np.testing.assert_allclose(decode(ref, latent), out, rtol=1e-5, atol=1e-5)
  assert np.abs(np.asarray(decode(ref + 0.5, latent) - out)).max() > 1e-3
  assert np.abs(np.asarray(decode(ref, latent + 0.5) - out)).max() > 1e-3


def test_tiny_autoencoder_fits_a_pair_batch():
  """Eq. 13's L2 on D([E(F1), E(F2)]) vs F2 (with the commitment term) falls on a fixed batch."""
  ae = fd2talk_autoencoder.FrameAutoencoder(**TINY.autoencoder)
  f1, f2 = _frames(2), _frames(3)
  params = ae.init(jax.random.key(0), f1, f2)
  tx = optax.adam(3e-3)

  def loss_fn(params):
    out, aux = ae.apply(params, f1, f2)
    commit = jnp.mean((aux["z_e"] - jax.lax.stop_gradient(aux["z_q"])) ** 2)
    codebook = jnp.mean((jax.lax.stop_gradient(aux["z_e"]) - aux["z_q"]) ** 2)
    return jnp.mean((out - f2) ** 2) + codebook + 0.25 * commit, jnp.mean((out - f2) ** 2)

  @jax.jit
  def step(params, opt):
    (_, rec), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt = tx.update(grads, opt)
    return optax.apply_updates(params, updates), opt, rec

  opt = tx.init(params)
  losses = []
  for _ in range(40):
    params, opt, rec = step(params, opt)
    losses.append(float(rec))
  assert np.mean(losses[-5:]) < 0.5 * losses[0], losses
