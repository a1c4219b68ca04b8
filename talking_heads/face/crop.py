"""Face box post-processing, square face crops and feathered paste-back.

Conventions as in ``talking_heads.face.detect``: frames are RGB uint8 ``[H, W, 3]``; a box is
(x0, y0, x1, y1) in full-frame pixels (x1/y1 exclusive); a track is ``[T, 4]`` with NaN rows for
frames without a face. A crop window is the integer square (x0, y0, side) a crop is cut from;
it may reach past the frame borders, where the crop is padded (``border``).

The usual chain, as in Wav2Lip's preprocessing: detector boxes -> ``pad_boxes`` (its ``--pads``
top, bottom, left, right, in source pixels) -> ``smooth_boxes`` (moving average over a few frames)
-> ``crop_face`` (box grown to a square, resized to the target size). ``paste_face`` inverts the
crop, blending a generated crop into the frame with a feathered mask so no box edge shows.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

Pads = tuple[int, int, int, int]


def parse_pads(text: str | Sequence[int]) -> Pads:
  """Parses Wav2Lip-style pads "top,bottom,left,right" (pixels, may be negative)."""
  parts = text.replace(" ", "").split(",") if isinstance(text, str) else list(text)
  try:
    pads = tuple(int(p) for p in parts)
  except ValueError as e:
    raise ValueError(f"pads {text!r}: expected four integers top,bottom,left,right.") from e
  if len(pads) != 4:
    raise ValueError(f"pads {text!r}: expected four integers top,bottom,left,right, "
                     f"got {len(pads)}.")
  return pads  # type: ignore[return-value]


def pad_boxes(boxes: np.ndarray, pads: Pads | str) -> np.ndarray:
  """Grows boxes [..., 4] by (top, bottom, left, right) pixels; no clamping to the frame."""
  top, bottom, left, right = parse_pads(pads)
  return np.asarray(boxes, np.float32) + np.asarray([-left, -top, right, bottom], np.float32)


def smooth_boxes(boxes: np.ndarray, window: int) -> np.ndarray:
  """Centred moving average of a box track [T, 4] over ``window`` frames.

  Runs of found frames are smoothed separately (NaN rows split runs and stay NaN). Near a run's
  ends the window shrinks symmetrically so the average stays centred, avoiding the lag of
  Wav2Lip's forward-looking window.
  """
  boxes = np.asarray(boxes, np.float32)
  if boxes.ndim != 2 or boxes.shape[1] != 4:
    raise ValueError(f"smooth_boxes: expected a box track [T, 4], got shape {boxes.shape}.")
  if window < 1:
    raise ValueError(f"smooth_boxes: window must be >= 1, got {window}.")
  out = boxes.copy()
  if window == 1:
    return out
  valid = np.concatenate([[False], np.all(np.isfinite(boxes), axis=1), [False]])
  edges = np.diff(valid.astype(np.int8))
  lo_half, hi_half = (window - 1) // 2, window // 2
  for s, e in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
    run = boxes[s:e].astype(np.float64)
    csum = np.concatenate([np.zeros((1, 4)), np.cumsum(run, axis=0)])
    for i in range(e - s):
      lo, hi = lo_half, hi_half
      if i < lo or i + hi > e - s - 1:
        lo = hi = min(i, e - s - 1 - i, lo_half, hi_half)
      out[s + i] = (csum[i + hi + 1] - csum[i - lo]) / (lo + hi + 1)
  return out


def landmark_boxes(points: np.ndarray) -> np.ndarray:
  """Boxes [..., 4] (x0, y0, x1, y1) enclosing landmark points [..., P, 2] (x, y), e.g. a
  track's mouth points ``landmarks[:, morphable.MOUTH_INDICES]`` -> the mouth box per frame."""
  points = np.asarray(points, np.float32)
  if points.ndim < 2 or points.shape[-1] != 2 or points.shape[-2] == 0:
    raise ValueError(f"landmark_boxes: expected points [..., P, 2] with P >= 1, got shape "
                     f"{points.shape}.")
  return np.concatenate([points.min(axis=-2), points.max(axis=-2)], axis=-1)


def square_window(box: np.ndarray, scale: float = 1.0) -> tuple[int, int, int]:
  """The integer square (x0, y0, side) centred on ``box``, side = longest box side * scale."""
  box = np.asarray(box, np.float64)
  if box.shape != (4,) or not np.all(np.isfinite(box)):
    raise ValueError(f"square_window: expected a finite box (x0, y0, x1, y1), got {box}.")
  w, h = box[2] - box[0], box[3] - box[1]
  if w <= 0 or h <= 0:
    raise ValueError(f"square_window: box {box.tolist()} is empty.")
  side = max(1, int(round(max(w, h) * scale)))
  cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
  return int(round(cx - side / 2)), int(round(cy - side / 2)), side


def _overlap(window: tuple[int, int, int], height: int,
             width: int) -> tuple[slice, slice, slice, slice]:
  """Slices (frame rows, frame cols, window rows, window cols) of the window inside the frame."""
  x0, y0, side = window
  fx0, fy0 = max(x0, 0), max(y0, 0)
  fx1, fy1 = min(x0 + side, width), min(y0 + side, height)
  if fx1 <= fx0 or fy1 <= fy0:
    raise ValueError(f"Crop window (x0={x0}, y0={y0}, side={side}) lies outside the "
                     f"{width}x{height} frame.")
  return (slice(fy0, fy1), slice(fx0, fx1),
          slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))


