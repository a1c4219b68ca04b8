"""Lip-sync expert loss: Wav2Lip's binary cross-entropy on the audio/video cosine similarity.

Dimensions: B batch, D embedding width.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from talking_heads.metrics import reduce

# PyTorch's BCELoss clamps each log term at -100 so that p = 0 or 1 gives a finite loss.
LOG_CLAMP = -100.0
# PyTorch cosine_similarity's eps on each norm.
COSINE_EPS = 1e-8


def cosine_similarity(a: jax.Array, b: jax.Array, eps: float = COSINE_EPS) -> jax.Array:
  """[..., D] x [..., D] -> [...] cosine similarity in float32, norms floored at `eps`."""
  a, b = a.astype(jnp.float32), b.astype(jnp.float32)
  norms = (jnp.maximum(jnp.linalg.norm(a, axis=-1), eps)
           * jnp.maximum(jnp.linalg.norm(b, axis=-1), eps))
  return jnp.sum(a * b, axis=-1) / norms


def _clamped_log(p: jax.Array) -> jax.Array:
  # log(p) >= LOG_CLAMP with finite gradients at p = 0: the inner where keeps log(0) out of the
  # graph (a NaN gradient would survive the outer where).
  positive = p > 0
  log_p = jnp.maximum(jnp.log(jnp.where(positive, p, 1.0)), LOG_CLAMP)
  return jnp.where(positive, log_p, LOG_CLAMP)


def cosine_bce(audio_emb: jax.Array, video_emb: jax.Array, y: jax.Array,
               mask: jax.Array | None = None) -> jax.Array:
  """Mean BCE(cos(audio_emb, video_emb), y) as Wav2Lip's expert loss, float32 scalar.

  The cosine is the probability of "in sync" (SyncNet_color embeddings are non-negative, so it lies
  in [0, 1]); it is clipped to [0, 1] against rounding and each log term clamped at -100 as
  PyTorch's BCELoss does.

  Args:
    audio_emb: [B, D] audio embeddings.
    video_emb: [B, D] face embeddings.
    y: [B] or [B, 1] labels, 1 in sync and 0 off sync (soft labels allowed).
    mask: optional [B] bool/float weights; the mean runs over masked-in entries (e.g. eval padding).
  """
  if audio_emb.shape != video_emb.shape or audio_emb.ndim != 2:
    raise ValueError(f"cosine_bce: embeddings must both be [B, D], got {audio_emb.shape} "
                     f"and {video_emb.shape}")
  b = audio_emb.shape[0]
  y = jnp.asarray(y, jnp.float32)
  if y.size != b:
    raise ValueError(f"cosine_bce: expected {b} labels, got shape {y.shape}")
  p = jnp.clip(cosine_similarity(audio_emb, video_emb), 0.0, 1.0)        # [B]
  y = y.reshape(b)
  loss = -(y * _clamped_log(p) + (1.0 - y) * _clamped_log(1.0 - p))      # [B]
  if mask is None:
    return jnp.mean(loss)
  return reduce.weighted_mean(loss, jnp.asarray(mask, jnp.float32).reshape(b))
