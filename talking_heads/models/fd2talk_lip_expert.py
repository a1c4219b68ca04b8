"""FD2Talk's lip expert (§3.4.1, Eqs. 10-11; spec `shared/reference/systems/fd2talk.md` §2.4):
a SyncNet-style pair of encoders on 3D mouth points and audio features.

Dimensions: B batch, F frames, W window frames (5, 0.2 s at 25 fps), S = F - W + 1 windows,
N mouth points, A audio feature width (one vector per video frame), E embedding width,
I identity and X expression coefficients of the morphable model.

  mouth_points   identity alpha [.., I] + expression beta [.., X] -> the morphable model's
                 mouth landmarks (`face.morphable.mouth_vertices`, model frame: no head pose),
                 centred on their centroid per frame -> [.., N, 3]. Differentiable in beta, so
                 L_sync reaches the Exp Transformer's x0_hat.
  MouthEncoder   [B, W, N, 3] * point_scale -> flatten -> (Dense -> LayerNorm -> ReLU) per
                 hidden width -> Dense E -> ReLU                                  v [B, E]
  AudioEncoder   [B, W, A] -> flatten -> the same MLP                              a [B, E]
  P_sync         cos(v, a) (Eq. 10), in [0, 1] since both embeddings are non-negative (ReLU,
                 Wav2Lip's SyncNet); norms floored at 1e-8 (`losses.sync.cosine_similarity`).
  expert_loss    BCE(P_sync, y), y = 1 in sync / 0 shifted (`losses.sync.cosine_bce`): the
                 expert's own training. Keep its learning rate low (Wav2Lip: 1e-4): an in-sync
                 pair whose ReLU embeddings have disjoint supports has P = 0 exactly, a clamped
                 loss and no gradient (seen on the tiny test set at 1e-3).
  sync_loss      mean of -log(max(P_sync, 1e-7)) (Eq. 11) over windows: stage 1's L_sync on the
                 frozen expert, averaged over all S windows of the F-frame x0_hat.

The paper gives only Eqs. 10-11; the rest is the spec's recommended Wav2Lip recipe, with
LayerNorm where it suggests BatchNorm (no batch statistics to carry into the frozen use on
x0 predictions, whose distribution differs from the expert's training batches).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from talking_heads.face import morphable
from talking_heads.losses import sync as sync_losses

WINDOW = 5
MIN_PROBABILITY = 1e-7


def mouth_points(model: morphable.MorphableModel, alpha: jax.Array | None,
                 beta: jax.Array) -> jax.Array:
  """alpha [.., I] (None: mean identity), beta [.., X] -> centred mouth points [.., N, 3] (mm)."""
  points = morphable.mouth_vertices(model, alpha, jnp.asarray(beta, jnp.float32))  # [.., N, 3]
  return points - jnp.mean(points, axis=-2, keepdims=True)


def frame_windows(x: jax.Array, size: int = WINDOW) -> jax.Array:
  """[B, F, ...] -> [B, S, size, ...], every window of `size` consecutive frames (S = F - size + 1)."""
  f = x.shape[1]
  if f < size:
    raise ValueError(f"frame_windows: {f} frames are fewer than the window of {size}")
  index = jnp.arange(f - size + 1)[:, None] + jnp.arange(size)[None]             # [S, size]
  return x[:, index]


def sync_probability(v: jax.Array, a: jax.Array) -> jax.Array:
  """Embeddings [.., E], [.., E] -> P_sync [..] = cos(v, a) clipped to [0, 1] (Eq. 10), float32."""
  return jnp.clip(sync_losses.cosine_similarity(v, a), 0.0, 1.0)


def expert_loss(v: jax.Array, a: jax.Array, y: jax.Array) -> jax.Array:
  """Mean BCE(P_sync, y) over [B] pairs (y = 1 in sync, 0 off sync): the expert's training loss."""
  return sync_losses.cosine_bce(a, v, y)


def sync_loss(v: jax.Array, a: jax.Array) -> jax.Array:
  """Mean of -log(max(P_sync, 1e-7)) over every leading entry of [.., E] (Eq. 11), float32."""
  return jnp.mean(-jnp.log(jnp.maximum(sync_probability(v, a), MIN_PROBABILITY)))


class _Mlp(nn.Module):
  """x [B, ...] -> flatten -> (Dense -> LayerNorm -> ReLU) per hidden width -> Dense E -> ReLU."""
  hidden: Sequence[int]
  embed_dim: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    h = x.reshape(x.shape[0], -1).astype(self.dtype)                             # [B, W * ...]
    for i, width in enumerate(self.hidden):
      h = nn.Dense(width, name=f"dense_{i}", **kw)(h)
      h = nn.relu(nn.LayerNorm(dtype=jnp.float32, param_dtype=self.param_dtype,
                               name=f"norm_{i}")(h)).astype(self.dtype)
    return nn.relu(nn.Dense(self.embed_dim, name="embed", **kw)(h))                 # [B, E]


class LipExpert(nn.Module):
  """(mouth [B, W, N, 3], audio [B, W, A]) -> (v [B, E], a [B, E]) (module docstring).

  Attributes:
    embed_dim: E (spec: 512).
    mouth_hidden: the mouth MLP's hidden widths (spec: 1024, 512, 512).
    audio_hidden: the audio MLP's hidden widths.
    window: W, checked against the inputs.
    point_scale: multiplies the points (mm) so the MLP sees values of order one.
  """
  embed_dim: int = 512
  mouth_hidden: Sequence[int] = (1024, 512, 512)
  audio_hidden: Sequence[int] = (1024, 512, 512)
  window: int = WINDOW
  point_scale: float = 0.1
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def setup(self):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    self.mouth_encoder = _Mlp(tuple(self.mouth_hidden), self.embed_dim, **kw)
    self.audio_encoder = _Mlp(tuple(self.audio_hidden), self.embed_dim, **kw)

  def encode_mouth(self, mouth: jax.Array) -> jax.Array:
    """[B, W, N, 3] centred mouth points -> v [B, E]."""
    if mouth.ndim != 4 or mouth.shape[1] != self.window or mouth.shape[-1] != 3:
      raise ValueError(f"LipExpert: mouth points must be [B, {self.window}, N, 3], got "
                       f"{mouth.shape}")
    return self.mouth_encoder(mouth * self.point_scale)

  def encode_audio(self, audio: jax.Array) -> jax.Array:
    """[B, W, A] audio features -> a [B, E]."""
    if audio.ndim != 3 or audio.shape[1] != self.window:
      raise ValueError(f"LipExpert: audio must be [B, {self.window}, A], got {audio.shape}")
    return self.audio_encoder(audio)

  def __call__(self, mouth: jax.Array, audio: jax.Array) -> tuple[jax.Array, jax.Array]:
    return self.encode_mouth(mouth), self.encode_audio(audio)

  def windows(self, mouth: jax.Array, audio: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Sequences mouth [B, F, N, 3], audio [B, F, A] -> (v, a) [B, S, E] for every W-frame window
    (stage 1's L_sync input)."""
    if mouth.shape[:2] != audio.shape[:2]:
      raise ValueError(f"LipExpert.windows: mouth {mouth.shape} and audio {audio.shape} must "
                       "share [B, F]")
    mw, aw = frame_windows(mouth, self.window), frame_windows(audio, self.window)
    b, s = mw.shape[:2]
    v = self.encode_mouth(mw.reshape((b * s,) + mw.shape[2:]))                   # [B S, E]
    a = self.encode_audio(aw.reshape((b * s,) + aw.shape[2:]))
    return v.reshape(b, s, -1), a.reshape(b, s, -1)
