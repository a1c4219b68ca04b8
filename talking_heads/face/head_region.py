"""The head region of a frame (PIR's mask M_h: face, jaw, ears and hair, not the neck) approximated
from its 68 landmarks, for frames whose renderer did not record it (ingested video, and the
synthetic corpus's photographic identity, whose photo has no painted head layer).

PIR takes its head mask from a face-parsing network, which is not available here.
"""

from __future__ import annotations

import cv2
import numpy as np

from talking_heads.face import morphable

_SUBPIXEL_BITS = 4
_ARC_POINTS = 33


def head_polygon(landmarks: np.ndarray, crown: float = 1.6, margin: float = 0.1) -> np.ndarray:
  """Convex outline [K, 2] of the approximate head region for 68 (x, y) landmarks.

  The convex hull of the landmarks and a half-ellipse over the top of the head: the ellipse is
  centred between the jaw ends (landmarks 0 and 16, at the ears), with half their distance as
  one semi-axis and `crown` times it, pointing away from the chin, as the other (the skull top
  sits about 1.6 half face widths above the ear line on an adult head, hair included). The hull
  keeps every landmark inside when a turned head's far brow sticks out past the jaw ends. The
  outline is then grown by `margin` about the jaw ends' midpoint to take in the ears' and hair's
  edges.
  """
  landmarks = np.asarray(landmarks, np.float64)
  if landmarks.shape != (morphable.NUM_LANDMARKS, 2):
    raise ValueError(f"landmarks must be [68, 2], got {landmarks.shape}")
  if not np.all(np.isfinite(landmarks)):
    raise ValueError("landmarks contain NaN or infinite values")
  jaw = landmarks[list(morphable.JAW)]
  centre = (jaw[0] + jaw[-1]) / 2.0
  half = (jaw[-1] - jaw[0]) / 2.0
  up = np.array([half[1], -half[0]])
  chin = jaw[len(jaw) // 2]
  if np.dot(up, chin - centre) > 0:
    up = -up
  theta = np.linspace(0.0, np.pi, _ARC_POINTS)
  arc = centre + np.cos(theta)[:, None] * half + crown * np.sin(theta)[:, None] * up
  points = np.concatenate([landmarks, arc]).astype(np.float32)
  hull = cv2.convexHull(points)[:, 0].astype(np.float64)
  return centre + (1.0 + margin) * (hull - centre)


def head_mask(landmarks: np.ndarray, height: int, width: int, crown: float = 1.6,
              margin: float = 0.1) -> np.ndarray:
  """float32 [height, width, 1] mask, 1 inside `head_polygon` (filled at 1/16 pixel)."""
  polygon = head_polygon(landmarks, crown, margin)
  points = np.rint(polygon * (1 << _SUBPIXEL_BITS)).astype(np.int32)
  mask = np.zeros((height, width), np.uint8)
  cv2.fillPoly(mask, [points], 1, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
  return mask.astype(np.float32)[..., None]
