"""FFHQ-style face alignment: a similarity transform from eye and mouth landmarks.

FFHQ (Karras et al. 2019, `NVlabs/ffhq-dataset`, `recreate_aligned_images`) aligns a face by an
oriented square ("quad") computed from the iBUG-68 landmarks and resamples that square to the
output size. The quad, from the mean of each eye (36-41, 42-47) and the outer mouth corners
(48, 54):

  eye_avg      = (eye_right_centre + eye_left_centre) / 2       (image left eye first)
  eye_to_eye   = eye_left_centre - eye_right_centre
  eye_to_mouth = (p48 + p54) / 2 - eye_avg
  x = eye_to_eye + turn(eye_to_mouth), scaled to length max(2.0 |eye_to_eye|,
      1.8 |eye_to_mouth|), where turn((u, v)) = (v, -u) sends "down" to "right"
  y = (-x_v, x_u)                          (x turned a quarter towards the chin)
  c = eye_avg + 0.1 eye_to_mouth
  quad = (c - x - y, c - x + y, c + x + y, c + x - y)   top-left, bottom-left, bottom-right,
                                                        top-right corners of the output

so the output's horizontal axis follows x (between the eye line and the perpendicular of the
eye-mouth line), the face's centre c lands at the output centre and the square's side is
2 |x|. FFHQ cuts the quad with shrink/crop/pad steps and a PIL quad transform; geometrically
this is the similarity that sends the quad's corners to the output's corners, which is what
this module computes (`ffhq_matrix`) and applies with OpenCV (`warp_image`). Differences, by
choice: parts of the quad outside the image are filled by reflection (FFHQ reflects and then
blurs the padding), and a large downscale is pre-shrunk by an integer factor with area
averaging, like FFHQ's shrink step, before the bilinear warp.

Conventions as in `talking_heads.face.crop`: (x, y) pixels, x right, y down, pixel centres on
integers (so quad corners map to output coordinates -0.5 and S - 0.5); a transform is a
forward similarity `matrix` [..., 2, 3] from source pixels to aligned pixels, applied to points
by `apply_matrix`; frames are RGB uint8 [H, W, 3].

Temporal smoothing: landmarks jitter from frame to frame on real video, and the mouth corners
move with speech, so `align_frames` averages the landmarks over a centred window (5 frames by
default, as `shared/reference/systems/radio.md` recommends) before computing each frame's
transform.

Dimension legend: T frames, P points, S output side.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from talking_heads.face import crop

NUM_LANDMARKS = 68
RIGHT_EYE = slice(36, 42)  # the subject's right eye: image left
LEFT_EYE = slice(42, 48)
MOUTH_CORNERS = (48, 54)
BORDERS = {"reflect": cv2.BORDER_REFLECT_101, "edge": cv2.BORDER_REPLICATE,
           "constant": cv2.BORDER_CONSTANT}


def _check_landmarks(landmarks: np.ndarray, where: str) -> np.ndarray:
  landmarks = np.asarray(landmarks, np.float64)
  if landmarks.ndim < 2 or landmarks.shape[-2:] != (NUM_LANDMARKS, 2):
    raise ValueError(f"{where}: expected iBUG-68 landmarks [..., 68, 2], got shape "
                     f"{landmarks.shape}")
  if not np.all(np.isfinite(landmarks)):
    raise ValueError(f"{where}: landmarks contain NaN or infinite values")
  return landmarks


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
  """FFHQ's oriented square [..., 4, 2] (top-left, bottom-left, bottom-right, top-right)."""
  landmarks = _check_landmarks(landmarks, "ffhq_quad")
  eye_right = landmarks[..., RIGHT_EYE, :].mean(-2)
  eye_left = landmarks[..., LEFT_EYE, :].mean(-2)
  eye_avg = 0.5 * (eye_right + eye_left)
  eye_to_eye = eye_left - eye_right
  mouth_avg = 0.5 * (landmarks[..., MOUTH_CORNERS[0], :] + landmarks[..., MOUTH_CORNERS[1], :])
  eye_to_mouth = mouth_avg - eye_avg
  x = eye_to_eye + np.stack([eye_to_mouth[..., 1], -eye_to_mouth[..., 0]], -1)
  half_side = np.maximum(2.0 * np.linalg.norm(eye_to_eye, axis=-1),
                         1.8 * np.linalg.norm(eye_to_mouth, axis=-1))
  x = x / np.linalg.norm(x, axis=-1, keepdims=True) * half_side[..., None]
  y = np.stack([-x[..., 1], x[..., 0]], -1)
  c = eye_avg + 0.1 * eye_to_mouth
  return np.stack([c - x - y, c - x + y, c + x + y, c + x - y], -2)


