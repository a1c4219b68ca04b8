"""FID: the eigen-decomposition Frechet distance against pytorch-fid's scipy sqrtm route, feature
statistics against np.mean/np.cov, the jitted feature extractor's batching and input checks."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from talking_heads.metrics import fid
from talking_heads.models import inception


def _scipy_reference(mu1, s1, mu2, s2, eps=1e-6):
  """pytorch-fid's calculate_frechet_distance written against scipy.linalg.sqrtm, float64."""
  diff = mu1 - mu2
  covmean = scipy.linalg.sqrtm(s1 @ s2)
  if not np.isfinite(covmean).all():
    offset = np.eye(s1.shape[0]) * eps
    covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
  if np.iscomplexobj(covmean):
    assert np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3)
    covmean = covmean.real
  return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _features(rng, n, d, shift=0.0, scale=1.0, constant_dims=0):
  mix = rng.standard_normal((d, d)) / np.sqrt(d)
  x = scale * np.abs(rng.standard_normal((n, d)) @ mix + shift)     # ReLU-pool-like, >= 0
  if constant_dims:
    x[:, :constant_dims] = 0.5                                     # zero-variance dimensions
  return x


def _stats(x):
  return x.mean(0), np.cov(x, rowvar=False)


CASES = {
    # name: (n1, n2, d, shift2, scale, constant_dims)
    "well_conditioned": (600, 500, 64, 0.3, 1.0, 0),
    "fewer_images_than_dims": (20, 30, 64, 0.2, 1.0, 0),     # rank 19 and 29: near-singular
    "zero_variance_dims": (300, 300, 64, 0.1, 1.0, 8),        # exactly singular covariances
    "large_scale": (300, 200, 32, 0.5, 50.0, 0),
}


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")    # sqrtm on singular products
@pytest.mark.parametrize("case", sorted(CASES))
def test_frechet_distance_matches_scipy_sqrtm(case):
  n1, n2, d, shift, scale, const = CASES[case]
  rng = np.random.default_rng(sorted(CASES).index(case))
  mu1, s1 = _stats(_features(rng, n1, d, 0.0, scale, const))
  mu2, s2 = _stats(_features(rng, n2, d, shift, scale, const))
  ours = fid.frechet_distance(mu1, s1, mu2, s2)
  ref = _scipy_reference(mu1, s1, mu2, s2)
  # FID is a difference of traces: judge the error against their size.
  magnitude = np.trace(s1) + np.trace(s2)
  assert abs(ours - ref) <= 1e-8 * magnitude, (ours, ref)
  assert ours > 0.0


def test_identical_statistics_give_zero():
  mu, s = _stats(_features(np.random.default_rng(0), 200, 32))
  assert abs(fid.frechet_distance(mu, s, mu, s)) <= 1e-12 * np.trace(s)
  # Rank 5 in 128-d: the square roots of rounding-level eigenvalues leave a residue, of the same
  # size as pytorch-fid's sqrtm leaves (about 1e-7 of the trace here).
  mu, s = _stats(_features(np.random.default_rng(1), 6, 128))
  ours = fid.frechet_distance(mu, s, mu, s)
  ref = _scipy_reference(mu, s, mu, s)
  assert abs(ours) <= 1e-6 * np.trace(s) and abs(ref) <= 1e-6 * np.trace(s)


def test_hand_computed_cases():
  # Scalars: (0 - 1)^2 + 4 + 1 - 2 sqrt(4 * 1) = 2.
  assert fid.frechet_distance(0.0, 4.0, 1.0, 1.0) == pytest.approx(2.0, abs=1e-12)
  # Diagonal covariances: |dmu|^2 + sum (sqrt(a) - sqrt(b))^2.
  a, b = np.array([1.0, 4.0, 9.0, 0.0]), np.array([4.0, 4.0, 1.0, 2.0])
  mu1, mu2 = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 2.0, 5.0, 4.0])
  want = 1.0 + 4.0 + (1 - 2) ** 2 + 0 + (3 - 1) ** 2 + (0 - np.sqrt(2)) ** 2
  assert fid.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, abs=1e-12)


def test_singular_product_falls_back_to_eps_on_the_diagonal(monkeypatch, caplog):
  rng = np.random.default_rng(5)
  mu1, s1 = _stats(_features(rng, 40, 16))
  mu2, s2 = _stats(_features(rng, 50, 16, 0.2))
  real = fid._trace_sqrt_product
  calls = []

  def first_attempt_fails(a, b):   # stands in for pytorch-fid's non-finite sqrtm
    calls.append(a.copy())
    return float("inf") if len(calls) == 1 else real(a, b)

  monkeypatch.setattr(fid, "_trace_sqrt_product", first_attempt_fails)
  with caplog.at_level(logging.WARNING):
    ours = fid.frechet_distance(mu1, s1, mu2, s2, eps=1e-3)
  assert "singular product" in caplog.text
  np.testing.assert_allclose(calls[1], s1 + 1e-3 * np.eye(16))
  offset = 1e-3 * np.eye(16)
  covmean = np.real(scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset)))
  want = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
  assert ours == pytest.approx(want, rel=1e-9)


