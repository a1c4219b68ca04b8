"""Random frames with optional degradations, for the VQ autoencoders (LaDTalk, FD2Talk).

Index space: every (clip, frame) pair of the split. Sample (S = image_size or the dataset's):

  image      uint8 [S, S, 3]  the clean frame (reconstruction target)
  degraded   uint8 [S, S, 3]  the degraded input (a copy of image when degradations are off)
  reference  uint8 [S, S, 3]  with reference=True: another random frame of the same clip
                              (FD2Talk fine-tunes its autoencoder on two frames of one video)
  landmarks  float32 [68, 2]  with annotations=True: the frame's iBUG-68 (x, y) in pixels of
                              the S-sized image (`base.rescale_pixels`)
  pose       float32 [6]      with annotations=True: the frame's yaw, pitch, roll (radians),
                              tx, ty, tz (face regressors learn these)
  expression float32 [E]      with annotations=True: the frame's expression parameters (with
                              pose, FD2Talk's motion condition of a frame)
  clip       int32 []         position of the clip in the split (`Dataset.clips(split)`)
  start      int32 []         the frame
  valid      bool  []         eval variant only: False for padding entries

Degradations. LaDTalk treats Wav2Lip's upscaled 96x96 output as a blurred high-quality face and
checks its VQ autoencoder's robustness on Gaussian blur and Gaussian noise applied to a random
region. `Degradations` samples, each with its own probability and in this order: Gaussian blur
(sigma uniform in a range, pixels), down-up scaling (factor uniform in a range; area down,
bilinear up), additive Gaussian noise (std uniform in a range, in uint8 levels); then with
`region_prob` the degraded result is kept only inside a random rectangle (sides uniform
fractions of the image) and the clean frame elsewhere. All in float32, rounded once.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Iterator, Sequence

import cv2
import grain
import numpy as np

from talking_heads.pipelines import base


def _check_range(name: str, value: tuple[float, float], low: float,
                 high: float = math.inf) -> None:
  if len(value) != 2 or not low <= value[0] <= value[1] <= high:
    raise ValueError(f"Degradations.{name} must be (lo, hi) with {low} <= lo <= hi <= {high}, "
                     f"got {value}")


@dataclasses.dataclass(frozen=True)
class Degradations:
  """Probabilities and parameter ranges of the frame degradations (module docstring)."""
  blur_prob: float = 0.5
  blur_sigma: tuple[float, float] = (0.5, 3.0)
  rescale_prob: float = 0.5
  rescale_factor: tuple[float, float] = (1.5, 4.0)
  noise_prob: float = 0.5
  noise_std: tuple[float, float] = (2.0, 20.0)
  region_prob: float = 0.25
  region_size: tuple[float, float] = (0.25, 0.75)

  def __post_init__(self):
    for name in ("blur_prob", "rescale_prob", "noise_prob", "region_prob"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"Degradations.{name} must be in [0, 1], got {getattr(self, name)}")
    _check_range("blur_sigma", self.blur_sigma, 1e-3)
    _check_range("rescale_factor", self.rescale_factor, 1.0)
    _check_range("noise_std", self.noise_std, 0.0)
    _check_range("region_size", self.region_size, 1e-3, 1.0)


@dataclasses.dataclass(frozen=True)
class DegradationParams:
  """One draw of `Degradations`; None where a degradation is not applied.

  Attributes:
    blur_sigma: Gaussian blur sigma in pixels.
    rescale_factor: downscale factor of the down-up scaling.
    noise_std: noise standard deviation in uint8 levels.
    region: (top, left, height, width) of the degraded rectangle.
    noise_seed: seed of the noise field.
  """
  blur_sigma: float | None
  rescale_factor: float | None
  noise_std: float | None
  region: tuple[int, int, int, int] | None
  noise_seed: int


def sample_degradation(config: Degradations, rng: np.random.Generator, height: int,
                       width: int) -> DegradationParams:
  """Draws one set of degradations for a [height, width] image.

  Always draws the same numbers in the same order, so changing one probability leaves the other
  degradations' draws unchanged.
  """
  apply = rng.random(4) < (config.blur_prob, config.rescale_prob, config.noise_prob,
                           config.region_prob)
  sigma = rng.uniform(*config.blur_sigma)
  factor = rng.uniform(*config.rescale_factor)
  std = rng.uniform(*config.noise_std)
  sides = rng.uniform(*config.region_size, size=2)
  corner = rng.random(2)
  noise_seed = int(rng.integers(2**63))
  h = max(1, round(sides[0] * height))
  w = max(1, round(sides[1] * width))
  region = (int(corner[0] * (height - h + 1)), int(corner[1] * (width - w + 1)), h, w)
  return DegradationParams(blur_sigma=float(sigma) if apply[0] else None,
                           rescale_factor=float(factor) if apply[1] else None,
                           noise_std=float(std) if apply[2] else None,
                           region=region if apply[3] else None, noise_seed=noise_seed)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
  """Float32 Gaussian blur of [H, W, C] (kernel radius ceil(3 sigma), mirrored borders)."""
  radius = max(1, math.ceil(3.0 * sigma))
  return cv2.GaussianBlur(np.asarray(image, np.float32), (2 * radius + 1, 2 * radius + 1),
                          sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)


def down_up(image: np.ndarray, factor: float) -> np.ndarray:
  """Float32 [H, W, C] shrunk by `factor` (area) and scaled back up (bilinear)."""
  height, width = image.shape[:2]
  small = cv2.resize(np.asarray(image, np.float32),
                     (max(1, round(width / factor)), max(1, round(height / factor))),
                     interpolation=cv2.INTER_AREA)
  return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR).reshape(image.shape)


def apply_degradation(image: np.ndarray, params: DegradationParams) -> np.ndarray:
  """uint8 [H, W, C] image degraded by `params` (module docstring order)."""
  out = np.asarray(image, np.float32)
  if params.blur_sigma is not None:
    out = gaussian_blur(out, params.blur_sigma).reshape(image.shape)
  if params.rescale_factor is not None:
    out = down_up(out, params.rescale_factor)
  if params.noise_std is not None:
    noise = np.random.default_rng(params.noise_seed).standard_normal(out.shape, np.float32)
    out = out + params.noise_std * noise
  out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
  if params.region is not None:
    top, left, h, w = params.region
    clean = np.array(image, np.uint8)
    clean[top:top + h, left:left + w] = out[top:top + h, left:left + w]
    out = clean
  return out


class FrameSampler(grain.transforms.RandomMap):
  """Index element -> frame sample (module docstring); picklable for grain workers."""

  def __init__(self, reader: base.ClipReader, image_size: int | None,
               degradations: Degradations | None, reference: bool, annotations: bool = False):
    self.reader = reader
    self.image_size = image_size
    self.degradations = degradations
    self.reference = reference
    self.annotations = annotations

  def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    i, frame = int(element["clip"]), int(element["start"])
    frames = self.reader.array(i, "frames")
    image = base.resize_frames(frames[frame], self.image_size)
    if self.degradations is None:
      degraded = image.copy()
    else:
      params = sample_degradation(self.degradations, rng, *image.shape[:2])
      degraded = apply_degradation(image, params)
    out = {"image": image, "degraded": degraded}
    if self.reference:
      num_frames = frames.shape[0]
      other = frame if num_frames == 1 else int(rng.integers(num_frames - 1))
      other += int(num_frames > 1 and other >= frame)
      out["reference"] = base.resize_frames(frames[other], self.image_size)
    if self.annotations:
      scale = image.shape[0] / frames.shape[1]
      landmarks = np.asarray(self.reader.array(i, "landmarks")[frame], np.float32)
      out["landmarks"] = base.rescale_pixels(landmarks, scale).astype(np.float32)
      out["pose"] = np.array(self.reader.array(i, "pose")[frame], np.float32)
      out["expression"] = np.array(self.reader.array(i, "expression")[frame], np.float32)
    out["clip"], out["start"] = element["clip"], element["start"]
    return out


def _build(root: str | os.PathLike, split: str | None, stride: int, image_size: int | None,
           degradations: Degradations | None, reference: bool,
           identities: Sequence[str] | None,
           annotations: bool) -> tuple[base.WindowIndex, FrameSampler]:
  if image_size is not None and image_size < 1:
    raise ValueError(f"image_size must be positive, got {image_size}")
  index, reader = base.frame_index(root, split, stride, identities)
  return index, FrameSampler(reader, image_size, degradations, reference, annotations)


def make_frames_iterator(root: str | os.PathLike, *, batch_size: int, shard_index: int,
                         shard_count: int, seed: int, num_workers: int, split: str | None = "train",
                         image_size: int | None = None, degradations: Degradations | None = None,
                         reference: bool = False, identities: Sequence[str] | None = None,
                         annotations: bool = False,
                         **grain_options: Any) -> grain.DatasetIterator:
  """Shuffled, repeated batches of random frames (module docstring keys, with a leading B).

  Args:
    root: dataset directory.
    batch_size, shard_index, shard_count, seed, num_workers: see `base.build_iterator`.
    split: the split to sample (None: all clips).
    image_size: resize frames to this size (None: the dataset's).
    degradations: how to degrade the input; None for degraded == image.
    reference: also return a second random frame of the same clip.
    identities: only clips of these identities (None: all); e.g. LaDTalk's per-identity SOVQAE.
    annotations: also return the frame's landmarks, pose and expression.
    **grain_options: read_threads, prefetch, worker_buffer_size (`base.build_iterator`).
  """
  index, sampler = _build(root, split, 1, image_size, degradations, reference, identities,
                          annotations)
  return base.build_iterator(index, sampler, batch_size=batch_size, shard_index=shard_index,
                             shard_count=shard_count, seed=seed, num_workers=num_workers,
                             train=True, **grain_options)


def make_frames_eval_iterator(root: str | os.PathLike, *, batch_size: int, shard_index: int,
                              shard_count: int, seed: int, num_workers: int,
                              split: str | None = "val", stride: int = 1,
                              image_size: int | None = None,
                              degradations: Degradations | None = None, reference: bool = False,
                              identities: Sequence[str] | None = None,
                              annotations: bool = False,
                              **grain_options: Any) -> grain.DatasetIterator:
  """One pass over every `stride`-th frame of each clip (of `identities` if given), degradations
  fixed per frame by `seed`."""
  index, sampler = _build(root, split, stride, image_size, degradations, reference, identities,
                          annotations)
  return base.build_iterator(index, sampler, batch_size=batch_size, shard_index=shard_index,
                             shard_count=shard_count, seed=seed, num_workers=num_workers,
                             train=False, **grain_options)


def image_eval_batches(data: Any, batch_size: int, shard_index: int, shard_count: int,
                       identities: Sequence[str] | None = None) -> Iterator[dict[str, np.ndarray]]:
  """{"image", "valid"} batches of every `data.eval_stride`-th frame of `data.eval_split`.

  `data` is a stage's data config (root, eval_split, eval_stride, eval_seed, image_size).
  """
  it = make_frames_eval_iterator(
      data.root, batch_size=batch_size, shard_index=shard_index, shard_count=shard_count,
      seed=data.eval_seed, num_workers=0, split=data.eval_split, stride=data.eval_stride,
      image_size=data.image_size, identities=identities)
  yield from ({"image": b["image"], "valid": b["valid"]} for b in it)
