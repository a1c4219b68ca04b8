"""A small hand-built morphable face model over the 68 iBUG landmarks.

The model is linear, like a 3DMM restricted to its 68 landmark vertices:

  S = S_mean + B_id . alpha + B_exp . beta          S: [68, 3]

with an identity basis (alpha ~ N(0, 1) gives plausible faces) and a named
expression basis (beta roughly in [0, 1], 1 = the full action).

Units and axes. Model coordinates are millimetres in a head frame aligned with
the OpenCV camera frame at zero pose: x to the image right (the subject's
left), y down, z away from the camera (into the head). The origin is the
centre of the head at the level of the eye corners, so the face surface has
z < 0 and yaw turns the head about its own vertical axis.

Landmark order is iBUG-68: 0-16 jaw line, 17-21 right brow, 22-26 left brow,
27-30 nose bridge, 31-35 nostrils, 36-41 right eye, 42-47 left eye, 48-59
outer lips, 60-67 inner lips; "right" is the subject's right (image left).

Pose is a vector [6] = (yaw, pitch, roll, tx, ty, tz): radians and
millimetres. Camera points are X_cam = R(yaw, pitch, roll) @ X + t with
R = R_y(yaw) @ R_x(pitch) @ R_z(roll) (right-handed rotations about the
camera axes). At zero pose, positive yaw turns the nose towards the image
left (the subject turns to their right), positive pitch tilts the face down
and positive roll turns the face clockwise in the image. K is an OpenCV
pinhole matrix in pixels; pixel centres sit at integer coordinates.

Every geometry function works on numpy or jax arrays: if any array argument
is a jax array (or tracer) the computation uses jax.numpy (jit/vmap/grad
friendly), otherwise numpy. Leading dimensions broadcast.
"""

from __future__ import annotations

import dataclasses
import functools
from types import ModuleType
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

ArrayLike = Any

NUM_LANDMARKS = 68

JAW = tuple(range(0, 17))
RIGHT_BROW = tuple(range(17, 22))
LEFT_BROW = tuple(range(22, 27))
NOSE_BRIDGE = tuple(range(27, 31))
NOSTRILS = tuple(range(31, 36))
RIGHT_EYE = tuple(range(36, 42))
LEFT_EYE = tuple(range(42, 48))
OUTER_LIPS = tuple(range(48, 60))
INNER_LIPS = tuple(range(60, 68))
MOUTH_INDICES = tuple(range(48, 68))

# Upper/lower eyelid landmark pairs (upper, lower) and the eye corners.
RIGHT_EYELID_PAIRS = ((37, 41), (38, 40))
LEFT_EYELID_PAIRS = ((43, 47), (44, 46))
RIGHT_EYE_CORNERS = (36, 39)  # outer, inner
LEFT_EYE_CORNERS = (45, 42)  # outer, inner
# Upper/lower inner-lip pairs, right to left.
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))

# Index of each landmark's mirror image across the face's midline.
MIRROR = np.array(
    list(range(16, -1, -1))  # jaw
    + list(range(26, 16, -1))  # brows
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # nostrils
    + [45, 44, 43, 42, 47, 46]  # right eye <- left eye
    + [39, 38, 37, 36, 41, 40]  # left eye <- right eye
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65],  # inner lips
    dtype=np.int32)

EXPRESSION_NAMES = ("jaw_open", "lip_spread", "lip_round", "lip_press",
                    "smile", "upper_lip_raise", "brow_raise", "blink_left",
                    "blink_right")

IDENTITY_NAMES = ("face_width", "jaw_width", "cheek_fullness", "face_length",
                  "chin_projection", "nose_length", "nose_width",
                  "nose_projection", "eye_spacing", "eye_size", "eye_tilt",
                  "brow_height", "lip_thickness", "mouth_width",
                  "mouth_height")

# Default camera: focal length as a multiple of the image width (about 28
# degrees horizontal field of view) and the neutral head's pose under it.
FOCAL_PER_WIDTH = 2.0
_DEFAULT_POSE = (0.0, 0.0, 0.0, 0.0, -29.0, 576.0)


