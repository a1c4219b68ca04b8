"""Vector-quantisation losses: VQ loss (LaDTalk Eq. 12), codebook regulariser (Eq. 11), codebook stats.

VQ loss. The two latent terms of Eq. 12 are, as means over every latent element (taming's
implementation of the squared norms):
  codebook   ||sg[z_e] - z_q||^2   moves the chosen codes towards the encoder outputs;
  commitment ||sg[z_q] - z_e||^2   keeps the encoder outputs close to their codes.
LaDTalk weighs both by 1 (beta = 1). taming's VectorQuantizer2 weighs one of them by beta = 0.25:
with `legacy=True` (its default) beta lands on the codebook term, which taming documents as a bug;
`legacy=False` puts it on the commitment term as in the VQ-VAE paper. The reconstruction term of
Eq. 12 is the stage's (L2).

Codebook regulariser. L_reg = |d_C - theta| (Eq. 11: the 2-norm of a scalar), where d_C is the
minimal distance between two distinct codes ("minimal", the paper's choice, theta = 1) or the mean
distance over all pairs ("average", Table 3's ablation). In "minimal" mode the gradient reaches
only the closest pair. Distances are sqrt(d^2 + eps), finite with finite gradients even for
identical codes.

Codebook statistics are per batch: usage = fraction of the N codes chosen at least once, dead
codes = the number never chosen, perplexity = exp(-sum_n p_n log p_n) of the batch's code
frequencies p (1 when one code takes everything, N when all are used equally).

Dead-code restarts (`code_usage`, `restart_dead_codes`; not part of Eq. 12: a codebook learned
from scratch collapses onto a few codes when its initialisation is far from the encoder's outputs,
as taming's uniform(-1/N, 1/N) is). Each code keeps an exponential moving average of how many
latent vectors chose it per step; a code whose average falls below `threshold` is moved onto a
latent vector of the current batch drawn at random (Jukebox's random restarts, SoundStream's
codebook expiry) and starts over at the mean count per code, M / N, so that it has time to win
vectors before it counts as dead again. Codes start at usage 0, so the first restart seeds from
the encoder's outputs every code the first batch did not give threshold / (1 - decay) vectors.

Dimensions: N codes, c code width, M latent vectors.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

REGULARISER_MODES = ("minimal", "average", "off")
DISTANCE_EPS = 1e-12


def codebook_and_commitment(z_e: jax.Array, z_q: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(codebook term, commitment term) of Eq. 12 for encoder outputs z_e and their codes z_q."""
  sg = jax.lax.stop_gradient
  z_e, z_q = z_e.astype(jnp.float32), z_q.astype(jnp.float32)
  return jnp.mean(jnp.square(sg(z_e) - z_q)), jnp.mean(jnp.square(sg(z_q) - z_e))


def vq_loss(codebook_term: jax.Array, commitment_term: jax.Array, beta: float = 1.0,
            legacy: bool = False) -> jax.Array:
  """Weighted VQ loss: beta on the commitment term, or on the codebook term with `legacy`."""
  if legacy:
    return beta * codebook_term + commitment_term
  return codebook_term + beta * commitment_term


def squared_distances(codebook: jax.Array) -> jax.Array:
  """[N, N] squared Euclidean distances between codes (float32, clamped at 0)."""
  e = codebook.astype(jnp.float32)
  norms = jnp.sum(e * e, axis=1)
  return jnp.maximum(norms[:, None] + norms[None, :] - 2.0 * e @ e.T, 0.0)


def _distance(squared: jax.Array) -> jax.Array:
  return jnp.sqrt(squared + DISTANCE_EPS)


