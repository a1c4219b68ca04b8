"""Procedurally generated frames: a dependency-free image source for smoke runs and trainer tests.

Each index deterministically draws a smooth background gradient with a few anti-aliased
ellipses and stripes, so an autoencoder has structure and edges to learn without any files.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class ProceduralFrames:
  """Random-access source of uint8 [S, S, 3] frames; picklable for grain workers."""
  size: int = 32
  length: int = 4096
  seed: int = 0

  def __len__(self) -> int:
    return self.length

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    if not 0 <= index < self.length:
      raise IndexError(f"ProceduralFrames index {index} out of range [0, {self.length}).")
    rng = np.random.default_rng((self.seed, index))
    s = self.size
    yy, xx = np.meshgrid(np.linspace(0, 1, s, dtype=np.float32), np.linspace(0, 1, s, dtype=np.float32),
                         indexing="ij")
    c0, c1 = rng.uniform(0, 1, (2, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    t = (np.cos(angle) * xx + np.sin(angle) * yy)[..., None]
    image = (1 - t) * c0 + t * c1                                   # [S, S, 3]
    for _ in range(rng.integers(1, 4)):
      cy, cx = rng.uniform(0.2, 0.8, 2)
      ry, rx = rng.uniform(0.08, 0.3, 2)
      d = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
      alpha = np.clip((1.0 - d) * s * min(ry, rx) * 0.5, 0.0, 1.0)[..., None]  # soft edge ~1 px
      image = (1 - alpha) * image + alpha * rng.uniform(0, 1, 3).astype(np.float32)
    freq = rng.uniform(4, 12)
    stripes = 0.08 * np.sin(2 * np.pi * freq * (xx if rng.uniform() < 0.5 else yy))[..., None]
    image = np.clip(image + stripes, 0.0, 1.0)
    return {"image": (image * 255.0 + 0.5).astype(np.uint8)}
