"""Full-reference image metrics: PSNR, SSIM (two named settings) and MS-SSIM, batched and jitted.

Dimension legend: ... any leading batch dimensions (B images, or B videos x T frames), H height,
W width, C channels (1 for grey), k window taps.

Every function takes two arrays of one shape `[..., H, W, C]` (uint8 or float) and a keyword
`data_range` (255 for uint8 frames, 1 for images in [0, 1]; the metrics never guess it), and returns
one value per image, shape `[...]`, float32. Inside, images are cast to float32; SSIM and MS-SSIM
divide them by `data_range` first (which leaves the value unchanged) and take variances about each
image's mean, which keeps the float32 moments well conditioned.

PSNR: 10 log10(data_range^2 / MSE), MSE over H, W and C (scikit-image's `peak_signal_noise_ratio`);
identical images give +inf.

SSIM (`skimage.metrics.structural_similarity` with `channel_axis=-1`): local means, variances and
covariance from a separable window; C1 = (K1 R)^2, C2 = (K2 R)^2;
S = (2 ux uy + C1)(2 vxy + C2) / ((ux^2 + uy^2 + C1)(vx + vy + C2)); the mean of S over the positions
where the whole window lies inside the image (scikit-image filters the padded image, then crops
(k - 1) // 2 pixels a side: the same positions), then over channels. Two settings:
  `SSIM_WANG`    Wang et al. 2004: 11x11 Gaussian, sigma 1.5, population (weighted) covariance;
                 = scikit-image `gaussian_weights=True, sigma=1.5, use_sample_covariance=False`.
                 (The original MATLAB code also downsamples large images first; this does not.)
  `SSIM_SKIMAGE` scikit-image's defaults: 7x7 uniform window, sample covariance (x 49 / 48).

MS-SSIM (pytorch-msssim `ms_ssim`): 11-tap Gaussian (sigma 1.5) 'valid' filtering, K (0.01, 0.03),
population covariance; for each of the 5 scales the per-channel mean contrast-structure term
cs = (2 vxy + C2) / (vx + vy + C2); between scales 2x2 average pooling, an odd side first padded
with one zero row/column at the top/left (PyTorch `avg_pool2d` padding = side % 2, zeros counted);
result = prod_{l<5} relu(cs_l)^w_l * relu(ssim_5)^w_5 per channel, then the mean over channels,
with w = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333). The smaller side must exceed
(11 - 1) * 2^4 = 160 pixels.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


@dataclasses.dataclass(frozen=True)
class SsimSettings:
  """How SSIM's local statistics are taken.

  Attributes:
    window: "gaussian" (weights exp(-x^2 / (2 sigma^2)), normalised) or "uniform" (box).
    size: k, odd window side in pixels.
    sigma: Gaussian standard deviation in pixels (ignored for "uniform").
    sample_covariance: scale variances and covariance by k^2 / (k^2 - 1) (scikit-image's default).
    k1, k2: stabilising constants, C_i = (k_i * data_range)^2.
  """

  window: Literal["gaussian", "uniform"]
  size: int
  sigma: float = 1.5
  sample_covariance: bool = False
  k1: float = 0.01
  k2: float = 0.03

  def __post_init__(self):
    if self.window not in ("gaussian", "uniform"):
      raise ValueError(f"SsimSettings.window must be 'gaussian' or 'uniform', got {self.window!r}")
    if self.size < 1 or self.size % 2 != 1:
      raise ValueError(f"SsimSettings.size must be a positive odd number, got {self.size}")
    if self.window == "gaussian" and self.sigma <= 0:
      raise ValueError(f"SsimSettings.sigma must be positive, got {self.sigma}")
    if self.k1 < 0 or self.k2 < 0:
      raise ValueError(f"SsimSettings: k1, k2 must be >= 0, got {self.k1}, {self.k2}")

  def taps(self) -> tuple[float, ...]:
    """The normalised 1-D window, k taps."""
    if self.window == "uniform":
      return (1.0 / self.size,) * self.size
    return gaussian_taps(self.size, self.sigma)

  @property
  def covariance_scale(self) -> float:
    n = self.size * self.size
    return n / (n - 1) if self.sample_covariance else 1.0


SSIM_WANG = SsimSettings(window="gaussian", size=11, sigma=1.5, sample_covariance=False)
SSIM_SKIMAGE = SsimSettings(window="uniform", size=7, sample_covariance=True)


def gaussian_taps(size: int, sigma: float) -> tuple[float, ...]:
  """Normalised Gaussian taps centred on tap size // 2 (scipy's and pytorch-msssim's window)."""
  x = np.arange(size, dtype=np.float64) - size // 2
  g = np.exp(-(x * x) / (2.0 * sigma * sigma))
  return tuple(float(v) for v in g / g.sum())


def _check_pair(name: str, a: jax.Array, b: jax.Array, min_side: int) -> None:
  if a.shape != b.shape:
    raise ValueError(f"{name}: images differ in shape, {a.shape} vs {b.shape}")
  if a.ndim < 3:
    raise ValueError(f"{name} expects images [..., H, W, C], got shape {a.shape}")
  if min(a.shape[-3:-1]) < min_side:
    raise ValueError(f"{name}: images of {a.shape[-3]}x{a.shape[-2]} are smaller than the "
                     f"{min_side}-pixel minimum side")


def _normalised(x: jax.Array, data_range: float | jax.Array) -> jax.Array:
  return jnp.asarray(x, jnp.float32) / jnp.asarray(data_range, jnp.float32)


def _filter_valid(x: jax.Array, taps: Sequence[float]) -> jax.Array:
  """Separable 'valid' correlation over H and W: `[N, H, W, C]` -> `[N, H-k+1, W-k+1, C]`."""
  k = len(taps)
  h, w = x.shape[1] - k + 1, x.shape[2] - k + 1
  # Shifted-slice sums: exact float32 arithmetic on every backend (no conv precision modes).
  x = sum(t * x[:, i:i + h] for i, t in enumerate(taps))
  return sum(t * x[:, :, j:j + w] for j, t in enumerate(taps))


def _ssim_terms(x: jax.Array, y: jax.Array, taps: Sequence[float], cov_scale: float,
                k1: float, k2: float) -> tuple[jax.Array, jax.Array]:
  """Per-channel means of the SSIM and contrast-structure maps: `[N, H, W, C]` in [0, 1] -> 2 x `[N, C]`."""
  n = x.shape[0]
  # Variances are shift invariant: taking them about each image's mean avoids float32 cancellation.
  x_centre = jnp.mean(x, axis=(1, 2), keepdims=True)
  y_centre = jnp.mean(y, axis=(1, 2), keepdims=True)
  xc, yc = x - x_centre, y - y_centre
  stats = _filter_valid(jnp.concatenate([xc, yc, xc * xc, yc * yc, xc * yc]), taps)
  mx, my, mxx, myy, mxy = (stats[i * n:(i + 1) * n] for i in range(5))  # [N, H', W', C]
  vx = cov_scale * (mxx - mx * mx)
  vy = cov_scale * (myy - my * my)
  vxy = cov_scale * (mxy - mx * my)
  ux, uy = mx + x_centre, my + y_centre
  c1, c2 = k1 * k1, k2 * k2
  cs_map = (2.0 * vxy + c2) / (vx + vy + c2)
  ssim_map = (2.0 * ux * uy + c1) / (ux * ux + uy * uy + c1) * cs_map
  return jnp.mean(ssim_map, axis=(1, 2)), jnp.mean(cs_map, axis=(1, 2))


def _flatten(a: jax.Array) -> tuple[jax.Array, tuple[int, ...]]:
  return a.reshape((-1,) + a.shape[-3:]), a.shape[:-3]


@jax.jit
def psnr(a: jax.Array, b: jax.Array, *, data_range: float | jax.Array) -> jax.Array:
  """PSNR in dB per image: `[..., H, W, C]` x 2 -> `[...]`; +inf for identical images."""
  a, b = jnp.asarray(a), jnp.asarray(b)
  _check_pair("psnr", a, b, 1)
  diff = a.astype(jnp.float32) - b.astype(jnp.float32)
  mse = jnp.mean(diff * diff, axis=(-3, -2, -1))
  return 10.0 * jnp.log10(jnp.square(jnp.asarray(data_range, jnp.float32)) / mse)


@functools.partial(jax.jit, static_argnames=("settings",))
def ssim(a: jax.Array, b: jax.Array, *, data_range: float | jax.Array,
         settings: SsimSettings = SSIM_WANG) -> jax.Array:
  """Mean SSIM per image under `settings`: `[..., H, W, C]` x 2 -> `[...]`."""
  a, b = jnp.asarray(a), jnp.asarray(b)
  _check_pair("ssim", a, b, settings.size)
  (x, lead), (y, _) = _flatten(_normalised(a, data_range)), _flatten(_normalised(b, data_range))
  per_channel, _ = _ssim_terms(x, y, settings.taps(), settings.covariance_scale, settings.k1, settings.k2)
  return jnp.mean(per_channel, axis=-1).reshape(lead)


def ssim_wang(a: jax.Array, b: jax.Array, *, data_range: float | jax.Array) -> jax.Array:
  """SSIM in Wang et al.'s setting (11x11 Gaussian, sigma 1.5, population covariance): `[...]`."""
  return ssim(a, b, data_range=data_range, settings=SSIM_WANG)


def ssim_skimage(a: jax.Array, b: jax.Array, *, data_range: float | jax.Array) -> jax.Array:
  """SSIM with scikit-image's defaults (7x7 uniform window, sample covariance): `[...]`."""
  return ssim(a, b, data_range=data_range, settings=SSIM_SKIMAGE)


def _avg_pool2(x: jax.Array) -> jax.Array:
  """2x2 average pool `[N, H, W, C]`; an odd side gets one zero row/column in front (counted)."""
  x = jnp.pad(x, ((0, 0), (x.shape[1] % 2, 0), (x.shape[2] % 2, 0), (0, 0)))
  n, h, w, c = x.shape
  return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def min_ms_ssim_side(levels: int = len(MS_SSIM_WEIGHTS), win_size: int = 11) -> int:
  """Smallest image side MS-SSIM accepts (161 for the default 5 scales and 11 taps)."""
  return (win_size - 1) * 2 ** (levels - 1) + 1


@functools.partial(jax.jit, static_argnames=("weights", "win_size", "sigma", "k1", "k2"))
def ms_ssim(a: jax.Array, b: jax.Array, *, data_range: float | jax.Array,
            weights: tuple[float, ...] = MS_SSIM_WEIGHTS, win_size: int = 11, sigma: float = 1.5,
            k1: float = 0.01, k2: float = 0.03) -> jax.Array:
  """MS-SSIM per image as pytorch-msssim computes it: `[..., H, W, C]` x 2 -> `[...]`."""
  a, b = jnp.asarray(a), jnp.asarray(b)
  levels = len(weights)
  if levels < 1:
    raise ValueError("ms_ssim needs at least one scale weight")
  _check_pair("ms_ssim", a, b, min_ms_ssim_side(levels, win_size))
  (x, lead), (y, _) = _flatten(_normalised(a, data_range)), _flatten(_normalised(b, data_range))
  taps = gaussian_taps(win_size, sigma)
  values = []
  for level in range(levels):
    ssim_c, cs_c = _ssim_terms(x, y, taps, 1.0, k1, k2)  # [N, C]
    if level < levels - 1:
      values.append(jax.nn.relu(cs_c))
      x, y = _avg_pool2(x), _avg_pool2(y)
  values.append(jax.nn.relu(ssim_c))
  w = jnp.asarray(weights, jnp.float32)[:, None, None]
  per_channel = jnp.prod(jnp.stack(values) ** w, axis=0)
  return jnp.mean(per_channel, axis=-1).reshape(lead)