def closest_pair(codebook: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Indices (i, j), i != j, of the two closest codes (no gradient)."""
  n = codebook.shape[0]
  d2 = jax.lax.stop_gradient(squared_distances(codebook))
  d2 = jnp.where(jnp.eye(n, dtype=bool), jnp.inf, d2)
  flat = jnp.argmin(d2)
  return flat // n, flat % n


def minimal_distance(codebook: jax.Array) -> jax.Array:
  """d_C = min_{i != j} ||c_i - c_j||_2; its gradient reaches only the closest pair.

  The pair is found from the expanded distance matrix; its distance is then taken from the
  difference of the two codes, which stays exact when the codes are close.
  """
  if codebook.shape[0] < 2:
    raise ValueError(f"minimal_distance needs at least 2 codes, got {codebook.shape[0]}")
  i, j = closest_pair(codebook)
  diff = codebook[i].astype(jnp.float32) - codebook[j].astype(jnp.float32)
  return _distance(jnp.sum(diff * diff))


def average_distance(codebook: jax.Array) -> jax.Array:
  """Mean ||c_i - c_j||_2 over all pairs i < j."""
  n = codebook.shape[0]
  if n < 2:
    raise ValueError(f"average_distance needs at least 2 codes, got {n}")
  upper = jnp.triu(jnp.ones((n, n), bool), k=1)
  distances = _distance(squared_distances(codebook))
  return jnp.sum(jnp.where(upper, distances, 0.0)) / (n * (n - 1) / 2)


def codebook_regulariser(codebook: jax.Array, mode: str = "minimal", theta: float = 1.0
                         ) -> tuple[jax.Array, jax.Array]:
  """(L_reg = |d - theta|, d) with d the minimal or average code distance; (0, d_C) when "off"."""
  if mode not in REGULARISER_MODES:
    raise ValueError(f"codebook regulariser mode must be one of {REGULARISER_MODES}, got {mode!r}")
  if mode == "off":
    return jnp.zeros((), jnp.float32), jax.lax.stop_gradient(minimal_distance(codebook))
  d = minimal_distance(codebook) if mode == "minimal" else average_distance(codebook)
  return jnp.abs(d - theta), d


def codebook_stats(indices: jax.Array, num_codes: int, weights: jax.Array | None = None
                   ) -> dict[str, jax.Array]:
  """Usage, perplexity and dead codes of one batch's code indices (module docstring).

  Args:
    indices: int code indices [B, ...].
    num_codes: N.
    weights: [B] example weights (eval padding rows get 0); default all ones.

  Returns:
    {"usage": fraction of codes used, "perplexity", "dead_codes": count never used} (float32).
  """
  flat = indices.reshape(indices.shape[0], -1)                    # [B, hw]
  w = jnp.ones(flat.shape[0], jnp.float32) if weights is None else weights.astype(jnp.float32)
  counts = jnp.zeros(num_codes, jnp.float32).at[flat.reshape(-1)].add(
      jnp.repeat(w, flat.shape[1]))                               # [N]
  p = counts / jnp.maximum(jnp.sum(counts), 1e-12)
  entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
  used = jnp.sum((counts > 0).astype(jnp.float32))
  return {"usage": used / num_codes, "perplexity": jnp.exp(entropy),
          "dead_codes": num_codes - used}


def code_usage(usage: jax.Array, indices: jax.Array, decay: float) -> jax.Array:
  """Usage [N] (moving average of latent vectors per code per step) after a batch's indices."""
  counts = jnp.zeros(usage.shape, jnp.float32).at[indices.reshape(-1)].add(1.0)   # [N]
  return decay * usage + (1.0 - decay) * counts


def restart_dead_codes(codebook: jax.Array, usage: jax.Array, latents: jax.Array,
                       rng: jax.Array, threshold: float
                       ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Codes with usage below `threshold` moved onto random latents (module docstring).

  Args:
    codebook: [N, c].
    usage: [N] from `code_usage`.
    latents: [M, c] this step's encoder outputs (no gradient flows through the restart).
    rng: draws which latents seed the dead codes (without replacement when M >= N).
    threshold: vectors per step below which a code is dead.

  Returns:
    (codebook [N, c], usage [N] with restarted codes at M / N, number of codes restarted).
  """
  num_codes, m = codebook.shape[0], latents.shape[0]
  dead = usage < threshold                                                      # [N]
  picks = jax.random.choice(rng, m, (num_codes,), replace=m < num_codes)
  seeds = jax.lax.stop_gradient(latents[picks]).astype(codebook.dtype)          # [N, c]
  codebook = jnp.where(dead[:, None], seeds, codebook)
  usage = jnp.where(dead, jnp.float32(m / num_codes), usage)
  return codebook, usage, jnp.sum(dead.astype(jnp.float32))