@dataclasses.dataclass(frozen=True, eq=False)
class MorphableModel:
  """A linear landmark face model (millimetres, see the module docstring).

  Attributes:
    mean: [68, 3] neutral mean face.
    id_basis: [A, 68, 3] displacement of each landmark per unit of alpha.
    exp_basis: [E, 68, 3] displacement per unit of beta (1 = full action).
    id_names: A names of the identity components.
    exp_names: E names of the expression components.
  """
  mean: np.ndarray
  id_basis: np.ndarray
  exp_basis: np.ndarray
  id_names: tuple[str, ...]
  exp_names: tuple[str, ...]

  def __post_init__(self):
    if self.mean.shape != (NUM_LANDMARKS, 3):
      raise ValueError(f"MorphableModel.mean must be [68, 3], got "
                       f"{self.mean.shape}")
    for field, basis, names in (("id_basis", self.id_basis, self.id_names),
                                ("exp_basis", self.exp_basis, self.exp_names)):
      if basis.ndim != 3 or basis.shape[1:] != (NUM_LANDMARKS, 3):
        raise ValueError(f"MorphableModel.{field} must be [K, 68, 3], got "
                         f"{basis.shape}")
      if len(names) != basis.shape[0]:
        raise ValueError(f"MorphableModel.{field} has {basis.shape[0]} "
                         f"components but {len(names)} names")

  @property
  def num_identity(self) -> int:
    return self.id_basis.shape[0]

  @property
  def num_expression(self) -> int:
    return self.exp_basis.shape[0]


def _xp(*arrays: ArrayLike) -> ModuleType:
  """jax.numpy if any argument is a jax array or tracer, else numpy."""
  return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def _asarray(xp: ModuleType, x: ArrayLike) -> ArrayLike:
  if xp is np:
    # A copy, so results never alias the model's read-only arrays.
    return np.array(x, dtype=np.float64)
  return jnp.asarray(x, dtype=jnp.result_type(float))


def _check_last(name: str, x: ArrayLike, size: int) -> None:
  if x.ndim < 1 or x.shape[-1] != size:
    raise ValueError(f"{name} must have last dimension {size}, got shape "
                     f"{tuple(x.shape)}")


# ----------------------------------------------------------------------------
# The hand-built model.
# ----------------------------------------------------------------------------

# Right-half and midline landmarks of the neutral face (x <= 0). The jaw line
# is generated below; the left half is mirrored.
_MEAN_RIGHT = {
    # Right brow, outer (17) to inner (21).
    17: (-52.0, -15.0, -66.0), 18: (-44.0, -22.0, -76.0),
    19: (-34.0, -25.0, -82.0), 20: (-24.0, -24.0, -86.0),
    21: (-14.0, -20.0, -87.0),
    # Nose bridge, nasion (27) to tip (30).
    27: (0.0, -4.0, -84.0), 28: (0.0, 10.0, -92.0), 29: (0.0, 24.0, -100.0),
    30: (0.0, 38.0, -110.0),
    # Nostrils, right alar base (31) to subnasale (33).
    31: (-15.0, 46.0, -91.0), 32: (-8.0, 49.0, -97.0), 33: (0.0, 51.0, -99.0),
    # Right eye: outer corner, upper lid x2, inner corner, lower lid x2.
    36: (-46.0, 0.0, -68.0), 37: (-38.0, -4.5, -76.0),
    38: (-26.0, -4.5, -79.0), 39: (-17.0, 0.0, -80.0),
    40: (-26.0, 4.0, -78.0), 41: (-38.0, 4.0, -75.0),
    # Outer lips: right corner, upper lip to its centre; lower lip centre and
    # its right half.
    48: (-25.0, 71.0, -82.0), 49: (-16.0, 65.0, -89.0),
    50: (-6.0, 62.0, -95.0), 51: (0.0, 63.0, -96.0),
    57: (0.0, 82.0, -93.0), 58: (-7.0, 81.0, -92.0), 59: (-16.0, 78.0, -89.0),
    # Inner lips, closed: the upper (61, 62) and lower (67, 66) rims touch.
    60: (-21.0, 71.0, -84.0), 61: (-9.0, 70.6, -90.0), 62: (0.0, 70.6, -91.0),
    66: (0.0, 70.6, -91.0), 67: (-9.0, 70.6, -90.0),
}