def _resize(image: np.ndarray, size: int) -> np.ndarray:
  # INTER_AREA avoids aliasing when shrinking; bilinear is smoother when enlarging.
  interp = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
  return cv2.resize(image, (size, size), interpolation=interp)


def crop_face(frame: np.ndarray, box: np.ndarray, size: int, *, scale: float = 1.0,
              border: str = "edge") -> np.ndarray:
  """Square crop [size, size, 3] of ``frame`` around ``box``.

  The box is grown to a square (``square_window``); parts outside the frame are filled by
  ``border``: "edge" (replicate the border pixels) or "constant" (black).
  """
  frame = np.asarray(frame)
  if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
    raise ValueError(f"crop_face: expected an RGB uint8 frame [H, W, 3], got dtype "
                     f"{frame.dtype} and shape {frame.shape}.")
  if border not in ("edge", "constant"):
    raise ValueError(f"crop_face: border must be 'edge' or 'constant', got {border!r}.")
  window = square_window(box, scale)
  fy, fx, wy, wx = _overlap(window, *frame.shape[:2])
  side = window[2]
  pad = ((wy.start, side - wy.stop), (wx.start, side - wx.stop), (0, 0))
  patch = np.pad(frame[fy, fx], pad, mode=border)
  return _resize(patch, size)


def crop_faces(frames: np.ndarray, boxes: np.ndarray, size: int, *, scale: float = 1.0,
               border: str = "edge") -> np.ndarray:
  """``crop_face`` for every frame: frames [T, H, W, 3], boxes [T, 4] -> [T, size, size, 3]."""
  if len(frames) != len(boxes):
    raise ValueError(f"crop_faces: {len(frames)} frames but {len(boxes)} boxes.")
  out = np.empty((len(frames), size, size, 3), np.uint8)
  for t, (frame, box) in enumerate(zip(frames, boxes)):
    out[t] = crop_face(frame, box, size, scale=scale, border=border)
  return out


def to_crop_coords(points: np.ndarray, box: np.ndarray, size: int, *,
                   scale: float = 1.0) -> np.ndarray:
  """Maps frame pixel coordinates [..., 2] to the coordinates of ``crop_face``'s output."""
  x0, y0, side = square_window(box, scale)
  # Pixel centres sit at integer coordinates: shift by half a pixel around the resampling.
  f = size / side
  return ((np.asarray(points, np.float32) + 0.5 - np.asarray([x0, y0], np.float32)) * f
          - 0.5).astype(np.float32)


def feather_mask(size: int, feather: float = 0.1) -> np.ndarray:
  """Mask [size, size] float32: 1 inside, easing to 0 at the edges over ``feather`` * size
  pixels (smoothstep); ``feather`` = 0 gives a hard box."""
  if not 0.0 <= feather <= 0.5:
    raise ValueError(f"feather must lie in [0, 0.5], got {feather}.")
  if feather == 0.0:
    return np.ones((size, size), np.float32)
  i = np.arange(size, dtype=np.float32) + 0.5
  ramp = np.clip(np.minimum(i, size - i) / (feather * size), 0.0, 1.0)
  ramp = ramp * ramp * (3.0 - 2.0 * ramp)
  return np.outer(ramp, ramp).astype(np.float32)


def paste_face(frame: np.ndarray, crop: np.ndarray, box: np.ndarray, *, scale: float = 1.0,
               feather: float = 0.1, mask: np.ndarray | None = None) -> np.ndarray:
  """Blends ``crop`` [S, S, 3] (e.g. a generated face) back into a copy of ``frame`` at the
  window ``crop_face`` cut it from; ``mask`` [S, S] in [0, 1] overrides the feathered box mask
  (e.g. a lower-face mask for lip sync)."""
  frame = np.asarray(frame)
  crop = np.asarray(crop)
  for name, image in (("frame", frame), ("crop", crop)):
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
      raise ValueError(f"paste_face: expected an RGB uint8 {name} [H, W, 3], got dtype "
                       f"{image.dtype} and shape {image.shape}.")
  size = crop.shape[0]
  if crop.shape[1] != size:
    raise ValueError(f"paste_face: crop must be square, got shape {crop.shape}.")
  if mask is None:
    mask = feather_mask(size, feather)
  elif np.shape(mask) != (size, size):
    raise ValueError(f"paste_face: mask shape {np.shape(mask)} does not match crop {crop.shape}.")
  window = square_window(box, scale)
  side = window[2]
  fy, fx, wy, wx = _overlap(window, *frame.shape[:2])
  face = _resize(crop, side)[wy, wx].astype(np.float32)
  alpha = _resize(np.asarray(mask, np.float32), side)[wy, wx, None]
  out = frame.copy()
  region = out[fy, fx].astype(np.float32)
  out[fy, fx] = np.clip(np.rint(alpha * face + (1.0 - alpha) * region), 0, 255).astype(np.uint8)
  return out
