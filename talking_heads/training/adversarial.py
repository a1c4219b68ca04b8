"""One adversarial train step: a generator against any number of named discriminators.

A stage supplies
  generate(params, model_state, batch, rng) -> GeneratorOutput
      the generator's forward pass: what the discriminators judge (`fake`, differentiable), the
      matching real data (`real`), the non-adversarial loss, optional per-step weights, ...
  {name: Discriminator}
      for each player its apply function (logits, and optionally features and new model_state),
      loss family (`losses.gan.FAMILIES`), weights, cadence, start step, R1 and feature matching;
      `frozen` players (e.g. a fixed lip-sync expert) add a generator term and never update.
and the state is an `AdversarialTrainState` ({name: TrainState} for the discriminators).

One step (generator step s = state.step; D(x) with the players' current variables):
  generator   L = loss + sum_k a_k w_k(s) g_k(D_k(fake)) + a_k fm_k FM_k
              a_k = 1 from `start` on, else 0 (taming's disc_factor: the term still runs);
              w_k = g_weight * the output's `weights[k]` (default 1)
                    * the VQGAN adaptive weight when `adaptive` (on `reference_loss`);
              one optimiser update; EMA and model_state as `TrainState.apply_gradients`.
  each trainable player k with s % every == 0 (skipped by lax.cond otherwise):
              L_k = a_k d_weight d_k(D_k(real), D_k(sg(fake))) + R1_k, on the fake of the
              generator BEFORE its update, with BatchNorm-style model_state threaded through the
              real pass then the fake pass;
              R1_k = r1_every * r1(real) on the player's own updates n with n % r1_every == 0
              (StyleGAN2's lazy regularisation), else 0.

Metrics: the output's metrics, loss (generator total), grad_norm, and per player
`{name}/g_loss`, `{name}/weight` (a_k w_k), `{name}/adaptive_weight` (g_weight * the VQGAN
weight, before a_k and `weights`), `{name}/feature_matching`, and for trainable ones
`{name}/d_loss` (unscaled d_k), its halves `{name}/d_loss_real`, `{name}/d_loss_fake`,
`{name}/r1`, `{name}/logits_real`, `{name}/logits_fake` (means), `{name}/grad_norm`,
`{name}/updated` (1 or 0; the other D metrics are 0 on skipped steps).

Gradients: one generator forward (`jax.vjp`), the discriminators' gradients w.r.t. `fake` as
its cotangent (their weights enter the discriminators' backward as cotangents, as in one
backward through the weighted loss; an adaptive weight scales the gradient after), one
generator backward; the adaptive weight costs two more backward passes (its gradients at
`adaptive_layer`).

Dimensions: B batch; `fake`, `real` any matching pytrees of [B, ...] arrays.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from talking_heads.losses import gan
from talking_heads.training.state import AdversarialTrainState, TrainState

PyTree = Any
Batch = Mapping[str, Any]


class GeneratorOutput(NamedTuple):
  """What `generate` returns.

  Attributes:
    fake: generated data the discriminators judge (pytree), differentiable w.r.t. params.
    real: the matching real data (pytree of the same structure), for the D updates and R1.
    loss: the non-adversarial generator loss (float32 scalar).
    metrics: {name: scalar} to log.
    model_state: the generator's collections after the step, or None to keep them.
    weights: {player: scalar} extra per-step factors on players' generator terms (e.g. a
      scheduled sync weight held in model_state); absent players get 1.
    reference_loss: the loss whose last-layer gradient sets the adaptive weight (taming's nll);
      needed only when a player is `adaptive`.
  """
  fake: PyTree
  real: PyTree
  loss: jax.Array
  metrics: Mapping[str, jax.Array] = {}
  model_state: PyTree | None = None
  weights: Mapping[str, jax.Array] = {}
  reference_loss: jax.Array | None = None


class DiscriminatorOutput(NamedTuple):
  """logits (any shape; probabilities for "bce_probs"), features for feature matching (pytree
  or None), new model_state (e.g. BatchNorm statistics) or None to keep it."""
  logits: jax.Array
  features: PyTree = None
  model_state: PyTree | None = None


# apply(params, model_state, x, batch, rng) -> DiscriminatorOutput; x is `fake` or `real`.
DiscriminatorApply = Callable[[PyTree, PyTree, PyTree, Batch, jax.Array], DiscriminatorOutput]
Generate = Callable[[PyTree, PyTree, Batch, jax.Array], GeneratorOutput]


@dataclasses.dataclass(frozen=True)
class Discriminator:
  """One discriminator player (static; module docstring for the step's arithmetic).

  Attributes:
    apply: (params, model_state, x, batch, rng) -> DiscriminatorOutput.
    loss: a `losses.gan.FAMILIES` name or a `gan.GanLoss` pair.
    g_weight: weight of its generator term (VQGAN's disc_weight when `adaptive`).
    d_weight: weight of its discriminator loss.
    every: updates on generator steps s with s % every == 0.
    start: generator step from which its terms count (taming's disc_start).
    frozen: never updated (no D loss, no R1); its generator term still counts.
    r1_gamma: R1 weight gamma (0: off).
    r1_every: lazy R1 interval in the player's own updates.
    feature_matching: weight of the feature matching term (0: off; needs features).
    adaptive: scale g_weight by the VQGAN adaptive weight.
  """
  apply: DiscriminatorApply
  loss: str | gan.GanLoss = "non_saturating"
  g_weight: float = 1.0
  d_weight: float = 1.0
  every: int = 1
  start: int = 0
  frozen: bool = False
  r1_gamma: float = 0.0
  r1_every: int = 1
  feature_matching: float = 0.0
  adaptive: bool = False


def _tree_add(acc: PyTree | None, tree: PyTree) -> PyTree:
  return tree if acc is None else jax.tree_util.tree_map(jnp.add, acc, tree)


def _tree_scale(tree: PyTree, scale: jax.Array) -> PyTree:
  return jax.tree_util.tree_map(lambda x: (scale * x).astype(x.dtype), tree)


def _player_rngs(rng: jax.Array, names: list[str]) -> dict[str, jax.Array]:
  """Key of each player: fold_in(rng, its index in sorted order + 1); 0 is the generator's."""
  return {name: jax.random.fold_in(rng, i + 1) for i, name in enumerate(names)}


def _discriminator_update(player: Discriminator, d_state: TrainState, real: PyTree, fake: PyTree,
                          batch: Batch, rng: jax.Array, factor: jax.Array
                          ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimiser update of a trainable player on sg(fake) (module docstring)."""
  losses = gan.family(player.loss)
  real_rng, fake_rng, r1_rng = jax.random.split(rng, 3)

  def loss_fn(params: PyTree):
    out_real = player.apply(params, d_state.model_state, real, batch, real_rng)
    model_state = d_state.model_state if out_real.model_state is None else out_real.model_state
    out_fake = player.apply(params, model_state, fake, batch, fake_rng)
    model_state = model_state if out_fake.model_state is None else out_fake.model_state
    d_real, d_fake = losses.d_real(out_real.logits), losses.d_fake(out_fake.logits)
    d_loss = d_real + d_fake
    r1 = jnp.zeros((), jnp.float32)
    if player.r1_gamma:
      logits_fn = lambda x: player.apply(params, d_state.model_state, x, batch, r1_rng).logits
      r1 = jax.lax.cond(
          d_state.step % player.r1_every == 0,
          lambda: player.r1_every * gan.r1_penalty(logits_fn, real, player.r1_gamma),
          lambda: jnp.zeros((), jnp.float32))
    return factor * player.d_weight * d_loss + r1, (model_state, {
        "d_loss": d_loss, "d_loss_real": d_real, "d_loss_fake": d_fake, "r1": r1,
        "logits_real": jnp.mean(out_real.logits.astype(jnp.float32)),
        "logits_fake": jnp.mean(out_fake.logits.astype(jnp.float32))})

  (_, (model_state, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(d_state.params)
  return d_state.apply_gradients(grads, model_state=model_state), {
      **metrics, "grad_norm": optax.tree.norm(grads), "updated": jnp.ones((), jnp.float32)}


def _cadenced_update(player: Discriminator, step: jax.Array, d_state: TrainState, *args
                     ) -> tuple[TrainState, dict[str, jax.Array]]:
  """`_discriminator_update` on generator steps with step % every == 0, else unchanged."""
  update = lambda s: _discriminator_update(player, s, *args)
  if player.every == 1:
    return update(d_state)
  skipped = jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype),
                                   jax.eval_shape(update, d_state)[1])
  return jax.lax.cond(step % player.every == 0, update, lambda s: (s, skipped), d_state)


def adversarial_step(state: AdversarialTrainState, generate: Generate,
                     discriminators: Mapping[str, Discriminator], batch: Batch, rng: jax.Array,
                     adaptive_layer: Callable[[PyTree], PyTree] | None = None,
                     adaptive_max: float = gan.ADAPTIVE_MAX
                     ) -> tuple[AdversarialTrainState, dict[str, jax.Array]]:
  """One generator update and the due discriminator updates (module docstring); pure.

  Args:
    state: players' states; `state.discriminators` has a TrainState for every player.
    generate: the generator's forward pass and non-adversarial losses.
    discriminators: {name: Discriminator}.
    batch, rng: the step's batch and PRNG key (generator: fold_in(rng, 0); players:
      fold_in(rng, 1 + index in sorted names)).
    adaptive_layer: params-shaped tree -> the subtree of the generator's last layer (e.g.
      `lambda p: p["decoder"]["conv_out"]["kernel"]`), for `adaptive` players.
    adaptive_max: the adaptive weight's upper clamp.
  """
  names = sorted(discriminators)
  if set(names) != set(state.discriminators):
    raise ValueError(f"discriminators {names} do not match the state's "
                     f"{sorted(state.discriminators)}")
  if any(discriminators[n].adaptive for n in names) and adaptive_layer is None:
    raise ValueError("adaptive discriminators need `adaptive_layer`")
  rngs = _player_rngs(rng, names)
  g_state = state.generator

  def forward(params: PyTree):
    out = generate(params, g_state.model_state, batch, jax.random.fold_in(rng, 0))
    reference = jnp.zeros((), jnp.float32) if out.reference_loss is None else out.reference_loss
    return (out.fake, out.loss, reference), out

  (fake, loss, reference), backward, out = jax.vjp(forward, g_state.params, has_aux=True)
  fake_sg = jax.lax.stop_gradient(fake)
  zeros_fake = jax.tree_util.tree_map(jnp.zeros_like, fake)
  one, zero = jnp.ones_like(loss), jnp.zeros_like(loss)
  metrics: dict[str, jax.Array] = dict(out.metrics)
  total, fake_cotangent = loss, None
  reference_grad = None

  for name in names:
    player, d_state = discriminators[name], state.discriminators[name]
    key = jax.random.fold_in(rngs[name], 0)
    real_features = None
    if player.feature_matching:
      real_features = player.apply(d_state.params, d_state.model_state, out.real, batch,
                                   jax.random.fold_in(rngs[name], 1)).features

    def terms(x: PyTree, player=player, d_state=d_state, key=key, real_features=real_features):
      d_out = player.apply(d_state.params, d_state.model_state, x, batch, key)
      g_loss = gan.family(player.loss).g(d_out.logits)
      fm = (gan.feature_matching(real_features, d_out.features) if player.feature_matching
            else jnp.zeros((), jnp.float32))
      return g_loss, fm

    (g_loss, fm), terms_vjp = jax.vjp(terms, fake_sg)
    factor = (state.step >= player.start).astype(jnp.float32)
    weight = factor * player.g_weight * out.weights.get(name, 1.0)
    fm_weight = factor * player.feature_matching
    if player.adaptive:
      g_grad = terms_vjp((jnp.ones_like(g_loss), jnp.zeros_like(fm)))[0]
      if reference_grad is None:
        reference_grad = adaptive_layer(backward((zeros_fake, zero, one))[0])
      gan_grad = adaptive_layer(backward((g_grad, zero, zero))[0])
      adaptive = gan.adaptive_weight(reference_grad, gan_grad, 1.0, adaptive_max)
      weight = jax.lax.stop_gradient(weight * adaptive)
      metrics[f"{name}/adaptive_weight"] = player.g_weight * adaptive
      fake_cotangent = _tree_add(fake_cotangent, _tree_scale(g_grad, weight))
      if player.feature_matching:
        fake_cotangent = _tree_add(fake_cotangent,
                                   terms_vjp((jnp.zeros_like(g_loss), fm_weight))[0])
    else:
      # The weights are the D backward's cotangents, as in one backward through a weighted loss.
      weight = jax.lax.stop_gradient(weight)
      fake_cotangent = _tree_add(fake_cotangent, terms_vjp((weight, fm_weight))[0])
    total = total + weight * g_loss
    if player.feature_matching:
      total = total + fm_weight * fm
      metrics[f"{name}/feature_matching"] = fm
    metrics[f"{name}/g_loss"] = g_loss
    metrics[f"{name}/weight"] = weight

  grads = backward((zeros_fake if fake_cotangent is None else fake_cotangent, one, zero))[0]
  generator = g_state.apply_gradients(grads, model_state=out.model_state)
  metrics.update(loss=total, grad_norm=optax.tree.norm(grads))

  new_discriminators = dict(state.discriminators)
  for name in names:
    player = discriminators[name]
    if player.frozen:
      continue
    factor = (state.step >= player.start).astype(jnp.float32)
    new_discriminators[name], d_metrics = _cadenced_update(
        player, state.step, state.discriminators[name], out.real, fake_sg, batch,
        jax.random.fold_in(rngs[name], 2), factor)
    metrics.update({f"{name}/{k}": v for k, v in d_metrics.items()})
  return state.replace(step=state.step + 1, generator=generator,
                       discriminators=new_discriminators), metrics


def make_adversarial_step(generate: Generate, discriminators: Mapping[str, Discriminator],
                          adaptive_layer: Callable[[PyTree], PyTree] | None = None,
                          adaptive_max: float = gan.ADAPTIVE_MAX
                          ) -> Callable[[AdversarialTrainState, Batch, jax.Array],
                                        tuple[AdversarialTrainState, dict[str, jax.Array]]]:
  """(state, batch, rng) -> (state, metrics): `adversarial_step` with these players (jit it)."""
  def train_step(state: AdversarialTrainState, batch: Batch, rng: jax.Array):
    return adversarial_step(state, generate, discriminators, batch, rng, adaptive_layer,
                            adaptive_max)
  return train_step
