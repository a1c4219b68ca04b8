"""Rematerialised blocks (`nn.remat.blocks`): the same parameters and gradients as without
(float32, rtol 1e-5), and less kept from the forward pass for the backward pass, for every model
with the switch (the DAE's UNet and encoder, FD2Talk's latent UNet and motion DiT).

What the forward pass keeps is the residuals of `jax.vjp` (the leaves of its backward function,
shapes from `jax.eval_shape`): backend-independent. XLA:CPU's compiled temp size does not show
the saving (it grows slightly with remat at these sizes), so the device peak is the benchmarks'.
Marked `bench` (experiments/test_bench.sh, with the other performance checks): about a minute of
compilation that the default suite's 10 minutes cannot spare."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.models import dae, fd2talk_motion, fd2talk_unet
from talking_heads.systems.fd2talk import sizes

_F = sizes.sizes("tiny")
_R = np.random.default_rng(0)
_n = lambda *s: jnp.asarray(_R.normal(size=s), jnp.float32)

# name -> (model with remat, (args, kwargs) of its training call), one per model with the switch.
CASES = {
    "dae": (lambda remat: dae.DiffusionAutoencoder(
        width=32, channel_mult=(1, 2), encoder_channel_mult=(1, 2), num_res_blocks=1,
        encoder_num_res_blocks=1, attention_resolutions=(8,), embed_dim=64, latent_dim=16,
        dropout=0.0, remat=remat),
            lambda: ((_n(2, 16, 16, 3), jnp.array([3, 700])),
                     {"x0": _n(2, 16, 16, 3), "train": True})),
    "fd2talk_unet": (lambda remat: fd2talk_unet.LatentUNet(
        latent_channels=3, motion_dim=11, remat=remat, **_F.unet),
                     lambda: ((_n(2, _F.latent_size, _F.latent_size, 3), jnp.array([5, 900]),
                               _n(2, 11), _n(2, _F.latent_size, _F.latent_size, 3)),
                              {"train": True})),
    "fd2talk_motion": (lambda remat: fd2talk_motion.MotionDiT(
        expression_dim=5, remat=remat, **{**_F.motion, "num_layers": 6}),
                       lambda: ((_n(2, 25, 5), jnp.array([10, 700]), _n(2, 25, 7)), {})),
}


def kept_bytes(loss, params) -> int:
  """Bytes the forward pass of `loss` keeps for its backward pass (parameters included)."""
  leaves = jax.eval_shape(lambda p: jax.tree_util.tree_leaves(jax.vjp(loss, p)[1]), params)
  return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in leaves)


@pytest.mark.bench
@pytest.mark.parametrize("name", sorted(CASES))
def test_remat_keeps_less_and_changes_no_gradient(name):
  make, inputs = CASES[name]
  args, kwargs = inputs()
  plain, rematted = make(False), make(True)
  init_kwargs = {k: v for k, v in kwargs.items() if k != "train"}
  params = plain.init(jax.random.PRNGKey(0), *args, **init_kwargs)
  # The same parameter tree: checkpoints load either way.
  assert (jax.tree_util.tree_structure(rematted.init(jax.random.PRNGKey(0), *args, **init_kwargs))
          == jax.tree_util.tree_structure(params))
  losses = {key: (lambda p, m=model: jnp.mean(jnp.square(m.apply(p, *args, **kwargs))))
            for key, model in (("plain", plain), ("remat", rematted))}
  grads = {key: jax.jit(jax.value_and_grad(loss))(params) for key, loss in losses.items()}
  np.testing.assert_allclose(grads["remat"][0], grads["plain"][0], rtol=1e-5)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                         grads["remat"][1], grads["plain"][1])
  kept = {key: kept_bytes(loss, params) for key, loss in losses.items()}
  param_bytes = sum(x.nbytes for x in jax.tree_util.tree_leaves(params))
  # At least a third less of the activations kept (beyond the parameters, kept either way).
  assert kept["remat"] - param_bytes < 0.67 * (kept["plain"] - param_bytes), kept
