"""PSNR/SSIM parity with scikit-image and MS-SSIM parity with an independent float64 reference."""

import numpy as np
import pytest
import scipy.signal
import skimage.data
import skimage.filters
import skimage.metrics

from talking_heads.metrics import image


def _pair(seed: int, size: tuple[int, int] = (96, 80), blur: float = 1.0, noise: float = 0.03):
  """A crop of the astronaut and a blurred, noisy copy, float64 in [0, 1] `[H, W, 3]`."""
  rng = np.random.default_rng(seed)
  top, left = rng.integers(0, 512 - size[0]), rng.integers(0, 512 - size[1])
  a = skimage.data.astronaut()[top:top + size[0], left:left + size[1]].astype(np.float64) / 255.0
  b = skimage.filters.gaussian(a, sigma=blur, channel_axis=-1) + noise * rng.standard_normal(a.shape)
  return a, np.clip(b, 0.0, 1.0)


WANG_KWARGS = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)


@pytest.mark.parametrize("settings, kwargs", [(image.SSIM_WANG, WANG_KWARGS), (image.SSIM_SKIMAGE, {})],
                         ids=["wang", "skimage_default"])
def test_ssim_matches_skimage_batched(settings, kwargs):
  pairs = [_pair(seed, blur=blur) for seed, blur in ((0, 0.5), (1, 1.0), (2, 2.0))]
  a = np.stack([p[0] for p in pairs])
  b = np.stack([p[1] for p in pairs])
  ours = np.asarray(image.ssim(a, b, data_range=1.0, settings=settings))
  ref = [skimage.metrics.structural_similarity(x, y, data_range=1.0, channel_axis=-1, **kwargs) for x, y in pairs]
  assert ours.shape == (3,)
  np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)
  # The per-setting wrappers are the same computation.
  wrapper = image.ssim_wang if settings == image.SSIM_WANG else image.ssim_skimage
  np.testing.assert_array_equal(wrapper(a, b, data_range=1.0), ours)


def test_ssim_uint8_and_grey_match_skimage():
  a, b = _pair(3, size=(64, 75))
  au, bu = (np.round(a * 255).astype(np.uint8), np.round(b * 255).astype(np.uint8))
  # uint8 with data_range 255 (scikit-image infers 255 from the dtype).
  np.testing.assert_allclose(image.ssim_skimage(au, bu, data_range=255),
                             skimage.metrics.structural_similarity(au, bu, channel_axis=-1), atol=1e-4)
  grey_a, grey_b = au[..., 1], bu[..., 1]
  ref = skimage.metrics.structural_similarity(grey_a, grey_b, data_range=255, **WANG_KWARGS)
  np.testing.assert_allclose(image.ssim_wang(grey_a[..., None], grey_b[..., None], data_range=255), ref, atol=1e-4)


def test_psnr_matches_skimage():
  pairs = [_pair(seed) for seed in range(3)]
  a = np.stack([p[0] for p in pairs])
  b = np.stack([p[1] for p in pairs])
  ref = [skimage.metrics.peak_signal_noise_ratio(x, y, data_range=1.0) for x, y in pairs]
  np.testing.assert_allclose(image.psnr(a, b, data_range=1.0), ref, atol=1e-4, rtol=0)
  au, bu = np.round(a * 255).astype(np.uint8), np.round(b * 255).astype(np.uint8)
  ref_u8 = [skimage.metrics.peak_signal_noise_ratio(x, y) for x, y in zip(au, bu)]
  np.testing.assert_allclose(image.psnr(au, bu, data_range=255), ref_u8, atol=1e-4, rtol=0)


def test_hand_computed_values_and_leading_dims():
  a = np.zeros((2, 3, 16, 16, 1), np.float32)
  b = a + 0.1  # MSE 0.01 -> 20 dB at data_range 1.
  np.testing.assert_allclose(image.psnr(a, b, data_range=1.0), np.full((2, 3), 20.0), atol=1e-5)
  assert np.all(np.isposinf(image.psnr(a, a, data_range=1.0)))
  x = np.random.default_rng(0).random((2, 3, 16, 16, 1)).astype(np.float32)
  np.testing.assert_allclose(image.ssim(x, x, data_range=1.0), np.ones((2, 3)), atol=1e-6)
  # Constant images: only the luminance term is left, (2 ab + C1) / (a^2 + b^2 + C1).
  c1 = 0.01 ** 2
  expected = (2 * 0.2 * 0.5 + c1) / (0.2 ** 2 + 0.5 ** 2 + c1)
  np.testing.assert_allclose(image.ssim_skimage(np.full((8, 8, 1), 0.2), np.full((8, 8, 1), 0.5), data_range=1.0),
                             expected, rtol=1e-6)