def _jaw_line() -> np.ndarray:
  """[17, 3] jaw contour: a squarish U from ear level round the chin."""
  theta = np.pi * np.arange(17) / 16.0
  c, s = np.cos(theta), np.sin(theta)
  x = -70.0 * np.sign(c) * np.abs(c)**0.8
  x[8] = 0.0  # cos(pi / 2) is not exactly zero in floating point.
  y = 2.0 + 106.0 * s
  z = -20.0 - 68.0 * s**1.5
  return np.stack([x, y, z], axis=-1)


def _symmetric(right: Mapping[int, Sequence[float]]) -> np.ndarray:
  """[68, 3] field from its right-half/midline entries, mirrored (x -> -x).

  Missing landmarks get zero. Midline landmarks are their own mirror, so
  their x entry must be zero.
  """
  field = np.zeros((NUM_LANDMARKS, 3))
  for i, v in right.items():
    v = np.asarray(v, dtype=np.float64)
    j = MIRROR[i]
    if j == i and v[0] != 0.0:
      raise ValueError(f"midline landmark {i} needs x = 0, got {v[0]}")
    field[i] = v
    field[j] = v * np.array([-1.0, 1.0, 1.0])
  return field


def _mean_shape() -> np.ndarray:
  jaw = _jaw_line()
  right = dict(_MEAN_RIGHT)
  right.update({i: jaw[i] for i in range(9)})
  return _symmetric(right)


def _identity_basis(mean: np.ndarray) -> np.ndarray:
  """[A, 68, 3] identity components, one standard deviation each (mm)."""
  jaw = np.arange(17)
  fields = {}

  # Overall face width: the jaw line and outer brows scale in x.
  f = np.zeros((NUM_LANDMARKS, 3))
  f[jaw, 0] = 0.07 * mean[jaw, 0]
  f[[17, 18, 25, 26], 0] = 0.03 * mean[[17, 18, 25, 26], 0]
  fields["face_width"] = f
  # Lower jaw width (square vs. pointed jaw): peaks at the jaw angle.
  w = np.sin(np.pi * jaw / 16.0)**2 * np.abs(np.cos(np.pi * jaw / 16.0))
  f = np.zeros((NUM_LANDMARKS, 3))
  f[jaw, 0] = 6.0 * np.sign(mean[jaw, 0]) * w / w.max()
  fields["jaw_width"] = f
  # Cheek fullness: the upper jaw contour bulges out and forward.
  w = np.exp(-0.5 * ((np.minimum(jaw, 16 - jaw) - 2.0) / 1.2)**2)
  w[8] = 0.0
  f = np.zeros((NUM_LANDMARKS, 3))
  f[jaw, 0] = 4.0 * np.sign(mean[jaw, 0]) * w
  f[jaw, 2] = -2.0 * w
  fields["cheek_fullness"] = f
  # Lower face length: everything below the nose stretches down.
  fields["face_length"] = np.stack(
      [np.zeros(68), 0.09 * np.maximum(mean[:, 1] - 45.0, 0.0),
       np.zeros(68)], axis=-1)
  # Chin projection: the chin comes forward and slightly down.
  w = np.exp(-0.5 * ((jaw - 8.0) / 1.5)**2)
  f = np.zeros((NUM_LANDMARKS, 3))
  f[jaw, 1] = 1.5 * w
  f[jaw, 2] = -5.0 * w
  fields["chin_projection"] = f
  fields["nose_length"] = _symmetric({
      28: (0, 1.0, 0), 29: (0, 2.0, 0), 30: (0, 3.2, 0),
      31: (0, 2.5, 0), 32: (0, 2.8, 0), 33: (0, 2.8, 0)})
  fields["nose_width"] = _symmetric({31: (-3.0, 0, 0), 32: (-1.5, 0, 0)})
  fields["nose_projection"] = _symmetric({
      28: (0, 0, -1.0), 29: (0, 0, -2.5), 30: (0, -0.5, -4.5),
      31: (0, 0, -1.0), 32: (0, 0, -2.5), 33: (0, 0, -2.5)})
  eye = {i: (-2.5, 0, 0) for i in range(36, 42)}
  eye.update({17: (-1.0, 0, 0), 18: (-1.0, 0, 0), 19: (-1.2, 0, 0),
              20: (-1.4, 0, 0), 21: (-1.5, 0, 0)})
  fields["eye_spacing"] = _symmetric(eye)
  # Eye size scales each eye's width about its centre; lid pairs share x, so
  # a full blink still closes every identity's eyes.
  centre = -31.5
  fields["eye_size"] = _symmetric(
      {i: (0.12 * (mean[i, 0] - centre), 0, 0) for i in range(36, 42)})
  fields["eye_tilt"] = _symmetric({36: (0, -2.0, 0), 39: (0, 0.8, 0)})
  fields["brow_height"] = _symmetric({i: (0, -3.5, 0) for i in range(17, 22)})
  fields["lip_thickness"] = _symmetric({
      49: (0, -1.2, -0.8), 50: (0, -2.0, -1.2), 51: (0, -1.8, -1.2),
      57: (0, 2.2, -1.2), 58: (0, 2.2, -1.2), 59: (0, 1.4, -0.8)})
  mouth = np.array(MOUTH_INDICES)
  f = np.zeros((NUM_LANDMARKS, 3))
  f[mouth, 0] = 0.14 * mean[mouth, 0]
  fields["mouth_width"] = f
  f = np.zeros((NUM_LANDMARKS, 3))
  f[mouth, 1] = 2.5
  fields["mouth_height"] = f

  return np.stack([fields[name] for name in IDENTITY_NAMES])


