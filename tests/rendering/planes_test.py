"""Tri-plane projection (EG3D's axis quirk against its own matrices) and bilinear sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.rendering import planes

# EG3D's `generate_planes()` matrices; its projection keeps the first two coordinates of p inv(M).
EG3D_MATRICES = np.array([[[1, 0, 0], [0, 1, 0], [0, 0, 1]],
                          [[1, 0, 0], [0, 0, 1], [0, 1, 0]],
                          [[0, 0, 1], [1, 0, 0], [0, 1, 0]]], np.float64)


def _eg3d_reference_projection(points, box_warp):
  scaled = points * (2.0 / box_warp)
  return np.stack([(scaled @ np.linalg.inv(m))[:, :2] for m in EG3D_MATRICES])


def test_eg3d_axes_match_eg3d_matrices_and_default_axes_are_the_true_planes():
  points = np.random.default_rng(0).uniform(-0.5, 0.5, (20, 3))
  np.testing.assert_allclose(
      planes.project_to_planes(jnp.asarray(points), 2.0, planes.EG3D_PLANE_AXES),
      _eg3d_reference_projection(points, 2.0), atol=1e-6)
  ours = np.asarray(planes.project_to_planes(jnp.asarray(points), 1.0))
  np.testing.assert_allclose(ours, 2.0 * np.stack([points[:, [0, 1]], points[:, [0, 2]],
                                                   points[:, [1, 2]]]), atol=1e-6)
  # The quirk: EG3D's third plane sees z and x, never y.
  assert not np.allclose(_eg3d_reference_projection(points, 1.0)[2], ours[2])


def test_grid_sample_bilinear_align_corners_false_zero_padding():
  plane = jnp.arange(12.0).reshape(3, 4, 1)               # H 3, W 4
  # Pixel centres: column j at a = (2 j + 1) / 4 - 1, row i at b = (2 i + 1) / 3 - 1.
  centre = lambda i, j: [(2 * j + 1) / 4 - 1, (2 * i + 1) / 3 - 1]
  coords = jnp.array([centre(0, 0), centre(2, 3), centre(1, 1),
                      [(centre(1, 1)[0] + centre(1, 2)[0]) / 2, centre(1, 1)[1]],
                      [-1.0, centre(1, 0)[1]],               # left edge: half of pixel (1, 0)
                      [1.5, 0.0]])                           # outside
  np.testing.assert_allclose(jax.jit(planes.grid_sample)(plane, coords)[:, 0],
                             [0.0, 11.0, 5.0, 5.5, 2.0, 0.0], atol=1e-5)


@pytest.mark.parametrize("axes,expected", [(planes.PLANE_AXES, (1, 2)),
                                           (planes.EG3D_PLANE_AXES, (2, 0))])
def test_sample_planes_reads_the_third_plane_at_its_axes(axes, expected):
  size = 16
  centres = (2 * np.arange(size) + 1) / size - 1.0
  # A plane whose channels hold its own (column, row) coordinates; the other planes are zero.
  rows, cols = np.meshgrid(centres, centres, indexing="ij")
  third = np.stack([cols, rows], axis=-1)
  stack = np.zeros((1, 3, size, size, 2))
  stack[0, 2] = third
  points = np.random.default_rng(1).uniform(-0.4, 0.4, (1, 30, 3))
  sample = jax.jit(lambda p, x: planes.sample_planes(p, x, box_warp=1.0, axes=axes))
  features = sample(jnp.asarray(stack, jnp.float32), jnp.asarray(points, jnp.float32))
  np.testing.assert_allclose(features[0], 2.0 * points[0][:, list(expected)], atol=1e-5)


def test_sum_and_mean_aggregation():
  stack = jnp.ones((2, 3, 4, 4, 5))
  points = jnp.zeros((2, 7, 3))
  sample = jax.jit(planes.sample_planes, static_argnames="reduce")
  np.testing.assert_allclose(sample(stack, points), 3.0)
  np.testing.assert_allclose(sample(stack, points, reduce="mean"), 1.0)
  with pytest.raises(ValueError, match="reduce"):
    planes.sample_planes(stack, points, reduce="max")