def ffhq_matrix(landmarks: np.ndarray, size: int) -> np.ndarray:
  """Similarity [..., 2, 3] (float64) from source pixels to the S x S FFHQ-aligned crop."""
  if not isinstance(size, (int, np.integer)) or size < 1:
    raise ValueError(f"ffhq_matrix: size must be a positive integer, got {size!r}")
  quad = ffhq_quad(landmarks)
  top_left, top_right = quad[..., 0, :], quad[..., 3, :]
  axis = top_right - top_left  # 2x, the output's horizontal axis
  side_sq = np.sum(axis * axis, -1)
  # Rows map p to ((p - top_left) . axis, (p - top_left) . rot(axis)) * size / |axis|^2.
  a = axis[..., 0] * size / side_sq
  b = axis[..., 1] * size / side_sq
  linear = np.stack([np.stack([a, b], -1), np.stack([-b, a], -1)], -2)
  offset = -np.einsum("...ij,...j->...i", linear, top_left) - 0.5
  return np.concatenate([linear, offset[..., None]], -1)


def apply_matrix(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
  """Points [..., P, 2] mapped by affine `matrix` [..., 2, 3] (float64)."""
  matrix, points = np.asarray(matrix, np.float64), np.asarray(points, np.float64)
  return np.einsum("...ij,...pj->...pi", matrix[..., :2], points) + matrix[..., None, :, 2]


def invert_matrix(matrix: np.ndarray) -> np.ndarray:
  """Inverse [..., 2, 3] of affine `matrix` [..., 2, 3] (aligned pixels -> source pixels)."""
  matrix = np.asarray(matrix, np.float64)
  inverse = np.linalg.inv(matrix[..., :2])
  return np.concatenate([inverse, -np.einsum("...ij,...j->...i", inverse,
                                             matrix[..., 2])[..., None]], -1)


def matrix_scale(matrix: np.ndarray) -> np.ndarray:
  """Scale [...] of similarity `matrix` (aligned pixels per source pixel)."""
  matrix = np.asarray(matrix, np.float64)
  return np.hypot(matrix[..., 0, 0], matrix[..., 1, 0])


def smooth_landmarks(landmarks: np.ndarray, window: int = 5) -> np.ndarray:
  """Centred moving average of a landmark track [T, P, 2] over `window` frames.

  Near the ends the window shrinks symmetrically, so the average stays centred (float64).
  """
  landmarks = np.asarray(landmarks, np.float64)
  if landmarks.ndim != 3 or landmarks.shape[-1] != 2:
    raise ValueError(f"smooth_landmarks: expected a track [T, P, 2], got shape "
                     f"{landmarks.shape}")
  if not isinstance(window, (int, np.integer)) or window < 1:
    raise ValueError(f"smooth_landmarks: window must be a positive integer, got {window!r}")
  num = len(landmarks)
  csum = np.concatenate([np.zeros((1,) + landmarks.shape[1:]), np.cumsum(landmarks, 0)])
  half = np.minimum.reduce([np.full(num, (window - 1) // 2), np.arange(num),
                            num - 1 - np.arange(num)])
  t = np.arange(num)
  width = (2 * half + 1)[:, None, None]
  return (csum[t + half + 1] - csum[t - half]) / width


def warp_image(image: np.ndarray, matrix: np.ndarray, size: int,
               border: str = "reflect") -> np.ndarray:
  """The S x S crop of `image` [H, W, C] under forward similarity `matrix` [2, 3].

  Bilinear; a downscale below 1/2 is first reduced by an integer factor with area averaging
  (against aliasing). `border`: "reflect", "edge" or "constant" (black) outside the image.
  """
  image = np.asarray(image)
  if image.ndim not in (2, 3) or image.shape[0] < 2 or image.shape[1] < 2:
    raise ValueError(f"warp_image: expected an image [H, W] or [H, W, C], got shape "
                     f"{image.shape}")
  if border not in BORDERS:
    raise ValueError(f"warp_image: border must be one of {sorted(BORDERS)}, got {border!r}")
  matrix = np.asarray(matrix, np.float64)
  if matrix.shape != (2, 3) or not np.all(np.isfinite(matrix)):
    raise ValueError(f"warp_image: expected a finite matrix [2, 3], got {matrix.shape}")
  shrink = int(math.floor(0.5 / matrix_scale(matrix))) if matrix_scale(matrix) > 0 else 1
  if shrink > 1:
    height, width = image.shape[:2]
    small = (max(2, round(width / shrink)), max(2, round(height / shrink)))
    image = cv2.resize(image, small, interpolation=cv2.INTER_AREA)
    # Source pixel p of the full image sits at (p + 0.5) * small / full - 0.5 in the small one.
    sx, sy = small[0] / width, small[1] / height
    to_small = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])
    matrix = compose(matrix, invert_matrix(to_small))
  return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,
                        borderMode=BORDERS[border])


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
  """Affine `outer` after `inner`, both [..., 2, 3]."""
  outer, inner = np.asarray(outer, np.float64), np.asarray(inner, np.float64)
  linear = np.einsum("...ij,...jk->...ik", outer[..., :2], inner[..., :2])
  offset = np.einsum("...ij,...j->...i", outer[..., :2], inner[..., 2]) + outer[..., 2]
  return np.concatenate([linear, offset[..., None]], -1)