def _blink(pairs: Sequence[tuple[int, int]], mean: np.ndarray) -> np.ndarray:
  """Lids meet 70% of the way down from the upper lid."""
  f = np.zeros((NUM_LANDMARKS, 3))
  for upper, lower in pairs:
    meet = mean[lower] + 0.3 * (mean[upper] - mean[lower])
    f[upper] = meet - mean[upper]
    f[lower] = meet - mean[lower]
  return f


def _expression_basis(mean: np.ndarray) -> np.ndarray:
  """[E, 68, 3] expression components at full strength (mm)."""
  fields = {}

  # Jaw drop: the mandible swings down and a little back, points further from
  # the jaw joint moving further; the mouth narrows slightly as it opens.
  weights = {i: w for i, w in zip(range(9), (0.0, 0.05, 0.2, 0.45, 0.7, 0.9,
                                             1.0, 1.0, 1.0))}
  weights.update({48: 0.5, 60: 0.5, 57: 1.0, 58: 1.0, 59: 1.0, 66: 1.0,
                  67: 1.0})
  pivot = np.array([5.0, -5.0])  # (y, z) of the jaw joint.
  reach = np.linalg.norm(mean[57, 1:] - pivot)
  jaw = {}
  for i, w in weights.items():
    r = np.linalg.norm(mean[i, 1:] - pivot) / reach
    jaw[i] = (0.0, 24.0 * w * r, 9.0 * w * r)
  for i in (48, 60):
    jaw[i] = (2.0,) + jaw[i][1:]
  jaw.update({61: (0, -1.0, 0), 62: (0, -1.0, 0), 50: (0, -0.5, 0),
              51: (0, -0.5, 0)})
  fields["jaw_open"] = _symmetric(jaw)
  # Spread ("ee"): corners pulled out and back, lips thinned.
  fields["lip_spread"] = _symmetric({
      48: (-7.0, 0, 3.0), 60: (-6.5, 0, 3.0), 49: (-3.5, 1.0, 1.5),
      59: (-3.5, -1.0, 1.5), 50: (-1.5, 1.0, 0.5), 58: (-1.5, -1.0, 0.5),
      51: (0, 1.0, 0), 57: (0, -1.0, 0), 61: (-3.0, 0, 1.0),
      67: (-3.0, 0, 1.0)})
  # Round ("oo"): corners pulled in, lips pushed forward and slightly parted.
  fields["lip_round"] = _symmetric({
      48: (9.0, 0, -5.0), 60: (8.0, 0, -5.0), 49: (5.0, -1.0, -7.0),
      59: (5.0, 1.5, -7.0), 50: (2.0, -1.0, -7.0), 58: (2.0, 1.5, -7.0),
      51: (0, -1.0, -7.0), 57: (0, 1.5, -7.0), 61: (4.0, -1.5, -6.0),
      62: (0, -1.5, -6.0), 67: (4.0, 2.5, -6.0), 66: (0, 2.5, -6.0)})
  # Press: the red of both lips rolls in; the chin (mentalis) pushes the
  # lower lip and the closed lip line up.
  fields["lip_press"] = _symmetric({
      48: (1.5, 1.0, 1.0), 60: (1.5, 1.0, 1.0), 49: (0.5, 2.0, 2.0),
      50: (0, 2.5, 2.0), 51: (0, 2.5, 2.0), 59: (0.5, -3.5, 1.0),
      58: (0, -4.0, 1.0), 57: (0, -4.0, 1.0), 61: (0, -0.8, 1.0),
      62: (0, -0.8, 1.0), 66: (0, -0.8, 1.0), 67: (0, -0.8, 1.0),
      5: (0, -1.0, 0), 6: (0, -2.0, -0.5), 7: (0, -3.0, -1.0),
      8: (0, -3.0, -1.0)})
  # Closed-mouth smile: corners up, out and back; cheeks and nostrils widen.
  fields["smile"] = _symmetric({
      48: (-6.0, -6.0, 5.0), 60: (-5.5, -5.5, 5.0), 49: (-3.0, -3.0, 2.0),
      59: (-3.5, -3.0, 2.0), 50: (0, -1.5, 0.5), 58: (-1.0, -1.5, 0.5),
      51: (0, -1.0, 0), 57: (0, -1.0, 0), 61: (-3.0, -2.5, 1.5),
      67: (-3.0, -2.5, 1.5), 62: (0, -1.0, 0), 66: (0, -1.0, 0),
      3: (-1.5, -0.5, 0), 4: (-1.5, -0.5, 0), 31: (-1.5, -1.0, 0),
      32: (-0.5, -0.5, 0)})
  # Upper-lip raise: the upper lip lifts and bares the teeth.
  fields["upper_lip_raise"] = _symmetric({
      49: (0, -3.0, 0), 50: (0, -4.5, -0.5), 51: (0, -4.0, -0.5),
      60: (0, -1.0, 0), 61: (0, -3.5, 0), 62: (0, -3.5, 0),
      30: (0, -0.5, 0), 31: (0, -1.5, 0), 32: (0, -2.0, 0), 33: (0, -2.0, 0)})
  fields["brow_raise"] = _symmetric({
      17: (0, -5.0, 0), 18: (0, -8.0, 0), 19: (0, -9.0, 0), 20: (0, -8.0, 0),
      21: (0, -6.0, 0)})
  fields["blink_left"] = _blink(LEFT_EYELID_PAIRS, mean)
  fields["blink_right"] = _blink(RIGHT_EYELID_PAIRS, mean)

  return np.stack([fields[name] for name in EXPRESSION_NAMES])


