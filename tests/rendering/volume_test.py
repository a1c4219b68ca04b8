"""Ray marching (weights, a density slab's transmittance), box intersection, importance sampling."""

import jax
import jax.numpy as jnp
import numpy as np

from talking_heads.rendering import volume


def _raw_sigma(density):
  """The raw sigma whose activation softplus(sigma - 1) is `density` (> 0)."""
  return 1.0 + np.log(np.expm1(density))


def test_weights_are_non_negative_and_sum_to_at_most_one():
  rng = np.random.default_rng(0)
  colors = jnp.asarray(rng.uniform(size=(4, 10, 32, 3)), jnp.float32)
  sigmas = jnp.asarray(20.0 * rng.normal(size=(4, 10, 32, 1)), jnp.float32)
  depths = jnp.asarray(np.sort(rng.uniform(1.0, 3.0, (4, 10, 32)), axis=-1), jnp.float32)
  out = jax.jit(volume.ray_march)(colors, sigmas, depths)
  assert out.weights.shape == (4, 10, 31)
  assert float(out.weights.min()) >= 0.0
  assert float(out.weight_sum.max()) <= 1.0 + 1e-6
  np.testing.assert_allclose(out.weight_sum, out.weights.sum(-1), rtol=1e-6)
  # Opaque everywhere: all the weight on the first interval.
  opaque = jax.jit(volume.ray_march)(colors, jnp.full_like(sigmas, 1e4), depths)
  np.testing.assert_allclose(opaque.weight_sum, 1.0, atol=1e-6)


def test_a_density_slab_reproduces_its_transmittance():
  density, colour = 1.3, 0.8
  depths = np.linspace(0.0, 4.0, 41)                     # 0.1 apart; slab samples 1.0 .. 2.0
  inside = (depths >= 1.0 - 1e-9) & (depths <= 2.0 + 1e-9)
  sigmas = np.where(inside, _raw_sigma(density), -1e3)  # softplus(-1e3 - 1) = 0 outside
  colors = np.where(inside, colour, 0.0)
  out = jax.jit(volume.ray_march)(jnp.asarray(colors, jnp.float32)[None, :, None],
                         jnp.asarray(sigmas, jnp.float32)[None, :, None],
                         jnp.asarray(depths, jnp.float32)[None])
  optical_depth = density * 1.0
  np.testing.assert_allclose(out.weight_sum[0], 1.0 - np.exp(-optical_depth), rtol=1e-5)
  # Transmittance halfway through the slab, and the composited colour.
  halfway = 10 + 5                                       # intervals before depth 1.5
  np.testing.assert_allclose(1.0 - out.weights[0, :halfway].sum(), np.exp(-optical_depth / 2),
                             rtol=1e-5)
  np.testing.assert_allclose(out.features[0, 0],
                             2 * colour * (1 - np.exp(-optical_depth)) - 1, rtol=1e-5)
  # The expected depth of a homogeneous slab: its start plus E[exponential truncated to 1].
  mean = 1.0 / density - np.exp(-optical_depth) / (1 - np.exp(-optical_depth))
  np.testing.assert_allclose(out.depth[0], 1.0 + mean, atol=5e-3)


def test_ray_box_intersection():
  origins = jnp.array([[0.0, 0.0, -2.0], [0.0, 0.0, -2.0], [0.2, 0.1, 0.0]])
  directions = jnp.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
  near, far = volume.ray_box_intersection(origins, directions, 0.5)
  np.testing.assert_allclose(near, [1.5, 0.0, 0.0], atol=1e-6)     # 2nd misses, 3rd starts inside
  np.testing.assert_allclose(far, [2.5, 0.0, 0.5], atol=1e-6)


def test_importance_sampling_draws_more_samples_where_weights_are_larger():
  depths = jnp.linspace(0.0, 1.6, 17)[None]              # 16 intervals of 0.1
  weights = jnp.zeros((1, 16)).at[0, 3].set(0.1).at[0, 11].set(0.6)
  for key in (None, jax.random.key(0)):
    fine = np.asarray(jax.jit(volume.importance_depths, static_argnums=2)(
        depths, weights, 400, key))[0]
    counts = np.histogram(fine, bins=np.asarray(depths[0]))[0]
    assert counts.sum() == 400
    # The smoothing spreads each peak over its neighbours; the larger peak gets more.
    assert counts[10:13].sum() > 2.5 * counts[2:5].sum() > 0
    assert counts[2:5].sum() > 5 * counts[6:9].sum()
    assert counts[:2].sum() + counts[6:9].sum() + counts[14:].sum() < 0.1 * 400
  # Stratified coarse depths stay ordered within their strata.
  coarse = volume.stratified_depths(jnp.array([1.0]), jnp.array([2.0]), 11, jax.random.key(1))
  assert bool(jnp.all(jnp.diff(coarse) > 0)) and float(coarse[0, 0]) >= 1.0


def test_render_rays_finds_an_opaque_sphere():
  def field(points):
    inside = jnp.linalg.norm(points, axis=-1, keepdims=True) < 0.25
    return jnp.ones(points.shape[:-1] + (4,)), jnp.where(inside, 200.0, -50.0)
  origins = jnp.broadcast_to(jnp.array([0.0, 0.0, -2.0]), (1, 3, 3))
  directions = jnp.array([[[0.0, 0.0, 1.0], [0.1, 0.0, 1.0], [0.3, 0.0, 1.0]]])
  directions = directions / jnp.linalg.norm(directions, axis=-1, keepdims=True)
  render = jax.jit(volume.render_rays, static_argnums=(0, 3, 4, 5))
  out = render(field, origins, directions, 16, 16, 0.5, jax.random.key(0))
  assert out.features.shape == (1, 3, 4) and out.weights.shape == (1, 3, 31)
  np.testing.assert_allclose(out.weight_sum[0, :2], 1.0, atol=1e-3)   # hits
  np.testing.assert_allclose(out.weight_sum[0, 2], 0.0, atol=1e-6)    # misses the sphere
  # The central ray stops at the surface, 1.75 away; the fine pass sharpens the estimate.
  coarse_only = render(field, origins, directions, 16, 0, 0.5)
  assert abs(float(out.depth[0, 0]) - 1.75) < 0.02
  assert abs(float(out.depth[0, 0]) - 1.75) < abs(float(coarse_only.depth[0, 0]) - 1.75)