def align_frames(frames: np.ndarray, landmarks: np.ndarray, size: int, *, smooth: int = 5,
                 border: str = "reflect") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """FFHQ-aligns a video: frames [T, H, W, 3] with landmarks [T, 68, 2] -> S x S crops.

  Each frame's transform comes from the landmarks averaged over `smooth` frames
  (`smooth_landmarks`; 1: none).

  Returns:
    (aligned frames uint8 [T, S, S, 3], aligned landmarks float32 [T, 68, 2] (the frames' own
    landmarks, not the smoothed ones, mapped), matrices float64 [T, 2, 3] source -> aligned).
  """
  frames = np.asarray(frames)
  landmarks = _check_landmarks(landmarks, "align_frames")
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
    raise ValueError(f"align_frames: expected RGB uint8 frames [T, H, W, 3], got "
                     f"{frames.dtype} {frames.shape}")
  if landmarks.ndim != 3 or len(landmarks) != len(frames):
    raise ValueError(f"align_frames: {len(frames)} frames but landmarks of shape "
                     f"{landmarks.shape} (expected [{len(frames)}, 68, 2])")
  matrices = ffhq_matrix(smooth_landmarks(landmarks, smooth), size)
  aligned = np.stack([warp_image(f, m, size, border) for f, m in zip(frames, matrices)])
  return aligned, apply_matrix(matrices, landmarks).astype(np.float32), matrices


def paste_aligned(frame: np.ndarray, face: np.ndarray, matrix: np.ndarray,
                  mask: np.ndarray | None = None, feather: float = 0.1) -> np.ndarray:
  """Blends an aligned face [S, S, 3] back into a copy of `frame` [H, W, 3] (inverse warp).

  `mask` [S, S] in [0, 1] (default: `crop.feather_mask`'s feathered square with `feather`)
  is warped with the face and weights it against the frame.
  """
  frame, face = np.asarray(frame), np.asarray(face)
  for name, image in (("frame", frame), ("face", face)):
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
      raise ValueError(f"paste_aligned: expected an RGB uint8 {name} [H, W, 3], got "
                       f"{image.dtype} {image.shape}")
  size = face.shape[0]
  if face.shape[1] != size:
    raise ValueError(f"paste_aligned: face must be square, got shape {face.shape}")
  if mask is None:
    mask = crop.feather_mask(size, feather)
  elif np.shape(mask) != (size, size):
    raise ValueError(f"paste_aligned: mask shape {np.shape(mask)} does not match face "
                     f"{face.shape}")
  inverse = invert_matrix(matrix)
  height, width = frame.shape[:2]
  warped = cv2.warpAffine(face, inverse, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
  alpha = cv2.warpAffine(np.asarray(mask, np.float32), inverse, (width, height),
                         flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[..., None]
  out = alpha * warped + (1.0 - alpha) * frame.astype(np.float32)
  return np.clip(np.rint(out), 0, 255).astype(np.uint8)