@functools.lru_cache(maxsize=1)
def default_model() -> MorphableModel:
  """The hand-built model: 15 identity and 9 expression components."""
  mean = _mean_shape()
  arrays = (mean, _identity_basis(mean), _expression_basis(mean))
  for a in arrays:
    a.setflags(write=False)
  return MorphableModel(mean=arrays[0], id_basis=arrays[1],
                        exp_basis=arrays[2], id_names=IDENTITY_NAMES,
                        exp_names=EXPRESSION_NAMES)


# ----------------------------------------------------------------------------
# Geometry.
# ----------------------------------------------------------------------------


def shape(model: MorphableModel, alpha: ArrayLike | None,
          beta: ArrayLike | None) -> ArrayLike:
  """Landmarks in model space: [..., 68, 3] (mm).

  Args:
    model: the morphable model.
    alpha: [..., A] identity coefficients, or None for the mean identity.
    beta: [..., E] expression coefficients, or None for neutral.

  Returns:
    mean + alpha . id_basis + beta . exp_basis, leading dims broadcast.
  """
  xp = _xp(alpha, beta)
  out = _asarray(xp, model.mean)
  if alpha is not None:
    alpha = _asarray(xp, alpha)
    _check_last("alpha", alpha, model.num_identity)
    out = out + xp.tensordot(alpha, model.id_basis, axes=1)
  if beta is not None:
    beta = _asarray(xp, beta)
    _check_last("beta", beta, model.num_expression)
    out = out + xp.tensordot(beta, model.exp_basis, axes=1)
  return out


