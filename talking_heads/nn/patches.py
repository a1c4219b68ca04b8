"""Non-overlapping patches of feature maps as token sequences (ViT / DiT patch embedding).

Dimensions: B batch, H, W spatial size, C channels, P patch size, N = (H/P)(W/P) tokens in
row-major order over the patch grid, each token the P x P x C values of its patch flattened
as (row, column, channel).
"""

from __future__ import annotations

import jax


def patchify(x: jax.Array, patch: int) -> jax.Array:
  """[B, H, W, C] -> [B, N, P P C]; H and W must be multiples of P."""
  b, h, w, c = x.shape
  if patch < 1 or h % patch or w % patch:
    raise ValueError(f"patchify: {h}x{w} does not split into {patch}x{patch} patches")
  x = x.reshape(b, h // patch, patch, w // patch, patch, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(tokens: jax.Array, patch: int, height: int, width: int) -> jax.Array:
  """[B, N, P P C] -> [B, H, W, C], the inverse of `patchify` for an H x W map."""
  b, n, d = tokens.shape
  gh, gw = height // patch, width // patch
  if gh * patch != height or gw * patch != width or n != gh * gw or d % (patch * patch):
    raise ValueError(f"unpatchify: {n} tokens of width {d} are not {patch}x{patch} patches of a "
                     f"{height}x{width} map")
  c = d // (patch * patch)
  x = tokens.reshape(b, gh, gw, patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, height, width, c)
