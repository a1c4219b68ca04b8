"""The noise tolerance of a VQ autoencoder (LaDTalk Sec. 3, Theorem 3.3, App. E), measured.

Dimension legend: F frames, S image size, h, w latent size, c code width, N codes, M latent vectors.

Theorem 3.3: for an encoder with Lipschitz constant L_eps, a codebook with minimal pairwise
distance d_C and training latents at most gamma from their nearest code, every perturbation N of a
training image with ||N||_F < r = (d_C - 2 gamma) / (2 L_eps) leaves every code index unchanged.
`analyse` computes
  d_C        min_{i != j} ||c_i - c_j||_2 over the codebook (`min_codebook_distance`);
  gamma      max over the given training frames' latent vectors of the distance to their nearest
             code (`latent_gamma`); the same over the evaluated frames is reported beside it, since
             the theorem speaks of training images only;
  L_eps      `lipschitz.encoder_lipschitz_bound` with the evaluated frames as calibration images
             (its `bound`, local; `bound_loose` gives a second radius);
  r          `tolerance_radius`; negative when gamma > d_C / 2, i.e. some training latent lies
             farther from its code than half the closest code spacing: then the theorem certifies no
             perturbation at all, however small, and the measured fractions below are all there is;
and, empirically, on the evaluated frames degraded by Gaussian blur (sigma in pixels,
`pipelines.frames.gaussian_blur`) and by Gaussian noise (std in uint8 levels), each rounded and
clipped to uint8 like a real degraded frame (`pipelines.frames.apply_degradation`): the fraction
of code indices (each latent's nearest code in float64: the quantizer's float32 argmin up to exact
ties) unchanged, the fraction of frames with every index unchanged, ||N||_F of each
perturbation in the encoder's input units (images in [-1, 1], so ||N||_F = ||uint8 difference||_F
/ 127.5) to set against r, the latent shift ||E(x + N) - E(x)||_F and its largest ratio to ||N||_F
(a measured lower bound on the local Lipschitz constant), and, when r > 0, how many frames the
theorem covers and whether any covered frame changed an index (it should not).

Strength 0 means the clean frame (fraction 1 by construction).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from talking_heads.analysis import lipschitz
from talking_heads.pipelines import frames as frames_pipeline
from talking_heads.systems.images import to_model_range

KINDS = ("blur", "noise")
# Latent vectors per chunk of the nearest-code search (bounds the [M, N] distance matrix).
_CHUNK = 4096


def _model_range(images: np.ndarray) -> np.ndarray:
  """uint8 frames -> float32 in [-1, 1] on the host (the SOVQAE stage's own conversion)."""
  return np.asarray(to_model_range(np.asarray(images)))


def min_codebook_distance(codebook: Any) -> tuple[float, tuple[int, int]]:
  """(d_C, (i, j)), i < j: the smallest distance between two codes of [N, c], in float64."""
  c = np.asarray(codebook, np.float64)
  if c.ndim != 2 or c.shape[0] < 2:
    raise ValueError(f"codebook must be [N, c] with N >= 2, got shape {c.shape}")
  norms = np.sum(c * c, axis=1)
  columns = np.arange(c.shape[0])
  best, pair = math.inf, (0, 1)
  for start in range(0, c.shape[0], _CHUNK):
    rows = np.arange(start, min(start + _CHUNK, c.shape[0]))
    d2 = norms[rows, None] + norms[None] - 2.0 * c[rows] @ c.T          # [r, N]
    d2[columns[None] <= rows[:, None]] = np.inf                          # pairs i < j only
    i, j = np.unravel_index(int(np.argmin(d2)), d2.shape)
    if d2[i, j] < best:
      best, pair = float(d2[i, j]), (int(rows[i]), int(j))
  # The expanded form loses digits for close codes: the winner's distance from its difference.
  return float(np.linalg.norm(c[pair[0]] - c[pair[1]])), pair


def nearest_codes(latents: Any, codebook: Any) -> tuple[np.ndarray, np.ndarray]:
  """(indices [...], distances [...]) of each latent vector [..., c]'s nearest code, in float64."""
  z = np.asarray(latents, np.float64)
  c = np.asarray(codebook, np.float64)
  if c.ndim != 2 or z.shape[-1:] != c.shape[1:]:
    raise ValueError(f"latents [..., c] and codebook [N, c] disagree: {z.shape} vs {c.shape}")
  flat = z.reshape(-1, c.shape[1])                                         # [M, c]
  norms = np.sum(c * c, axis=1)
  indices = np.empty(flat.shape[0], np.int64)
  distances = np.empty(flat.shape[0], np.float64)
  for start in range(0, flat.shape[0], _CHUNK):
    block = flat[start:start + _CHUNK]
    d2 = np.sum(block * block, axis=1)[:, None] + norms[None] - 2.0 * block @ c.T
    best = np.argmin(d2, axis=1)
    indices[start:start + len(block)] = best
    distances[start:start + len(block)] = np.linalg.norm(block - c[best], axis=1)
  return indices.reshape(z.shape[:-1]), distances.reshape(z.shape[:-1])


def latent_gamma(latents: Any, codebook: Any) -> float:
  """gamma = the largest distance of a latent vector [..., c] to its nearest code."""
  return float(nearest_codes(latents, codebook)[1].max())


def tolerance_radius(d_c: float, gamma: float, lipschitz_constant: float) -> float:
  """(d_C - 2 gamma) / (2 L_eps): perturbations of a training image below this norm keep every
  code index (Theorem 3.3); negative when gamma > d_C / 2 (nothing is certified)."""
  if not lipschitz_constant > 0:
    raise ValueError(f"the Lipschitz constant must be positive, got {lipschitz_constant}")
  return (d_c - 2.0 * gamma) / (2.0 * lipschitz_constant)


def degrade(images: np.ndarray, kind: str, strength: float, seed: int) -> np.ndarray:
  """uint8 [F, S, S, 3] frames blurred (sigma, pixels) or noised (std, uint8 levels) whole, rounded
  and clipped to uint8; strength 0 returns them unchanged. Noise fields are drawn per frame from
  `seed`."""
  if kind not in KINDS:
    raise ValueError(f"degradation kind must be one of {KINDS}, got {kind!r}")
  if strength < 0:
    raise ValueError(f"{kind} strength must be >= 0, got {strength}")
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4:
    raise ValueError(f"images must be uint8 [F, S, S, 3], got {images.dtype} {images.shape}")
  if strength == 0:
    return images.copy()
  seeds = np.random.default_rng(seed).integers(2**63, size=len(images))
  out = []
  for image, noise_seed in zip(images, seeds):
    params = frames_pipeline.DegradationParams(
        blur_sigma=strength if kind == "blur" else None, rescale_factor=None,
        noise_std=strength if kind == "noise" else None, region=None, noise_seed=int(noise_seed))
    out.append(frames_pipeline.apply_degradation(image, params))
  return np.stack(out)


def encode_frames(encode: Callable[[jax.Array], jax.Array], images: np.ndarray,
                  batch_size: int = 16) -> np.ndarray:
  """uint8 [F, S, S, 3] -> latents z_e [F, h, w, c] (float32), `batch_size` frames per call."""
  if len(images) == 0:
    raise ValueError("encode_frames: no frames")
  parts = [np.asarray(encode(jnp.asarray(_model_range(images[i:i + batch_size]))))
           for i in range(0, len(images), batch_size)]
  return np.concatenate(parts)


@dataclasses.dataclass(frozen=True)
class StabilityRow:
  """Code-index stability under one degradation strength (module docstring).

  Attributes:
    kind: "blur" or "noise".
    strength: blur sigma (pixels) or noise std (uint8 levels).
    unchanged_fraction: fraction of latent positions whose code index is unchanged.
    frames_unchanged_fraction: fraction of frames with every index unchanged.
    noise_norm_mean, noise_norm_min, noise_norm_max: ||N||_F per frame, encoder input units.
    latent_shift_mean: mean ||E(x + N) - E(x)||_F.
    max_ratio: largest ||E(x + N) - E(x)||_F / ||N||_F (0 when N = 0).
    covered_frames: frames with ||N||_F < radius (0 when the radius is not positive).
    covered_changed: covered frames with a changed index (Theorem 3.3 says none).
  """
  kind: str
  strength: float
  unchanged_fraction: float
  frames_unchanged_fraction: float
  noise_norm_mean: float
  noise_norm_min: float
  noise_norm_max: float
  latent_shift_mean: float
  max_ratio: float
  covered_frames: int
  covered_changed: int


def index_stability(encode: Callable[[jax.Array], jax.Array], codebook: Any, images: np.ndarray,
                    blur_sigmas: Sequence[float], noise_stds: Sequence[float], seed: int,
                    radius: float = 0.0, batch_size: int = 16) -> list[StabilityRow]:
  """One `StabilityRow` per blur sigma, then per noise std (module docstring)."""
  clean_latents = encode_frames(encode, images, batch_size)
  clean_indices, _ = nearest_codes(clean_latents, codebook)
  clean_x = _model_range(images)
  rows = []
  for kind, strengths in (("blur", blur_sigmas), ("noise", noise_stds)):
    for i, strength in enumerate(strengths):
      degraded = degrade(images, kind, float(strength), seed=seed + i)
      latents = encode_frames(encode, degraded, batch_size)
      indices, _ = nearest_codes(latents, codebook)
      same = (indices == clean_indices).reshape(len(images), -1)              # [F, h w]
      noise = np.sqrt(np.sum((_model_range(degraded) - clean_x).astype(np.float64) ** 2,
                             axis=(1, 2, 3)))                                 # [F]
      shift = np.sqrt(np.sum((latents - clean_latents).astype(np.float64) ** 2, axis=(1, 2, 3)))
      ratio = np.where(noise > 0, shift / np.where(noise > 0, noise, 1.0), 0.0)
      covered = noise < radius
      rows.append(StabilityRow(
          kind=kind, strength=float(strength), unchanged_fraction=float(same.mean()),
          frames_unchanged_fraction=float(same.all(axis=1).mean()),
          noise_norm_mean=float(noise.mean()), noise_norm_min=float(noise.min()),
          noise_norm_max=float(noise.max()), latent_shift_mean=float(shift.mean()),
          max_ratio=float(ratio.max()), covered_frames=int(covered.sum()),
          covered_changed=int((covered & ~same.all(axis=1)).sum())))
  return rows


@dataclasses.dataclass(frozen=True)
class NoiseToleranceReport:
  """Everything `analyse` measures (module docstring).

  Attributes:
    d_c: minimal code distance; closest_pair: its codes.
    gamma_train: largest training-latent distance to the nearest code; gamma_train_mean: the mean.
    gamma_eval: the largest over the evaluated frames.
    lipschitz: the encoder bound (calibrated on the evaluated frames).
    radius: (d_C - 2 gamma_train) / (2 L_eps) with the local bound; radius_loose with the loose one.
    rows: index stability per degradation.
    num_train_frames, num_eval_frames: frames behind gamma_train and the rows.
    seed: seed of the noise fields.
  """
  d_c: float
  closest_pair: tuple[int, int]
  gamma_train: float
  gamma_train_mean: float
  gamma_eval: float
  lipschitz: lipschitz.LipschitzReport
  radius: float
  radius_loose: float
  rows: tuple[StabilityRow, ...]
  num_train_frames: int
  num_eval_frames: int
  seed: int

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def analyse(model: Any, params: Any, train_images: np.ndarray, eval_images: np.ndarray, *,
            blur_sigmas: Sequence[float], noise_stds: Sequence[float], seed: int = 0,
            num_calibration: int = 8, num_iters: int = 100, batch_size: int = 16
            ) -> NoiseToleranceReport:
  """The noise-tolerance analysis of a VQ autoencoder (module docstring).

  Args:
    model: a module with `encode` (images in [-1, 1] -> z_e) and a `quantizer` holding the
      `codebook` parameter [N, c], e.g. `models.vq.SOVQAE`.
    params: its parameters.
    train_images: uint8 [F_train, S, S, 3] training frames (gamma).
    eval_images: uint8 [F, S, S, 3] frames to degrade; the first `num_calibration` calibrate the
      Lipschitz bound.
    blur_sigmas: Gaussian blur sigmas in pixels (0: clean).
    noise_stds: Gaussian noise stds in uint8 levels (0: clean).
    seed: seed of the noise fields and the power iterations.
    num_calibration: calibration frames of the bound.
    num_iters: power iterations per convolution (the check beside the certified norms).
    batch_size: frames per encoder call.
  """
  codebook = np.asarray(params["quantizer"]["codebook"], np.float64)
  encode = jax.jit(lambda x: model.apply({"params": params}, x, method="encode"))
  d_c, pair = min_codebook_distance(codebook)
  _, train_distances = nearest_codes(encode_frames(encode, train_images, batch_size), codebook)
  gamma_eval = latent_gamma(encode_frames(encode, eval_images, batch_size), codebook)
  calibration = _model_range(eval_images[:max(1, num_calibration)])
  bound = lipschitz.encoder_lipschitz_bound(model, {"params": params}, calibration,
                                            method="encode", num_iters=num_iters,
                                            rng=jax.random.PRNGKey(seed))
  gamma = float(train_distances.max())
  radius = tolerance_radius(d_c, gamma, bound.bound)
  rows = index_stability(encode, codebook, eval_images, blur_sigmas, noise_stds, seed,
                         radius=radius, batch_size=batch_size)
  return NoiseToleranceReport(
      d_c=d_c, closest_pair=pair, gamma_train=gamma, gamma_train_mean=float(train_distances.mean()),
      gamma_eval=gamma_eval, lipschitz=bound, radius=radius,
      radius_loose=tolerance_radius(d_c, gamma, bound.bound_loose), rows=tuple(rows),
      num_train_frames=int(len(train_images)), num_eval_frames=int(len(eval_images)), seed=seed)