def rotation_matrix(yaw: ArrayLike, pitch: ArrayLike,
                    roll: ArrayLike) -> ArrayLike:
  """R = R_y(yaw) @ R_x(pitch) @ R_z(roll): [..., 3, 3] for broadcast angles."""
  xp = _xp(yaw, pitch, roll)
  yaw, pitch, roll = (_asarray(xp, a) for a in (yaw, pitch, roll))
  yaw, pitch, roll = xp.broadcast_arrays(yaw, pitch, roll)
  cy, sy = xp.cos(yaw), xp.sin(yaw)
  cp, sp = xp.cos(pitch), xp.sin(pitch)
  cr, sr = xp.cos(roll), xp.sin(roll)
  rows = [
      [cy * cr + sy * sp * sr, -cy * sr + sy * sp * cr, sy * cp],
      [cp * sr, cp * cr, -sp],
      [-sy * cr + cy * sp * sr, sy * sr + cy * sp * cr, cy * cp],
  ]
  return xp.stack([xp.stack(r, axis=-1) for r in rows], axis=-2)


def rotation_angles(rotation: ArrayLike) -> tuple[ArrayLike, ArrayLike,
                                                  ArrayLike]:
  """Inverse of `rotation_matrix`: (yaw, pitch, roll) with |pitch| <= pi/2."""
  xp = _xp(rotation)
  r = _asarray(xp, rotation)
  if r.shape[-2:] != (3, 3):
    raise ValueError(f"rotation must be [..., 3, 3], got {tuple(r.shape)}")
  pitch = xp.arctan2(-r[..., 1, 2], xp.hypot(r[..., 1, 0], r[..., 1, 1]))
  yaw = xp.arctan2(r[..., 0, 2], r[..., 2, 2])
  roll = xp.arctan2(r[..., 1, 0], r[..., 1, 1])
  return yaw, pitch, roll


def transform(points: ArrayLike, pose: ArrayLike) -> ArrayLike:
  """Model -> camera frame: R @ p + t. points [..., N, 3], pose [..., 6]."""
  xp = _xp(points, pose)
  points, pose = _asarray(xp, points), _asarray(xp, pose)
  _check_last("points", points, 3)
  _check_last("pose", pose, 6)
  rot = rotation_matrix(pose[..., 0], pose[..., 1], pose[..., 2])
  return (xp.einsum("...ij,...nj->...ni", rot, points)
          + pose[..., None, 3:6])


def project(points: ArrayLike, camera: ArrayLike) -> ArrayLike:
  """Pinhole projection: camera-frame points [..., N, 3] -> pixels [..., N, 2].

  Args:
    points: camera-frame points (z forward, must be > 0).
    camera: [..., 3, 3] intrinsics K (OpenCV convention).

  Raises:
    ValueError: on numpy input with a point at or behind the camera plane.
  """
  xp = _xp(points, camera)
  points, camera = _asarray(xp, points), _asarray(xp, camera)
  _check_last("points", points, 3)
  if camera.shape[-2:] != (3, 3):
    raise ValueError(f"camera K must be [..., 3, 3], got "
                     f"{tuple(camera.shape)}")
  if xp is np and np.any(points[..., 2] <= 0.0):
    bad = np.argwhere(points[..., 2] <= 0.0)[0]
    raise ValueError(f"point at index {tuple(int(i) for i in bad)} has depth "
                     f"z={points[tuple(bad)][2]:.3g} <= 0 (behind the camera)")
  hom = xp.einsum("...ij,...nj->...ni", camera, points)
  return hom[..., :2] / hom[..., 2:3]


