"""Adversarial losses: one family of (discriminator, generator) loss pairs, R1, feature
matching, the adaptive generator weight.

Discriminator losses on logits (any shape, e.g. PatchGAN maps [B, h, w, 1]), as in
taming-transformers' `vqperceptual.py`:
  hinge    0.5 * (mean relu(1 - D(real)) + mean relu(1 + D(fake)))
  vanilla  0.5 * (mean softplus(-D(real)) + mean softplus(D(fake)))   (the non-saturating BCE)
Generator loss -mean D(fake) (taming's choice with either discriminator loss).

`FAMILIES` names (d_loss(real, fake), g_loss(fake)) pairs, d_loss split into its real and fake
halves; r = D(real), f = D(fake), means over
all elements:
  hinge           taming's hinge above                       -mean f
  vanilla         taming's vanilla above                     -mean f
  non_saturating  mean softplus(-r) + mean softplus(f)       mean softplus(-f)    (StyleGAN2)
  bce             BCE(r, 1) + BCE(f, 0) on logits            BCE(f, 1)            (Wav2Lip's D)
  bce_probs       the same on probabilities, log clamped at -100 as torch's BCELoss
  least_squares   0.5 (mean (r - 1)^2 + mean f^2)            mean (f - 1)^2       (pix2pixHD)
("bce" equals "non_saturating" in value; it is written as Wav2Lip's code computes it.)

R1 (Mescheder et al. 2018; StyleGAN2's lazy form): gamma/2 * E_x ||grad_x D(x)||^2 on real x.
Feature matching (pix2pixHD): L1 between a discriminator's features of real and fake inputs.

Adaptive generator weight (VQGAN, Esser et al. 2021 Eq. 7): with G the generator's last layer,
  lambda = ||grad_G L_rec|| / (||grad_G L_gan|| + 1e-4), clamped to [0, 1e4], no gradient,
times `disc_weight`; it balances the two losses where they meet the image.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

D_LOSSES = ("hinge", "vanilla")
ADAPTIVE_EPS = 1e-4
ADAPTIVE_MAX = 1e4


def _f32(x: jax.Array) -> jax.Array:
  return x.astype(jnp.float32)


# Real and fake halves of the discriminator losses (module docstring); d = real + fake, which
# for hinge and vanilla is bit-identical to 0.5 * (a + b).
def _hinge_real(r: jax.Array) -> jax.Array:
  return 0.5 * jnp.mean(jax.nn.relu(1.0 - _f32(r)))


def _hinge_fake(f: jax.Array) -> jax.Array:
  return 0.5 * jnp.mean(jax.nn.relu(1.0 + _f32(f)))


def _vanilla_real(r: jax.Array) -> jax.Array:
  return 0.5 * jnp.mean(jax.nn.softplus(-_f32(r)))


def _vanilla_fake(f: jax.Array) -> jax.Array:
  return 0.5 * jnp.mean(jax.nn.softplus(_f32(f)))


def hinge_d_loss(logits_real: jax.Array, logits_fake: jax.Array) -> jax.Array:
  return _hinge_real(logits_real) + _hinge_fake(logits_fake)


def vanilla_d_loss(logits_real: jax.Array, logits_fake: jax.Array) -> jax.Array:
  return _vanilla_real(logits_real) + _vanilla_fake(logits_fake)


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


def _softplus_real(r: jax.Array) -> jax.Array:
  return jnp.mean(jax.nn.softplus(-_f32(r)))


def _softplus_fake(f: jax.Array) -> jax.Array:
  return jnp.mean(jax.nn.softplus(_f32(f)))


def non_saturating_d_loss(logits_real: jax.Array, logits_fake: jax.Array) -> jax.Array:
  return _softplus_real(logits_real) + _softplus_fake(logits_fake)


def non_saturating_g_loss(logits_fake: jax.Array) -> jax.Array:
  return jnp.mean(jax.nn.softplus(-_f32(logits_fake)))


def _bce_logits(logits: jax.Array, label: float) -> jax.Array:
  logits = _f32(logits)
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, jnp.full(logits.shape, label)))


def _bce_real(r: jax.Array) -> jax.Array:
  return _bce_logits(r, 1.0)


def _bce_fake(f: jax.Array) -> jax.Array:
  return _bce_logits(f, 0.0)


def bce_d_loss(logits_real: jax.Array, logits_fake: jax.Array) -> jax.Array:
  return _bce_real(logits_real) + _bce_fake(logits_fake)


def bce_g_loss(logits_fake: jax.Array) -> jax.Array:
  return _bce_logits(logits_fake, 1.0)


def _clamped_log(p: jax.Array) -> jax.Array:
  return jnp.maximum(jnp.log(_f32(p)), -100.0)


def _bce_probs_real(p: jax.Array) -> jax.Array:
  return -jnp.mean(_clamped_log(p))


def _bce_probs_fake(p: jax.Array) -> jax.Array:
  return -jnp.mean(_clamped_log(1.0 - _f32(p)))


def bce_probs_d_loss(probs_real: jax.Array, probs_fake: jax.Array) -> jax.Array:
  return _bce_probs_real(probs_real) + _bce_probs_fake(probs_fake)


def bce_probs_g_loss(probs_fake: jax.Array) -> jax.Array:
  return -jnp.mean(_clamped_log(probs_fake))


def _least_squares_real(r: jax.Array) -> jax.Array:
  return 0.5 * jnp.mean(jnp.square(_f32(r) - 1.0))


def _least_squares_fake(f: jax.Array) -> jax.Array:
  return 0.5 * jnp.mean(jnp.square(_f32(f)))


def least_squares_d_loss(logits_real: jax.Array, logits_fake: jax.Array) -> jax.Array:
  return _least_squares_real(logits_real) + _least_squares_fake(logits_fake)


def least_squares_g_loss(logits_fake: jax.Array) -> jax.Array:
  return jnp.mean(jnp.square(_f32(logits_fake) - 1.0))


class GanLoss(NamedTuple):
  """A loss family: the discriminator loss's halves d_real(real_logits), d_fake(fake_logits)
  and g(fake_logits), float32 scalars; `d` is their sum."""
  d_real: Callable[[jax.Array], jax.Array]
  d_fake: Callable[[jax.Array], jax.Array]
  g: Callable[[jax.Array], jax.Array]

  def d(self, logits_real: jax.Array, logits_fake: jax.Array) -> jax.Array:
    return self.d_real(logits_real) + self.d_fake(logits_fake)


FAMILIES: dict[str, GanLoss] = {
    "hinge": GanLoss(_hinge_real, _hinge_fake, generator_loss),
    "vanilla": GanLoss(_vanilla_real, _vanilla_fake, generator_loss),
    "non_saturating": GanLoss(_softplus_real, _softplus_fake, non_saturating_g_loss),
    "bce": GanLoss(_bce_real, _bce_fake, bce_g_loss),
    "bce_probs": GanLoss(_bce_probs_real, _bce_probs_fake, bce_probs_g_loss),
    "least_squares": GanLoss(_least_squares_real, _least_squares_fake, least_squares_g_loss),
}


def family(kind: str | GanLoss) -> GanLoss:
  """The pair named `kind` in `FAMILIES` (a GanLoss passes through)."""
  if isinstance(kind, GanLoss):
    return kind
  if kind not in FAMILIES:
    raise ValueError(f"GAN loss must be one of {sorted(FAMILIES)}, got {kind!r}")
  return FAMILIES[kind]


def r1_penalty(logits_fn: Callable[[jax.Array], jax.Array], real: jax.Array,
               gamma: float) -> jax.Array:
  """gamma/2 * mean_b ||grad_x sum D(x)_b||^2 at the real inputs x [B, ...].

  `logits_fn` maps x to logits of any shape; the gradient of their sum is taken (StyleGAN2), so
  per-sample gradients stay separate when D treats samples independently.
  """
  grad = jax.grad(lambda x: jnp.sum(_f32(logits_fn(x))))(real)          # [B, ...]
  squared_norm = jnp.sum(jnp.square(_f32(grad)).reshape(grad.shape[0], -1), axis=1)
  return 0.5 * gamma * jnp.mean(squared_norm)


def feature_matching(real_features: Any, fake_features: Any) -> jax.Array:
  """Mean over feature maps of mean |fake - sg(real)| (pix2pixHD's discriminator feature loss).

  Features are matching pytrees (e.g. [scale][layer] lists of [B, h, w, c] maps); every leaf
  counts once, so with equally many layers per scale this is the average over layers and
  scales. pix2pixHD weighs each of its n_layers + 1 layers by 4 / (n_layers + 1) and each of its
  num_D scales by 1 / num_D: its term is 4 * this.
  """
  real, fake = jax.tree_util.tree_leaves(real_features), jax.tree_util.tree_leaves(fake_features)
  if len(real) != len(fake) or not real:
    raise ValueError(f"feature matching needs equally many (>0) feature maps, got {len(real)} "
                     f"real and {len(fake)} fake")
  terms = [jnp.mean(jnp.abs(_f32(f) - jax.lax.stop_gradient(_f32(r)))) for r, f in zip(real, fake)]
  return sum(terms) / len(terms)


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
