"""FD2Talk stage 1: the motion diffusion transformer (the paper's Exp / Pose Transformer, §3.2;
spec `shared/reference/systems/fd2talk.md` §2.2).

Dimensions: B batch, F frames (25 fps; 25 in training), D motion width (E expression
coefficients, P = 6 pose values, or E + P for the joint ablation), A audio feature width (one
vector per video frame), W model width, H heads.

  x_t [B, F, D] -> Dense W (`motion_in`) + sinusoidal PE over the frames       x [B, F, W]
  t [B] -> sinusoid(W) -> Dense W -> SiLU -> Dense W (`time_embed`)             temb [B, W]
  c_i = concat(temb, a_i) -> Dense W (`condition`, the paper's one linear layer) tau [B, F, W]
  L x `nn.transformer.TransformerBlock` (pre-norm):
      x = x + SelfAttn(LN(x))                     over the F frames, no mask (`self_attention`)
      x = x + CrossAttn(LN(x), tau, M)            Q from x, K = V = tau, alignment mask M
      x = x + MLP(LN(x))                          W -> mlp_ratio W -> W (GELU)
  LN -> Dense D (`motion_out`)                                                  x0_hat [B, F, D]

The network predicts x0 (the paper's Eqs. 8-9 regress beta_0 / p_0); sampling is
`diffusion.samplers.sample` with `StepConfig(prediction="x0")` (Eq. 5).

Alignment mask (Eq. 4): motion frame j (query) may attend tau_i (key) iff |i - j| <= k, k = 3
(`window`; None removes the mask: Table 3's "w/o alignment"). Cross-attention only reads tau, so
without self-attention frame j's output depends on the audio at j - k .. j + k alone, whatever L;
self-attention mixes the frames, so from the second layer on a frame also hears its neighbours'
bands (the mask then sets where the audio enters, not how far it travels).

One class serves the three uses (`motion`): "expression" (D = E), "pose" (D = P), and "joint"
(D = E + P, the expression first: Table 2's single-DiT ablation).

Choices the paper leaves open (spec §2.2, UNSPECIFIED there): the library's shared pre-norm
block with GELU (DreamTalk's layers are post-norm with ReLU and dropout 0.1), self-attention
kept, the condition width D_tau = W, a final LayerNorm and a single Dense head.
"""

from __future__ import annotations

from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talking_heads.nn import positional, remat, transformer, unet

Motion = Literal["expression", "pose", "joint"]

MOTIONS = ("expression", "pose", "joint")
ALIGNMENT_WINDOW = 3


def alignment_mask(num_frames: int, window: int | None = ALIGNMENT_WINDOW) -> np.ndarray:
  """[F, F] boolean: entry [j, i] is True when motion frame j may attend audio frame i
  (|i - j| <= window; all True when window is None)."""
  if window is None:
    return np.ones((num_frames, num_frames), bool)
  if window < 0:
    raise ValueError(f"alignment window must be >= 0 or None, got {window}")
  j, i = np.arange(num_frames)[:, None], np.arange(num_frames)[None, :]
  return np.abs(i - j) <= window


class MotionDiT(nn.Module):
  """x_t [B, F, D], t [B], audio [B, F, A] -> x0_hat [B, F, D] (module docstring).

  Attributes:
    motion: "expression", "pose" or "joint"; sets D.
    expression_dim: E (paper: Deep3D's 64; from the data's morphable model).
    pose_dim: P (3 angles + 3 translations).
    width: W (spec: 256).
    num_heads: H (spec: 8).
    num_layers: L (paper: 6).
    mlp_ratio: MLP width / W (spec: 4).
    window: k of the alignment mask, or None for full cross-attention.
    self_attention: the self-attention sub-block in every layer.
    remat: recompute each layer's activations in the backward pass (`nn.remat.blocks`).
  """
  motion: Motion = "expression"
  expression_dim: int = 64
  pose_dim: int = 6
  width: int = 256
  num_heads: int = 8
  num_layers: int = 6
  mlp_ratio: float = 4.0
  window: int | None = ALIGNMENT_WINDOW
  self_attention: bool = True
  remat: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @property
  def motion_dim(self) -> int:
    """D for `motion`."""
    if self.motion not in MOTIONS:
      raise ValueError(f"MotionDiT: motion must be one of {MOTIONS}, got {self.motion!r}")
    return {"expression": self.expression_dim, "pose": self.pose_dim,
            "joint": self.expression_dim + self.pose_dim}[self.motion]

  @nn.compact
  def __call__(self, x_t: jax.Array, t: jax.Array, audio: jax.Array) -> jax.Array:
    d = self.motion_dim
    if x_t.ndim != 3 or x_t.shape[-1] != d:
      raise ValueError(f"MotionDiT ({self.motion}): x_t must be [B, F, {d}], got {x_t.shape}")
    b, f, _ = x_t.shape
    if audio.ndim != 3 or audio.shape[:2] != (b, f):
      raise ValueError(f"MotionDiT: audio must be [B, F, A] = [{b}, {f}, A] (one vector per "
                       f"frame), got {audio.shape}")
    t = jnp.broadcast_to(jnp.asarray(t), (b,))
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = nn.Dense(self.width, name="motion_in", **kw)(x_t.astype(self.dtype))   # [B, F, W]
    x = x + jnp.asarray(positional.sinusoidal_1d(f, self.width), self.dtype)[None]
    temb = unet.TimestepEmbedding(self.width, self.width, name="time_embed", **kw)(t)  # [B, W]
    cond = jnp.concatenate([jnp.broadcast_to(temb[:, None], (b, f, self.width)),
                            audio.astype(self.dtype)], axis=-1)                # [B, F, W + A]
    tau = nn.Dense(self.width, name="condition", **kw)(cond)                     # [B, F, W]
    mask = jnp.broadcast_to(jnp.asarray(alignment_mask(f, self.window)), (b, f, f))  # [B, F, F]
    block = remat.blocks(transformer.TransformerBlock, self.remat)
    for i in range(self.num_layers):
      x = block(
          self.num_heads, self.mlp_ratio, self_attention=self.self_attention,
          cross_attention=True, name=f"layer_{i}", **kw)(x, tau, context_mask=mask)
    x = nn.LayerNorm(1e-6, dtype=jnp.float32, param_dtype=self.param_dtype, name="norm_out")(x)
    return nn.Dense(d, name="motion_out", **kw)(x).astype(jnp.float32)           # [B, F, D]