def landmarks_2d(model: MorphableModel, alpha: ArrayLike | None,
                 beta: ArrayLike | None, pose: ArrayLike,
                 camera: ArrayLike) -> ArrayLike:
  """Projected landmarks [..., 68, 2] in pixels (x right, y down)."""
  return project(transform(shape(model, alpha, beta), pose), camera)


def mouth_vertices(model: MorphableModel, alpha: ArrayLike | None,
                   beta: ArrayLike | None,
                   pose: ArrayLike | None = None) -> ArrayLike:
  """The 20 mouth landmarks (48-67) [..., 20, 3]: model frame, or camera
  frame when `pose` is given."""
  points = shape(model, alpha, beta)[..., MOUTH_INDICES, :]
  return points if pose is None else transform(points, pose)


def _landmark_array(landmarks: ArrayLike) -> tuple[ModuleType, ArrayLike]:
  xp = _xp(landmarks)
  landmarks = _asarray(xp, landmarks)
  if (landmarks.ndim < 2 or landmarks.shape[-2] != NUM_LANDMARKS
      or landmarks.shape[-1] not in (2, 3)):
    raise ValueError(f"landmarks must be [..., 68, 2] or [..., 68, 3], got "
                     f"{tuple(landmarks.shape)}")
  return xp, landmarks


def _dist(xp: ModuleType, landmarks: ArrayLike, i: int, j: int) -> ArrayLike:
  return xp.linalg.norm(landmarks[..., i, :] - landmarks[..., j, :], axis=-1)


def face_scale(landmarks: ArrayLike) -> ArrayLike:
  """Distance between the outer eye corners (36, 45): [...]."""
  xp, landmarks = _landmark_array(landmarks)
  return _dist(xp, landmarks, 36, 45)


def mouth_opening(landmarks: ArrayLike) -> ArrayLike:
  """Inner-lip gap (mean over 61-67, 62-66, 63-65) / outer-eye-corner
  distance: [...]. 0 for closed lips, about 0.25 at full jaw_open."""
  xp, landmarks = _landmark_array(landmarks)
  gap = sum(_dist(xp, landmarks, i, j) for i, j in INNER_LIP_PAIRS) / 3.0
  return gap / _dist(xp, landmarks, 36, 45)


def eye_aspect_ratio(landmarks: ArrayLike) -> ArrayLike:
  """Eye aspect ratio (lid gap / eye width, Soukupova & Cech 2016):
  [..., 2] for (right, left) eye; 0 when the eye is closed."""
  xp, landmarks = _landmark_array(landmarks)
  ratios = []
  for pairs, (outer, inner) in ((RIGHT_EYELID_PAIRS, RIGHT_EYE_CORNERS),
                                (LEFT_EYELID_PAIRS, LEFT_EYE_CORNERS)):
    gap = sum(_dist(xp, landmarks, i, j) for i, j in pairs)
    ratios.append(gap / (2.0 * _dist(xp, landmarks, outer, inner)))
  return xp.stack(ratios, axis=-1)


def default_camera(image_size: int | tuple[int, int]) -> np.ndarray:
  """Intrinsics K [3, 3] for an image of `image_size` (size or (height, width)).

  Focal length FOCAL_PER_WIDTH * width, principal point at the image centre
  ((width - 1) / 2, (height - 1) / 2) with pixel centres on integers.
  """
  if isinstance(image_size, (int, np.integer)):
    height = width = int(image_size)
  else:
    height, width = (int(s) for s in image_size)
  if height <= 0 or width <= 0:
    raise ValueError(f"image_size must be positive, got {image_size}")
  f = FOCAL_PER_WIDTH * width
  return np.array([[f, 0.0, (width - 1) / 2.0],
                   [0.0, f, (height - 1) / 2.0],
                   [0.0, 0.0, 1.0]])


def default_pose() -> np.ndarray:
  """Pose [6] of a frontal head under `default_camera` (any image size).

  The neutral jaw line spans about half the image width, centred
  horizontally; the landmarks' box sits slightly below the image centre
  (its centre at about 0.55 of the height of a square image), leaving room
  for the forehead and hair above and the neck below.
  """
  return np.array(_DEFAULT_POSE)
