"""Run logging: scalars to TensorBoard and `metrics.jsonl`, image grids to TensorBoard and PNG,
and a progress bar with steps/s and ETA. Only process 0 writes."""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Mapping

import imageio.v3 as iio
import jax
import numpy as np
import tqdm
from tensorboardX import SummaryWriter


def image_grid(images: np.ndarray, columns: int | None = None, pad: int = 2) -> np.ndarray:
  """[N, H, W, C] floats in [0, 1] (or uint8) -> one uint8 [rows*H, cols*W, 3] grid."""
  images = np.asarray(images)
  if images.dtype != np.uint8:
    images = (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
  if images.ndim == 3:
    images = images[..., None]
  if images.shape[-1] == 1:
    images = np.repeat(images, 3, axis=-1)
  n, h, w, c = images.shape
  columns = columns or int(math.ceil(math.sqrt(n)))
  rows = int(math.ceil(n / columns))
  grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), 255, np.uint8)
  for i, image in enumerate(images):
    r, col = divmod(i, columns)
    grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + col * (w + pad):pad + col * (w + pad) + w] = image
  return grid


class MetricWriter:
  """Writes scalars and images of a run under `workdir` (process 0 only)."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.active = jax.process_index() == 0
    self._tb = None
    if self.active:
      os.makedirs(os.path.join(workdir, "images"), exist_ok=True)
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    if not self.active:
      return
    values = {k: float(v) for k, v in scalars.items()}
    for key, value in values.items():
      self._tb.add_scalar(key, value, step)
    self._jsonl.write(json.dumps({"step": int(step), "time": time.time(), **values}) + "\n")
    self._jsonl.flush()

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """Each value is a batch [N, H, W, C] in [0, 1]; written as one grid per key (TensorBoard tag
    `images/<key>`: TensorBoard shows a tag under the kind it first saw, so an image sharing a
    scalar's name, e.g. SOVQAE's `reconstruction`, would never appear)."""
    if not self.active:
      return
    for key, batch in images.items():
      grid = image_grid(np.asarray(batch))
      self._tb.add_image(f"images/{key}", grid, step, dataformats="HWC")
      iio.imwrite(os.path.join(self.workdir, "images", f"{key.replace('/', '_')}_{step:08d}.png"), grid)

  def flush(self) -> None:
    if self.active:
      self._tb.flush()

  def close(self) -> None:
    if self.active:
      self._tb.close()
      self._jsonl.close()


class Progress:
  """tqdm bar over steps showing steps/s, ETA and the latest loss (process 0 only)."""

  def __init__(self, total_steps: int, initial_step: int, enabled: bool = True):
    self._bar = tqdm.tqdm(total=total_steps, initial=initial_step, unit="step", dynamic_ncols=True,
                          disable=not (enabled and jax.process_index() == 0), mininterval=1.0)

  def update(self, steps: int, postfix: Mapping[str, float] | None = None) -> None:
    self._bar.update(steps)
    if postfix:
      self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

  @property
  def rate(self) -> float | None:
    return self._bar.format_dict.get("rate")

  def close(self) -> None:
    self._bar.close()