def test_bad_statistics_are_errors():
  eye = np.eye(3)
  with pytest.raises(ValueError, match="Imaginary component"):
    fid.frechet_distance(np.zeros(3), np.diag([1.0, -1.0, 1.0]), np.zeros(3), eye)
  with pytest.raises(ValueError, match="Imaginary component"):
    fid.frechet_distance(np.zeros(3), eye, np.zeros(3), np.diag([1.0, 1.0, -0.5]))
  with pytest.raises(ValueError, match="mu1 .* and mu2 .* differ"):
    fid.frechet_distance(np.zeros(3), eye, np.zeros(2), np.eye(2))
  with pytest.raises(ValueError, match="sigma2"):
    fid.frechet_distance(np.zeros(3), eye, np.zeros(3), np.eye(4))
  with pytest.raises(ValueError, match="sigma1 is not symmetric"):
    fid.frechet_distance(np.zeros(3), np.triu(np.ones((3, 3))), np.zeros(3), eye)
  with pytest.raises(ValueError, match="non-finite"):
    fid.frechet_distance(np.array([0.0, np.nan, 0.0]), eye, np.zeros(3), eye)


def test_streaming_statistics_match_numpy():
  rng = np.random.default_rng(2)
  x = 1e3 + rng.standard_normal((51, 16)) @ rng.standard_normal((16, 16))   # large mean
  stats = fid.FeatureStatistics(16)
  start = 0
  for size in (7, 1, 0, 30, 13):
    stats.update(x[start:start + size])
    start += size
  assert stats.count == 51
  np.testing.assert_allclose(stats.mean, x.mean(0), rtol=1e-13)
  np.testing.assert_allclose(stats.covariance, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-12)
  other = fid.FeatureStatistics(16)
  y = x[:40] * 1.5
  other.update(y)
  assert fid.fid(stats, other) == pytest.approx(_scipy_reference(*_stats(x), *_stats(y)), rel=1e-9)


def test_statistics_errors_and_round_trip(tmp_path):
  stats = fid.FeatureStatistics(4)
  with pytest.raises(ValueError, match="no features"):
    _ = stats.mean
  with pytest.raises(ValueError, match=r"expected features \[N, 4\]"):
    stats.update(np.zeros((3, 5)))
  with pytest.raises(ValueError, match=r"non-finite values \(rows \[1\]\)"):
    stats.update(np.array([[0.0] * 4, [np.inf, 0, 0, 0]]))
  stats.update(np.ones((1, 4)))
  with pytest.raises(ValueError, match="at least 2 feature rows, got 1"):
    _ = stats.covariance
  mu, sigma = np.arange(4.0), np.eye(4) * 2
  fid.save_statistics(tmp_path / "ref.npz", mu, sigma)
  loaded = fid.load_statistics(tmp_path / "ref.npz")
  np.testing.assert_array_equal(loaded[0], mu)
  np.testing.assert_array_equal(loaded[1], sigma)
  np.savez(tmp_path / "bad.npz", mean=mu)
  with pytest.raises(ValueError, match=r"bad\.npz.*lacks \['mu', 'sigma'\]"):
    fid.load_statistics(tmp_path / "bad.npz")


def _random_variables(model, seed=0):
  """He-scaled random weights for every leaf of `model` (tests only; FID proper needs the file)."""
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 75, 75, 3)))
  rng = np.random.default_rng(seed)

  def leaf(path, s):
    name = path[-1].key
    if name == "kernel":
      return (rng.standard_normal(s.shape) * np.sqrt(2.0 / np.prod(s.shape[:-1]))).astype(s.dtype)
    if name in ("var", "scale"):
      return rng.uniform(0.5, 1.5, s.shape).astype(s.dtype)
    return (0.1 * rng.standard_normal(s.shape)).astype(s.dtype)

  return jax.tree_util.tree_map_with_path(leaf, shapes)


def test_extractor_batches_pads_and_streams_statistics():
  model = inception.FIDInceptionV3(resize_input=False)
  extractor = fid.InceptionFeatureExtractor(_random_variables(model), batch_size=4, model=model)
  images = np.random.default_rng(0).integers(0, 256, (6, 75, 75, 3), dtype=np.uint8)
  feats = extractor(images)                                  # batches of 4 + 2 (padded)
  assert feats.shape == (6, 2048) and feats.dtype == np.float32
  assert feats.std() > 0
  # Each image alone (padded with zeros to 4) gives the features it got beside others.
  np.testing.assert_allclose(extractor(images[5:6]), feats[5:6], rtol=1e-5, atol=1e-6)
  # uint8 means ToTensor's /255.
  np.testing.assert_array_equal(extractor(images[:4].astype(np.float32) / 255.0), feats[:4])
  assert extractor(images[:0]).shape == (0, 2048)

  stats = fid.compute_statistics(extractor, [images[:3], images[3:]])
  np.testing.assert_allclose(stats.mean, feats.astype(np.float64).mean(0), rtol=1e-6)
  np.testing.assert_allclose(stats.covariance, np.cov(feats.astype(np.float64), rowvar=False),
                             rtol=1e-6, atol=1e-9)


def test_extractor_rejects_bad_images():
  model = inception.FIDInceptionV3(resize_input=False)
  extractor = fid.InceptionFeatureExtractor(_random_variables(model), batch_size=2, model=model)
  with pytest.raises(ValueError, match=r"in \[0, 1\], got range \[-1"):
    extractor(np.full((1, 75, 75, 3), -1.0, np.float32))
  with pytest.raises(ValueError, match="dtype int32"):
    extractor(np.zeros((1, 75, 75, 3), np.int32))
  with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
    extractor(np.zeros((75, 75, 3), np.uint8))
  with pytest.raises(ValueError, match="batch_size"):
    fid.InceptionFeatureExtractor({}, batch_size=0)
