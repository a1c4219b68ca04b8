"""Tri-plane projection and bilinear sampling (EG3D, `volumetric_rendering/renderer.py`).

A point p = (x, y, z) in the box [-box_warp / 2, box_warp / 2]^3 is projected onto three
axis-aligned planes, scaled to grid coordinates in [-1, 1] (2 / box_warp), and each plane
[H, W, C] is sampled bilinearly at (a, b): a indexes W (columns), b indexes H (rows), as
`torch.nn.functional.grid_sample` with align_corners=False (-1 and 1 are the outer edges of the
border pixels) and zeros outside.

Plane axes. `PLANE_AXES` = (x, y), (x, z), (y, z): the three true planes. EG3D's code builds
its projections from the matrices I, [[1,0,0],[0,0,1],[0,1,0]], [[0,0,1],[1,0,0],[0,1,0]] and
takes the first two coordinates of p @ inv(M), which gives (x, y), (x, z) and (z, x): its third
"yz" plane is really a second xz plane, transposed (eg3d issues #30 and #53). `EG3D_PLANE_AXES`
reproduces it for checkpoint compatibility; PIR needs none, so the true planes are the default.

Plane features are summed (PIR's text; EG3D averages: `reduce="mean"`).

Dimensions: B batch, P = 3 planes, H, W plane size, C channels, N points.
"""

from __future__ import annotations

from typing import Literal, Sequence

import jax
import jax.numpy as jnp

PlaneAxes = Sequence[tuple[int, int]]
Reduce = Literal["sum", "mean"]

PLANE_AXES: PlaneAxes = ((0, 1), (0, 2), (1, 2))
EG3D_PLANE_AXES: PlaneAxes = ((0, 1), (0, 2), (2, 0))
REDUCTIONS = ("sum", "mean")


def project_to_planes(points: jax.Array, box_warp: float = 1.0,
                      axes: PlaneAxes = PLANE_AXES) -> jax.Array:
  """points [..., N, 3] -> grid coordinates [..., P, N, 2] (in [-1, 1] inside the box)."""
  if points.shape[-1:] != (3,):
    raise ValueError(f"points must be [..., N, 3], got {tuple(points.shape)}")
  coords = jnp.stack([points[..., list(pair)] for pair in axes], axis=-3)
  return coords * (2.0 / box_warp)


def grid_sample(plane: jax.Array, coords: jax.Array) -> jax.Array:
  """plane [H, W, C], coords [N, 2] as (a, b) in [-1, 1] -> [N, C], bilinear, zeros outside
  (grid_sample, align_corners=False)."""
  h, w, c = plane.shape
  x = ((coords[:, 0] + 1.0) * w - 1.0) / 2.0                 # column, pixel centres on integers
  y = ((coords[:, 1] + 1.0) * h - 1.0) / 2.0                 # row
  x0, y0 = jnp.floor(x), jnp.floor(y)
  flat = plane.reshape(h * w, c)
  out = jnp.zeros((coords.shape[0], c), plane.dtype)
  for dy in (0, 1):
    for dx in (0, 1):
      xi, yi = x0 + dx, y0 + dy
      weight = (1.0 - jnp.abs(x - xi)) * (1.0 - jnp.abs(y - yi))          # [N]
      inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
      index = (jnp.clip(yi, 0, h - 1) * w + jnp.clip(xi, 0, w - 1)).astype(jnp.int32)
      out = out + flat[index] * jnp.where(inside, weight, 0.0)[:, None].astype(plane.dtype)
  return out


def sample_planes(planes: jax.Array, points: jax.Array, box_warp: float = 1.0,
                  axes: PlaneAxes = PLANE_AXES, reduce: Reduce = "sum") -> jax.Array:
  """planes [B, P, H, W, C], points [B, N, 3] -> point features [B, N, C], the P planes'
  bilinear samples summed (or averaged)."""
  if planes.ndim != 5 or planes.shape[1] != len(axes):
    raise ValueError(f"planes must be [B, {len(axes)}, H, W, C], got {tuple(planes.shape)}")
  if reduce not in REDUCTIONS:
    raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
  coords = project_to_planes(points, box_warp, axes)                     # [B, P, N, 2]
  per_plane = jax.vmap(jax.vmap(grid_sample))(planes, coords)           # [B, P, N, C]
  return per_plane.sum(axis=1) if reduce == "sum" else per_plane.mean(axis=1)
