"""Noise tolerance: d_C, gamma and the radius on hand-built codebooks, Theorem 3.3 on an encoder
whose Lipschitz constant is known, and the analysis of a tiny SOVQAE."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.losses import vq as vq_losses
from talking_heads.models.vq import SOVQAE
from talking_heads.pipelines import frames as frames_pipeline
from talking_heads.systems.ladtalk import noise_tolerance as nt


def random_variables(model, x, seed):
  """Variables of `model` drawn with numpy (a compiled flax init costs 15+ s on a busy CPU)."""
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = path[-1].key
    if name == "kernel":
      value = rng.normal(size=leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))
    elif name == "scale":
      value = 1.0 + 0.1 * rng.normal(size=leaf.shape)
    elif name == "codebook":
      value = rng.uniform(-1.0, 1.0, leaf.shape)
    else:
      value = 0.05 * rng.normal(size=leaf.shape)
    return jnp.asarray(value, leaf.dtype)

  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  return jax.tree_util.tree_map_with_path(draw, shapes)


def smooth_frames(rng, count, size):
  """uint8 frames with low-frequency content, like faces rather than white noise."""
  coarse = rng.integers(0, 256, (count, size // 4, size // 4, 3)).astype(np.float32)
  frames = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)
  return np.stack([np.rint(frames_pipeline.gaussian_blur(f, 1.5)) for f in frames]).astype(np.uint8)


def test_min_codebook_distance_hand_case():
  codebook = [[0.0, 0.0], [3.0, 4.0], [0.0, 1.0], [10.0, 10.0]]
  d_c, pair = nt.min_codebook_distance(codebook)
  assert d_c == 1.0 and pair == (0, 2)


def test_min_codebook_distance_matches_brute_force_across_chunks(monkeypatch):
  codebook = np.random.default_rng(0).normal(size=(41, 5))
  codebook[17] = codebook[33] + 1e-7          # a close pair: the expanded form alone loses it
  monkeypatch.setattr(nt, "_CHUNK", 7)
  d_c, pair = nt.min_codebook_distance(codebook)
  expected = min((np.linalg.norm(a - b), (i, j)) for (i, a), (j, b)
                 in itertools.combinations(enumerate(codebook), 2))
  assert pair == expected[1] == (17, 33)
  np.testing.assert_allclose(d_c, expected[0], rtol=1e-6)
  np.testing.assert_allclose(
      nt.min_codebook_distance(codebook[:20])[0],
      float(vq_losses.minimal_distance(jnp.asarray(codebook[:20], jnp.float32))), rtol=1e-4)


def test_nearest_codes_and_gamma_hand_case():
  codebook = [[0.0, 0.0], [2.0, 0.0]]
  latents = np.array([[[0.5, 0.0], [1.9, 0.3]], [[-1.0, 0.0], [2.0, 0.0]]])   # [2, 2, c]
  indices, distances = nt.nearest_codes(latents, codebook)
  np.testing.assert_array_equal(indices, [[0, 1], [0, 1]])
  np.testing.assert_allclose(distances, [[0.5, np.sqrt(0.1)], [1.0, 0.0]])
  assert nt.latent_gamma(latents, codebook) == pytest.approx(1.0)
  with pytest.raises(ValueError, match="disagree"):
    nt.nearest_codes(np.zeros((3, 4)), codebook)


def test_tolerance_radius():
  assert nt.tolerance_radius(1.0, 0.25, 2.0) == pytest.approx(0.125)
  assert nt.tolerance_radius(1.0, 0.75, 2.0) == pytest.approx(-0.125)   # nothing certified
  with pytest.raises(ValueError, match="positive"):
    nt.tolerance_radius(1.0, 0.0, 0.0)


def test_degrade():
  frames = smooth_frames(np.random.default_rng(0), 3, 16)
  np.testing.assert_array_equal(nt.degrade(frames, "noise", 0.0, seed=1), frames)
  blurred = nt.degrade(frames, "blur", 2.0, seed=1)
  expected = np.clip(np.rint(frames_pipeline.gaussian_blur(frames[1], 2.0)), 0, 255)
  np.testing.assert_array_equal(blurred[1], expected)
  noisy = nt.degrade(np.full((4, 32, 32, 3), 128, np.uint8), "noise", 10.0, seed=1)
  assert abs(np.std(noisy.astype(np.float64)) - 10.0) < 0.5
  np.testing.assert_array_equal(noisy, nt.degrade(np.full((4, 32, 32, 3), 128, np.uint8), "noise",
                                                  10.0, seed=1))
  with pytest.raises(ValueError, match="kind"):
    nt.degrade(frames, "jpeg", 1.0, seed=0)


def test_theorem_on_a_pixel_encoder():
  """E = identity (L_eps = 1), latents = pixels, codes = a colour palette with d_C = 1, frames
  painted from the palette (gamma = 0): every noise below radius 1/2 keeps every index."""
  palette = np.array([[-1.0, -1.0, -1.0], [0.0, -1.0, -1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 1.0]])
  d_c, _ = nt.min_codebook_distance(palette)
  assert d_c == 1.0
  rng = np.random.default_rng(0)
  frames = np.rint((palette[rng.integers(0, 4, (6, 4, 4))] + 1.0) * 127.5).astype(np.uint8)
  encode = lambda x: x
  latents = nt.encode_frames(encode, frames)
  gamma = nt.latent_gamma(latents, palette)
  assert gamma < 1e-2                                       # 127.5 rounds to 128
  radius = nt.tolerance_radius(d_c, gamma, 1.0)
  rows = nt.index_stability(encode, palette, frames, blur_sigmas=[], noise_stds=[0, 1, 3, 60],
                            seed=0, radius=radius)
  by_std = {row.strength: row for row in rows}
  assert by_std[0].unchanged_fraction == 1.0
  assert by_std[1].covered_frames == 6 and by_std[1].covered_changed == 0
  assert by_std[1].unchanged_fraction == 1.0
  assert by_std[60].covered_frames == 0 and by_std[60].unchanged_fraction < 0.9
  for row in rows[1:]:
    assert row.max_ratio <= 1.0 + 1e-6                      # the identity's Lipschitz constant


def test_analyse_tiny_sovqae():
  model = SOVQAE(channels=(8, 16), num_codes=32, code_dim=8)
  rng = np.random.default_rng(1)
  variables = random_variables(model, jnp.zeros((1, 32, 32, 3)), 0)
  train, held_out = smooth_frames(rng, 6, 32), smooth_frames(rng, 4, 32)
  report = nt.analyse(model, variables["params"], train, held_out, blur_sigmas=[0, 1, 4],
                      noise_stds=[0, 4, 64], seed=0, num_calibration=2, num_iters=0)
  codebook = variables["params"]["quantizer"]["codebook"]
  assert report.d_c == pytest.approx(nt.min_codebook_distance(codebook)[0])
  assert report.radius == pytest.approx(
      (report.d_c - 2 * report.gamma_train) / (2 * report.lipschitz.bound))
  assert report.lipschitz.num_calibration == 2
  assert [(r.kind, r.strength) for r in report.rows] == [
      ("blur", 0), ("blur", 1), ("blur", 4), ("noise", 0), ("noise", 4), ("noise", 64)]
  for kind in ("blur", "noise"):
    rows = [r for r in report.rows if r.kind == kind]
    assert rows[0].unchanged_fraction == 1.0 and rows[0].noise_norm_max == 0.0
    fractions = [r.unchanged_fraction for r in rows]
    norms = [r.noise_norm_mean for r in rows]
    assert fractions[2] < fractions[1] < 1.0 and norms[0] < norms[1] < norms[2]
    assert all(r.max_ratio <= report.lipschitz.bound_loose for r in rows)
  # The JSON-ready form keeps the per-layer factors.
  assert report.to_dict()["lipschitz"]["layers"][0]["name"] == "encoder/conv_in"
