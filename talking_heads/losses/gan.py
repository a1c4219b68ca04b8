"""Adversarial losses: discriminator hinge / vanilla losses, generator loss, adaptive weight.

Discriminator losses on logits (any shape, e.g. PatchGAN maps [B, h, w, 1]), as in
taming-transformers' `vqperceptual.py`:
  hinge    0.5 * (mean relu(1 - D(real)) + mean relu(1 + D(fake)))
  vanilla  0.5 * (mean softplus(-D(real)) + mean softplus(D(fake)))   (the non-saturating BCE)
Generator loss -mean D(fake) (taming's choice with either discriminator loss).

Adaptive generator weight (VQGAN, Esser et al. 2021 Eq. 7): with G the generator's last layer,
  lambda = ||grad_G L_rec|| / (||grad_G L_gan|| + 1e-4), clamped to [0, 1e4], no gradient,
times `disc_weight`; it balances the two losses where they meet the image.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

D_LOSSES = ("hinge", "vanilla")
ADAPTIVE_EPS = 1e-4
ADAPTIVE_MAX = 1e4


def hinge_d_loss(logits_real: jax.Array, logits_fake: jax.Array) -> jax.Array:
  return 0.5 * (jnp.mean(jax.nn.relu(1.0 - logits_real.astype(jnp.float32)))
                + jnp.mean(jax.nn.relu(1.0 + logits_fake.astype(jnp.float32))))


def vanilla_d_loss(logits_real: jax.Array, logits_fake: jax.Array) -> jax.Array:
  return 0.5 * (jnp.mean(jax.nn.softplus(-logits_real.astype(jnp.float32)))
                + jnp.mean(jax.nn.softplus(logits_fake.astype(jnp.float32))))


def discriminator_loss(logits_real: jax.Array, logits_fake: jax.Array, kind: str = "hinge"
                       ) -> jax.Array:
  """The discriminator loss named by `kind` (module docstring)."""
  if kind == "hinge":
    return hinge_d_loss(logits_real, logits_fake)
  if kind == "vanilla":
    return vanilla_d_loss(logits_real, logits_fake)
  raise ValueError(f"discriminator loss must be one of {D_LOSSES}, got {kind!r}")


def generator_loss(logits_fake: jax.Array) -> jax.Array:
  """-mean D(G(z))."""
  return -jnp.mean(logits_fake.astype(jnp.float32))


def _global_norm(tree: Any) -> jax.Array:
  leaves = jax.tree_util.tree_leaves(tree)
  return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in leaves))


def adaptive_weight(rec_grad: Any, gan_grad: Any, disc_weight: float = 1.0,
                    max_weight: float = ADAPTIVE_MAX) -> jax.Array:
  """disc_weight * sg(clip(||rec_grad|| / (||gan_grad|| + 1e-4), 0, max_weight)).

  Args:
    rec_grad: gradient (array or pytree) of the reconstruction loss w.r.t. the last layer.
    gan_grad: gradient of the generator's adversarial loss w.r.t. the same layer.
    disc_weight: the configured discriminator weight.
    max_weight: upper clamp (taming 1e4; CodeFormer 1).
  """
  ratio = _global_norm(rec_grad) / (_global_norm(gan_grad) + ADAPTIVE_EPS)
  return disc_weight * jax.lax.stop_gradient(jnp.clip(ratio, 0.0, max_weight))


def disc_factor(step: jax.Array, start: int) -> jax.Array:
  """1.0 from `start` on, else 0.0 (taming's `adopt_weight`)."""
  return (step >= start).astype(jnp.float32)