def test_shape_errors():
  with pytest.raises(ValueError, match="differ in shape"):
    image.psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)), data_range=1.0)
  with pytest.raises(ValueError, match="smaller than the 11-pixel"):
    image.ssim_wang(np.zeros((10, 30, 3)), np.zeros((10, 30, 3)), data_range=1.0)
  with pytest.raises(ValueError, match="smaller than the 161-pixel"):
    image.ms_ssim(np.zeros((160, 200, 3)), np.zeros((160, 200, 3)), data_range=1.0)
  with pytest.raises(ValueError, match="odd"):
    image.SsimSettings(window="uniform", size=8)


# --- Independent float64 MS-SSIM reference (pytorch-msssim's definition) ---


def _ref_gauss_2d(size=11, sigma=1.5):
  x = np.arange(size) - size // 2
  g = np.exp(-x ** 2 / (2 * sigma ** 2))
  g /= g.sum()
  return np.outer(g, g)


def _ref_filter(x, window):
  """2-D 'valid' correlation of `[H, W]` with a full (non-separated) window."""
  return scipy.signal.correlate2d(x, window, mode="valid")


def _ref_avg_pool(x):
  """PyTorch avg_pool2d(kernel 2, stride 2, padding = side % 2, count_include_pad=True) on `[H, W]`."""
  ph, pw = x.shape[0] % 2, x.shape[1] % 2
  padded = np.pad(x, ((ph, ph), (pw, pw)))
  out_h = (padded.shape[0] - 2) // 2 + 1
  out_w = (padded.shape[1] - 2) // 2 + 1
  corners = [padded[di:di + 2 * out_h:2, dj:dj + 2 * out_w:2] for di in (0, 1) for dj in (0, 1)]
  return sum(corners) / 4.0


def _ref_ms_ssim(a, b, data_range):
  weights = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
  window = _ref_gauss_2d()
  c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
  per_channel = []
  for ch in range(a.shape[-1]):
    x, y = a[..., ch].astype(np.float64), b[..., ch].astype(np.float64)
    terms = []
    for level in range(5):
      mx, my = _ref_filter(x, window), _ref_filter(y, window)
      sxx = _ref_filter(x * x, window) - mx ** 2
      syy = _ref_filter(y * y, window) - my ** 2
      sxy = _ref_filter(x * y, window) - mx * my
      cs = (2 * sxy + c2) / (sxx + syy + c2)
      if level < 4:
        terms.append(max(cs.mean(), 0.0))
        x, y = _ref_avg_pool(x), _ref_avg_pool(y)
      else:
        terms.append(max(((2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1) * cs).mean(), 0.0))
    per_channel.append(np.prod(np.array(terms) ** weights))
  return float(np.mean(per_channel))


# One shape for every MS-SSIM call (one compilation); 200 x 181 has odd sides at several scales.
MS_SIZE = (200, 181)


@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_ms_ssim_matches_float64_reference(data_range):
  pairs = [_pair(seed, size=MS_SIZE, blur=blur, noise=0.05) for seed, blur in ((4, 1.0), (5, 2.5))]
  a = np.stack([p[0] for p in pairs]) * data_range
  b = np.stack([p[1] for p in pairs]) * data_range
  ours = np.asarray(image.ms_ssim(a, b, data_range=data_range))
  ref = [_ref_ms_ssim(x, y, data_range) for x, y in zip(a, b)]
  assert ours.shape == (2,)
  np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)
  np.testing.assert_allclose(image.ms_ssim(a, a, data_range=data_range), [1.0, 1.0], atol=1e-5)


def test_ms_ssim_relu_clamps_anticorrelated_images():
  a = np.random.default_rng(6).random((2,) + MS_SIZE + (3,))
  # 1 - a is perfectly anti-correlated: every cs term is negative, relu makes the product 0.
  np.testing.assert_array_equal(image.ms_ssim(a, 1.0 - a, data_range=1.0), [0.0, 0.0])
  assert _ref_ms_ssim(a[0], 1.0 - a[0], 1.0) == 0.0
