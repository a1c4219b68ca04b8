"""Synthetic talking-face renderer: 68 projected landmarks in, an RGB frame out.

Each identity is painted once (`appearance.paint_atlas`) in its neutral landmark layout. Every
frame then warps that atlas onto the frame's landmarks with a fixed piecewise-affine mesh and draws
what a warp cannot produce on top: the mouth interior (cavity, gums, tongue, and teeth anchored to
the skull and jaw) inside the inner-lip polygon; for painted identities the eyeballs clipped by
the lids, for photographs eyelids of inpainted skin that slide down over the photo's own eyes.

The mesh joins the 68 iBUG landmarks, points on the forehead and around the hair that follow the
head as a rigid (similarity) frame, and fixed points (neck base, shoulders, a ring around the head,
far corners) so that background and torso stay put. It is a Delaunay triangulation of a frontal
template computed once; the template's lips are opened so that the lip and eye contours are mesh
edges and nothing folds as the mouth opens.

Points are (x, y) pixels, x right, y down, pixel centres at integer coordinates; images are RGB
uint8 [S, S, 3]; sequences are [T, 68, 2] -> [T, S, S, 3]. "Template units" are those of
`TEMPLATE_LANDMARKS` (a frontal face with a jaw 2 units wide, origin between the eyes).

The head mask of a frame (`render_with_mask`, PIR's M_h) is the atlas's head layer (face, skull,
ears, hair; not the neck) warped with the frame's own map, so it is exact for painted identities;
the photograph has no painted layer and uses the landmark approximation
(`face.head_region.head_mask`) of its neutral layout, warped the same way.

`portrait_renderer` builds the one photographic identity: Eileen Collins' NASA portrait shipped
with scikit-image (`skimage.data.astronaut()`), with 68 landmarks measured by hand on that image.
"""

from __future__ import annotations

import functools
import time

import cv2
import numpy as np
from scipy import spatial

from talking_heads.face import appearance as appearance_lib
from talking_heads.face import head_region
from talking_heads.face.appearance import Appearance

NUM_LANDMARKS = 68
MIN_SIZE, MAX_SIZE = 32, 1024

# Frontal template face (template units, iBUG-68 order, mouth closed, eyes open).
TEMPLATE_LANDMARKS = np.array([
    (-1.000, 0.000), (-0.990, 0.262), (-0.954, 0.522), (-0.887, 0.776), (-0.787, 1.018),
    (-0.653, 1.244), (-0.479, 1.440), (-0.258, 1.578), (0.000, 1.620), (0.258, 1.578),
    (0.479, 1.440), (0.653, 1.244), (0.787, 1.018), (0.887, 0.776), (0.954, 0.522),
    (0.990, 0.262), (1.000, 0.000),
    (-0.800, -0.200), (-0.660, -0.310), (-0.500, -0.355), (-0.330, -0.345), (-0.150, -0.290),
    (0.150, -0.290), (0.330, -0.345), (0.500, -0.355), (0.660, -0.310), (0.800, -0.200),
    (0.000, -0.120), (0.000, 0.090), (0.000, 0.300), (0.000, 0.520),
    (-0.190, 0.620), (-0.100, 0.655), (0.000, 0.675), (0.100, 0.655), (0.190, 0.620),
    (-0.640, 0.000), (-0.510, -0.075), (-0.350, -0.075), (-0.220, 0.000), (-0.350, 0.055),
    (-0.510, 0.055),
    (0.220, 0.000), (0.350, -0.075), (0.510, -0.075), (0.640, 0.000), (0.510, 0.055),
    (0.350, 0.055),
    (-0.360, 0.980), (-0.240, 0.905), (-0.100, 0.865), (0.000, 0.880), (0.100, 0.865),
    (0.240, 0.905), (0.360, 0.980), (0.240, 1.080), (0.110, 1.130), (0.000, 1.140),
    (-0.110, 1.130), (-0.240, 1.080),
    (-0.310, 0.980), (-0.110, 0.975), (0.000, 0.980), (0.110, 0.975), (0.310, 0.980),
    (0.110, 0.975), (0.000, 0.980), (-0.110, 0.975)], np.float64)

# Landmarks that expressions barely move (nose, eye corners): they define the head's frame.
STABLE_LANDMARKS = (27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 39, 42, 45)
INNER_LIPS = tuple(range(60, 68))
EYES = (tuple(range(36, 42)), tuple(range(42, 48)))

# Gaps between teeth across the mouth, in template units from its centre (a central incisor is
# about 8.5 mm, 0.12 units; the side teeth recede and look narrower).
_UPPER_TEETH_GAPS = np.array([-0.32, -0.27, -0.2, -0.12, 0.0, 0.12, 0.2, 0.27, 0.32])
_LOWER_TEETH_GAPS = np.array([-0.2, -0.14, -0.07, 0.0, 0.07, 0.14, 0.2])


def _ellipse(cx: float, cy: float, rx: float, ry: float, degrees: list[float]) -> np.ndarray:
  a = np.deg2rad(np.asarray(degrees, np.float64))
  return np.stack([cx + rx * np.cos(a), cy - ry * np.sin(a)], 1)


# Extra mesh points, template units. Moving ones follow the head's similarity frame.
_FOREHEAD = _ellipse(0.0, -0.1, 1.0, 0.97, [170, 150, 130, 110, 90, 70, 50, 30, 10])
_HEAD = _ellipse(0.0, -0.2, 1.5, 1.75, [210, 180, 150, 120, 90, 60, 30, 0, -30])
_MOVING = np.concatenate([_FOREHEAD, _HEAD])
_FIXED = np.concatenate([
    np.array([(-0.62, 2.3), (0.0, 2.4), (0.62, 2.3), (-1.7, 2.7), (1.7, 2.7), (-2.6, 3.2),
              (2.6, 3.2)]),
    _ellipse(0.0, -0.2, 2.3, 2.6, [215, 185, 155, 125, 90, 55, 25, -5, -35]),
    np.array([(-12, -12), (0, -12), (12, -12), (12, 0), (12, 12), (0, 12), (-12, 12), (-12, 0)])])
_NUM_MOVING = NUM_LANDMARKS + len(_MOVING)


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
  """Least-squares similarity (rotation, uniform scale, shift) mapping src [N, 2] to dst; 2x3."""
  zs = src[:, 0] + 1j * src[:, 1]
  zd = dst[:, 0] + 1j * dst[:, 1]
  ms, md = zs.mean(), zd.mean()
  a = np.vdot(zs - ms, zd - md) / max(np.vdot(zs - ms, zs - ms).real, 1e-12)
  b = md - a * ms
  return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])


def _apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
  return points @ m[:, :2].T + m[:, 2]


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """2x3 affine a after b."""
  return np.concatenate([a[:, :2] @ b[:, :2], (a[:, :2] @ b[:, 2] + a[:, 2])[:, None]], 1)


def _signed_areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
  p = points[triangles]
  d1, d2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
  return 0.5 * (d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0])


def triangulation_layout() -> np.ndarray:
  """Template points (landmarks, moving, fixed) with lips parted, as triangulated."""
  layout = TEMPLATE_LANDMARKS.copy()
  centre = np.array([0.0, 0.98])
  layout[48:60] = centre + 1.3 * (layout[48:60] - centre)
  layout[61:64, 1] -= 0.04
  layout[65:68, 1] += 0.04
  return np.concatenate([layout, _MOVING, _FIXED])


@functools.cache
def mesh_triangles() -> np.ndarray:
  """The fixed triangulation [T, 3] over all mesh points, counter-clockwise in the template."""
  layout = triangulation_layout()
  triangles = spatial.Delaunay(layout).simplices.astype(np.int32)
  flip = _signed_areas(layout, triangles) < 0
  triangles[flip] = triangles[flip][:, ::-1]
  triangles.setflags(write=False)
  return triangles


def _collapsible(triangles: np.ndarray) -> np.ndarray:
  """Triangles inside the mouth opening or an eye: they may shrink to nothing."""
  groups = [set(INNER_LIPS), set(EYES[0]), set(EYES[1])]
  return np.array([any(set(t) <= g for g in groups) for t in triangles.tolist()])


def folded_triangles(neutral_landmarks: np.ndarray) -> np.ndarray:
  """Mesh triangles [F, 3] that fold over in a neutral layout [68, 2] (none: renderable)."""
  landmarks = _check_landmarks(neutral_landmarks, "neutral_landmarks")
  frame = fit_similarity(TEMPLATE_LANDMARKS[list(STABLE_LANDMARKS)],
                         landmarks[list(STABLE_LANDMARKS)])
  points = np.concatenate([landmarks, _apply(frame, _MOVING), _apply(frame, _FIXED)])
  triangles = mesh_triangles()
  return triangles[(_signed_areas(points, triangles) <= 0) & ~_collapsible(triangles)]


def _check_landmarks(landmarks: np.ndarray, where: str) -> np.ndarray:
  landmarks = np.asarray(landmarks)
  if landmarks.shape != (NUM_LANDMARKS, 2):
    raise ValueError(f"{where}: expected landmarks of shape (68, 2), got {landmarks.shape}.")
  if not np.all(np.isfinite(landmarks)):
    raise ValueError(f"{where}: landmarks contain NaN or infinite values.")
  return landmarks.astype(np.float64)


def _check_size(image_size: int) -> None:
  if not isinstance(image_size, (int, np.integer)) or not MIN_SIZE <= image_size <= MAX_SIZE:
    raise ValueError(f"image_size must be an int in [{MIN_SIZE}, {MAX_SIZE}], got "
                     f"{image_size!r}.")


def _aa_mask(shape: tuple[int, int], polygons: list[np.ndarray], value: int = 255) -> np.ndarray:
  """Anti-aliased [0, 1] float mask of sub-pixel polygons (ROI coordinates)."""
  mask = np.zeros(shape, np.uint8)
  cv2.fillPoly(mask, [np.round(np.asarray(p) * 16).astype(np.int32) for p in polygons], value,
               cv2.LINE_AA, 4)
  return mask.astype(np.float32) / 255.0


def _polygon_area(points: np.ndarray) -> float:
  x, y = points[:, 0], points[:, 1]
  return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _roi(points: np.ndarray, margin: float, size: int) -> tuple[int, int, int, int] | None:
  x0, y0 = np.floor(points.min(0) - margin).astype(int)
  x1, y1 = np.ceil(points.max(0) + margin).astype(int) + 1
  x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)
  return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _sorted_xy(curve: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """A curve's x and y sorted by x, for np.interp."""
  order = np.argsort(curve[:, 0])
  return curve[order, 0], curve[order, 1]


def _iris_sprite(colour: np.ndarray, radius: float, seed: int) -> np.ndarray:
  """RGBA float32 iris with pupil, fibres, limbal ring and a catch light; centred."""
  ss = 4
  half = int(np.ceil(radius)) + 2
  n = (2 * half + 1) * ss
  ys, xs = (np.mgrid[0:n, 0:n].astype(np.float32) + 0.5) / ss - (half + 0.5)
  r = np.hypot(xs, ys) / radius
  theta = np.arctan2(ys, xs)
  rng = np.random.default_rng(seed)
  fibres = sum(rng.uniform(0.3, 1.0) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
               for k in (23, 37, 53, 71)) / 2.5
  tone = (0.8 + 0.2 * fibres) * (1.0 - 0.55 * np.clip((r - 0.78) / 0.22, 0, 1))
  tone *= 1.0 + 0.25 * np.exp(-0.5 * ((r - 0.5) / 0.08) ** 2)
  rgb = colour[None, None] * tone[..., None]
  pupil = np.clip((0.36 - r) * radius * ss, 0, 1)[..., None]
  rgb = rgb * (1 - pupil) + 0.03 * pupil
  glint = np.exp(-0.5 * (np.hypot(xs + 0.35 * radius, ys + 0.35 * radius) / (0.12 * radius)) ** 2)
  rgb = rgb * (1 - 0.9 * glint[..., None]) + 0.97 * 0.9 * glint[..., None]
  alpha = np.clip((1.0 - r) * radius * ss, 0, 1)
  sprite = np.concatenate([rgb * alpha[..., None], alpha[..., None]], -1).astype(np.float32)
  return cv2.resize(sprite, (2 * half + 1, 2 * half + 1), interpolation=cv2.INTER_AREA)


class FaceRenderer:
  """Renders one identity from landmarks; picklable (it holds only numpy arrays and dataclasses).

  Args:
    appearance: the identity's look; for a photographic identity it only sets the mouth colours.
    image_size: output side S in pixels, 32-1024.
    neutral_landmarks: [68, 2] pixels, the identity at rest (the layout of the atlas).
    atlas: optional RGB uint8 [S, S, 3] photograph whose face sits on `neutral_landmarks`; the
      photo is warped instead of a painted atlas, keeps its own eyes, and blinks by drawing lids
      of inpainted skin over them.
  """

  def __init__(self, appearance: Appearance, image_size: int, neutral_landmarks: np.ndarray,
               atlas: np.ndarray | None = None):
    _check_size(image_size)
    self.appearance = appearance
    self.image_size = int(image_size)
    self.neutral_landmarks = _check_landmarks(neutral_landmarks, "neutral_landmarks")
    self._tmpl_to_img = fit_similarity(TEMPLATE_LANDMARKS[list(STABLE_LANDMARKS)],
                                       self.neutral_landmarks[list(STABLE_LANDMARKS)])
    self._fixed = _apply(self._tmpl_to_img, _FIXED)
    self._neutral_points = self._mesh_points(self.neutral_landmarks)[0]
    triangles = mesh_triangles()
    folded = folded_triangles(self.neutral_landmarks)
    if len(folded):
      raise ValueError(
          "neutral_landmarks: the face mesh folds over at triangles "
          f"{folded[:4].tolist()} (mesh point indices; 0-67 are landmarks); expected "
          "a roughly frontal face in iBUG-68 order with open eyes.")
    self._triangles = triangles[(triangles < _NUM_MOVING).any(1)]
    size = self.image_size
    self._grid_x, self._grid_y = np.meshgrid(np.arange(size, dtype=np.float32),
                                             np.arange(size, dtype=np.float32))
    if atlas is None:
      painted = appearance_lib.paint_atlas(appearance, size, self.neutral_landmarks,
                                           self._tmpl_to_img)
      self.atlas, self.skin_mask, self.head_atlas = painted.image, painted.skin, painted.head
    else:
      atlas = np.asarray(atlas)
      if atlas.shape != (size, size, 3) or atlas.dtype != np.uint8:
        raise ValueError(f"atlas: expected RGB uint8 [{size}, {size}, 3], got {atlas.dtype} "
                         f"{atlas.shape}.")
      self.atlas, self.skin_mask = atlas.copy(), None
      self.head_atlas = head_region.head_mask(self.neutral_landmarks, size, size)[..., 0]
    self._scale = float(np.hypot(*self._tmpl_to_img[:, 0]))
    self._setup_mouth()
    self._draws_eyes = atlas is None
    if self._draws_eyes:
      self._setup_eyes()
    else:
      self._setup_photo_lids()

  # Geometry.

  def _mesh_points(self, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    frame = fit_similarity(TEMPLATE_LANDMARKS[list(STABLE_LANDMARKS)],
                           landmarks[list(STABLE_LANDMARKS)])
    return np.concatenate([landmarks, _apply(frame, _MOVING), self._fixed]), frame

  def _warp(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Piecewise-affine warp of the atlas: every output pixel samples its neutral position."""
    size = self.image_size
    tri = self._triangles
    current = points[tri]
    lhs = np.concatenate([current, np.ones(current.shape[:2] + (1,))], -1)
    det = np.linalg.det(lhs)
    degenerate = np.abs(det) < 1e-9
    lhs[degenerate] = np.eye(3)
    # Per triangle, [x y 1] @ affine = neutral position.
    affine = np.linalg.solve(lhs, self._neutral_points[tri])
    affine[degenerate] = 0.0
    affine[degenerate, 2] = self._neutral_points[tri[degenerate]].mean(1)
    # Label every pixel with the triangle covering it; the map is continuous across shared edges,
    # so which neighbour claims a boundary pixel does not matter. Unlabelled pixels lie in
    # triangles of fixed points only, which map to themselves.
    labels = np.full((size, size), -1, np.int32)
    corners = np.round(current * 16).astype(np.int32)  # 4 fractional bits
    for k in np.flatnonzero(~degenerate):
      cv2.fillConvexPoly(labels, corners[k], int(k), cv2.LINE_8, 4)
    map_x, map_y = self._grid_x.copy(), self._grid_y.copy()
    inside = labels >= 0
    lab = labels[inside]
    x, y = self._grid_x[inside], self._grid_y[inside]
    a = affine.astype(np.float32)
    map_x[inside] = a[lab, 0, 0] * x + a[lab, 1, 0] * y + a[lab, 2, 0]
    map_y[inside] = a[lab, 0, 1] * x + a[lab, 1, 1] * y + a[lab, 2, 1]
    image = cv2.remap(self.atlas, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return image, map_x, map_y

  # Mouth interior.

  def _setup_mouth(self) -> None:
    rng = np.random.default_rng(self.appearance.texture_seed + 1)
    # Teeth differ in how yellow they are: blue fades fastest.
    yellowing = rng.uniform(0.88, 1.0) ** np.array([1.0, 1.3, 2.2])
    self._teeth_rgb = np.array([0.95, 0.92, 0.85]) * yellowing
    lip = np.asarray(self.appearance.lip_rgb, np.float64) / 255.0
    self._tongue_rgb = 0.5 * lip + 0.5 * np.array([0.8, 0.4, 0.42])
    self._gum_rgb = 0.6 * lip + 0.4 * np.array([0.85, 0.45, 0.5])
    self._cavity_rgb = np.array([0.16, 0.045, 0.05])
    # The teeth are anchored to the skull (upper) and the jaw (lower), not to the lips, so they
    # are placed in the head frame relative to the neutral mouth.
    to_tmpl = cv2.invertAffineTransform(self._tmpl_to_img)
    self._mouth_centre = _apply(to_tmpl, self.neutral_landmarks[list(INNER_LIPS)]).mean(0)
    self._chin = _apply(to_tmpl, self.neutral_landmarks[8:9])[0]
    self._teeth_photo = None
    inner = self.neutral_landmarks[list(INNER_LIPS)]
    if self.skin_mask is None and _polygon_area(inner) > 1.0:
      # A photo that already shows teeth: keep them, moving with the head.
      x0, y0, x1, y1 = _roi(inner, 2.0, self.image_size)
      mask = _aa_mask((y1 - y0, x1 - x0), [self._mouth_outline(inner) - [x0, y0]])
      patch = self.atlas[y0:y1, x0:x1].astype(np.float32) / 255.0
      self._teeth_photo = (np.concatenate([patch * mask[..., None], mask[..., None]], -1),
                           np.array([x0, y0], np.float64))

  @staticmethod
  def _mouth_outline(inner: np.ndarray) -> np.ndarray:
    return appearance_lib.catmull_rom(inner, 32, closed=True)

  def _draw_mouth(self, image: np.ndarray, landmarks: np.ndarray, frame: np.ndarray) -> None:
    inner = landmarks[list(INNER_LIPS)]
    if _polygon_area(inner) < 0.3:
      return
    box = _roi(inner, 2.0, self.image_size)
    if box is None:
      return
    x0, y0, x1, y1 = box
    shape = (y1 - y0, x1 - x0)
    opening = _aa_mask(shape, [self._mouth_outline(inner) - [x0, y0]])
    to_tmpl = cv2.invertAffineTransform(frame)
    px = float(np.hypot(*frame[:, 0]))  # pixels per template unit
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    u = to_tmpl[0, 0] * xs + to_tmpl[0, 1] * ys + to_tmpl[0, 2] - self._mouth_centre[0]
    v = to_tmpl[1, 0] * xs + to_tmpl[1, 1] * ys + to_tmpl[1, 2] - self._mouth_centre[1]
    drop = max(float(_apply(to_tmpl, landmarks[8:9])[0, 1] - self._chin[1]), 0.0)
    # The lower lip hides the lower teeth unless they ride up to its inner edge.
    lip_line = float(_apply(to_tmpl, landmarks[66:67])[0, 1] - self._mouth_centre[1])
    lower_top = min(0.045 + 0.85 * drop, lip_line - 0.03)

    def inside(distance: np.ndarray) -> np.ndarray:  # anti-aliased step, distance in units
      return np.clip(distance * px + 0.5, 0.0, 1.0)[..., None]

    upper_edge = 0.045 - 0.5 * u**2
    lower_edge = lower_top + 0.45 * u**2
    upper_teeth = inside(upper_edge - v) * inside(v - upper_edge + 0.16)
    lower_teeth = inside(v - lower_edge) * inside(lower_edge + 0.11 - v)
    gums = inside(upper_edge - 0.16 - v) + inside(v - lower_edge - 0.11)
    tongue_d = np.hypot(u / 0.24, (v - lower_top - 0.08) / 0.12)
    tongue = inside((1.0 - tongue_d) * 0.12)
    gap_width = max(0.005, 0.45 / px)

    def enamel(gaps: np.ndarray) -> np.ndarray:
      # Each tooth is a little convex (bright middle), separated by thin dark gaps.
      nearest = np.min(np.abs(u[..., None] - gaps), -1)
      spacing = np.abs(np.diff(gaps)).min()
      bulge = 0.88 + 0.12 * np.clip(2 * nearest / spacing, 0, 1)
      gap = 0.45 * np.exp(-0.5 * (nearest / gap_width) ** 2)
      recede = np.clip(1.0 - 2.8 * u**2, 0.3, 1.0)
      return self._teeth_rgb * (bulge * (1.0 - gap) * recede)[..., None]

    depth = np.clip(1.0 - 4.0 * np.hypot(u, v - 0.5 * drop) / max(0.3 + drop, 0.3), 0.4, 1.0)
    content = self._cavity_rgb * (0.6 + 0.6 * (1.0 - depth))[..., None]
    tongue_rgb = self._tongue_rgb * (0.6 + 0.4 * (1 - depth))[..., None]
    content = content * (1 - tongue) + tongue * tongue_rgb
    content = content * (1 - gums) + gums * self._gum_rgb
    content = content * (1 - lower_teeth) + lower_teeth * enamel(_LOWER_TEETH_GAPS) * 0.78
    upper = enamel(_UPPER_TEETH_GAPS)
    upper *= (0.85 + 0.15 * np.clip((upper_edge - v) / 0.04, 0, 1))[..., None]
    content = content * (1 - upper_teeth) + upper_teeth * upper
    if self._teeth_photo is not None:
      patch, patch_origin = self._teeth_photo
      # Neutral image -> current image through the head frame, then into ROI coordinates.
      move = _compose(frame, cv2.invertAffineTransform(self._tmpl_to_img))
      move[:, 2] += move[:, :2] @ patch_origin - [x0, y0]
      warped = cv2.warpAffine(patch, move, (shape[1], shape[0]), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
      content = content * (1 - warped[..., 3:]) + warped[..., :3]
    # The lips occlude light near the edge of the opening.
    occlusion = cv2.GaussianBlur(opening, (0, 0), max(0.03 * px, 0.5))
    content *= (0.45 + 0.55 * np.clip(2.0 * occlusion - 0.6, 0, 1))[..., None]
    alpha = opening[..., None]
    roi = image[y0:y1, x0:x1].astype(np.float32)
    roi = roi * (1 - alpha) + 255.0 * np.clip(content, 0, 1) * alpha
    image[y0:y1, x0:x1] = np.clip(np.round(roi), 0, 255).astype(np.uint8)

  # Eyes.

  def _setup_eyes(self) -> None:
    self._iris = []
    for idx in EYES:
      pts = self.neutral_landmarks[list(idx)]
      width = float(np.linalg.norm(pts[3] - pts[0]))
      centre = pts.mean(0)
      # Iris centre relative to the corners, in the neutral head frame (template units).
      offset = (centre - (pts[0] + pts[3]) / 2) @ self._tmpl_to_img[:, :2] / self._scale**2
      colour = np.asarray(self.appearance.eye_rgb, np.float32) / 255.0
      sprite = _iris_sprite(colour, 0.23 * width, self.appearance.texture_seed + idx[0])
      self._iris.append((sprite, offset))
    self._lash_rgb = tuple(int(0.35 * c) for c in self.appearance.brow_rgb)

  def _draw_eyes(self, image: np.ndarray, landmarks: np.ndarray, frame: np.ndarray) -> None:
    scale = float(np.hypot(*frame[:, 0])) / self._scale
    for idx, (sprite, offset) in zip(EYES, self._iris):
      pts = landmarks[list(idx)]
      upper = appearance_lib.catmull_rom(pts[[0, 1, 2, 3]], 12)
      lower = appearance_lib.catmull_rom(pts[[3, 4, 5, 0]], 12)
      box = _roi(pts, 3.0, self.image_size)
      if box is None:
        continue
      x0, y0, x1, y1 = box
      origin = np.array([x0, y0], np.float64)
      shape = (y1 - y0, x1 - x0)
      if _polygon_area(pts) > 0.2:
        opening = _aa_mask(shape, [np.concatenate([upper, lower[1:-1]]) - origin])
        ys = np.arange(shape[0], dtype=np.float32)[:, None]
        lid_y = np.interp(np.arange(shape[1]) + x0, *_sorted_xy(upper))[None, :] - y0
        height = max(float(np.ptp(pts[:, 1])), 1.0)
        lid_shadow = 1.0 - 0.4 * np.exp(-np.clip(ys - lid_y, 0, None) / (0.35 * height))
        corner = np.abs(np.arange(shape[1], dtype=np.float32)[None, :] + x0 - pts[:, 0].mean())
        corner = corner / max(float(np.ptp(pts[:, 0])) / 2, 1.0)
        sclera = np.array([0.93, 0.9, 0.87]) * (1.0 - 0.18 * corner[..., None] ** 2)
        sclera = sclera * np.array([1.0, 0.96, 0.95]) ** (corner[..., None] ** 2)
        centre = (pts[0] + pts[3]) / 2 + offset @ frame[:, :2].T - origin
        half = (sprite.shape[0] - 1) / 2
        place = np.array([[scale, 0, centre[0] - scale * half],
                          [0, scale, centre[1] - scale * half]])
        iris = cv2.warpAffine(sprite, place, (shape[1], shape[0]), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        eye = sclera * (1 - iris[..., 3:]) + iris[..., :3]
        eye = eye * lid_shadow[..., None]
        roi = image[y0:y1, x0:x1].astype(np.float32)
        roi = roi * (1 - opening[..., None]) + 255.0 * np.clip(eye, 0, 1) * opening[..., None]
        image[y0:y1, x0:x1] = np.clip(np.round(roi), 0, 255).astype(np.uint8)
      thickness = max(1, int(round(0.035 * float(np.linalg.norm(pts[3] - pts[0])))))
      cv2.polylines(image, [np.round(upper * 16).astype(np.int32)], False, self._lash_rgb,
                    thickness, cv2.LINE_AA, 4)

  # Photo eyelids.

  def _setup_photo_lids(self) -> None:
    """A photo's eyes close by a lid drawn over them, not by squashing the eye region."""
    to_tmpl = cv2.invertAffineTransform(self._tmpl_to_img)
    mask = np.zeros((self.image_size,) * 2, np.uint8)
    self._lid_offsets = []
    for idx in EYES:
      pts = self.neutral_landmarks[list(idx)]
      corners = _apply(to_tmpl, pts[[0, 3]]).mean(0)
      self._lid_offsets.append(_apply(to_tmpl, pts[[1, 2]]) - corners)
      height = max(float(np.ptp(pts[:, 1])), 1.0)
      outline = np.round(pts * 16).astype(np.int32)
      cv2.fillPoly(mask, [outline], 255, cv2.LINE_8, 4)
      cv2.polylines(mask, [outline], True, 255, max(1, int(round(1.2 * height))), cv2.LINE_8, 4)
    # Skin without eyes: what the closing lid shows.
    self._lid_atlas = cv2.inpaint(self.atlas, mask, 3, cv2.INPAINT_TELEA)

  def _open_lids(self, landmarks: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """Landmarks with each upper lid at least as open as at rest (the eye is not squashed)."""
    out = landmarks.copy()
    down = frame[:, 1] / np.linalg.norm(frame[:, 1])
    for idx, offsets in zip(EYES, self._lid_offsets):
      corners = landmarks[[idx[0], idx[3]]].mean(0)
      rest = corners + offsets @ frame[:, :2].T
      current = landmarks[[idx[1], idx[2]]]
      lower = ((current - rest) @ down) > 0
      out[[idx[1], idx[2]]] = np.where(lower[:, None], rest, current)
    return out

  def _draw_photo_lids(self, image: np.ndarray, landmarks: np.ndarray, opened: np.ndarray,
                       frame: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> None:
    down = frame[:, 1] / np.linalg.norm(frame[:, 1])
    for idx in EYES:
      pts = landmarks[list(idx)]
      rest = opened[list(idx)]
      if np.allclose(rest[1:3], pts[1:3]):
        continue
      box = _roi(np.concatenate([pts, rest]), 0.6 * float(np.ptp(rest[:, 1])) + 3.0,
                 self.image_size)
      if box is None:
        continue
      x0, y0, x1, y1 = box
      origin = np.array([x0, y0], np.float64)
      height = max(float(np.ptp(rest[:, 1])), 1.0)
      # The lid's top reaches over the photo's own lashes, which sit above the contour.
      lashes = rest[[0, 1, 2, 3]] - np.array([[0], [0.35], [0.35], [0]]) * height * down
      top = appearance_lib.catmull_rom(lashes, 12)
      edge = appearance_lib.catmull_rom(pts[[0, 1, 2, 3]], 12)
      shape = (y1 - y0, x1 - x0)
      lid = _aa_mask(shape, [np.concatenate([top, edge[::-1]]) - origin])
      lid = cv2.GaussianBlur(lid, (0, 0), max(0.08 * height, 0.3))[..., None]
      skin = cv2.remap(self._lid_atlas, map_x[y0:y1, x0:x1], map_y[y0:y1, x0:x1],
                       cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
      # Darker towards the lid margin, where the lashes grow.
      ys = np.arange(y0, y1, dtype=np.float64)[:, None]
      edge_y = np.interp(np.arange(x0, x1), *_sorted_xy(edge))[None, :]
      skin *= (1.0 - 0.25 * np.exp(-np.clip(edge_y - ys, 0, None) / (0.3 * height)))[..., None]
      roi = image[y0:y1, x0:x1].astype(np.float32)
      image[y0:y1, x0:x1] = np.clip(np.round(roi * (1 - lid) + skin * lid), 0, 255).astype(np.uint8)
      thickness = max(1, int(round(0.035 * float(np.linalg.norm(pts[3] - pts[0])))))
      cv2.polylines(image, [np.round(edge * 16).astype(np.int32)], False, (52, 36, 28), thickness,
                    cv2.LINE_AA, 4)

  # Public API.

  def render(self, landmarks: np.ndarray) -> np.ndarray:
    """One frame: landmarks [68, 2] float pixels -> RGB uint8 [S, S, 3]."""
    return self._render(landmarks)[0]

  def render_with_mask(self, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame and its head mask: landmarks [68, 2] -> (RGB uint8 [S, S, 3], uint8 [S, S] 1 on
    the head; module docstring)."""
    image, map_x, map_y = self._render(landmarks)
    head = cv2.remap(self.head_atlas, map_x, map_y, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    return image, (head >= 0.5).astype(np.uint8)

  def _render(self, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame, the warp's map_x, map_y [S, S]: each pixel's position in the atlas)."""
    landmarks = _check_landmarks(landmarks, "landmarks")
    points, frame = self._mesh_points(landmarks)
    if self._draws_eyes:
      image, map_x, map_y = self._warp(points)
      self._draw_mouth(image, landmarks, frame)
      self._draw_eyes(image, landmarks, frame)
    else:
      opened = self._open_lids(landmarks, frame)
      image, map_x, map_y = self._warp(np.concatenate([opened, points[NUM_LANDMARKS:]]))
      self._draw_mouth(image, landmarks, frame)
      self._draw_photo_lids(image, landmarks, opened, frame, map_x, map_y)
    return image, map_x, map_y

  def render_sequence(self, landmarks: np.ndarray, with_masks: bool = False
                      ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Frames for landmarks [T, 68, 2] -> RGB uint8 [T, S, S, 3]; with `with_masks`, also the
    head masks uint8 [T, S, S] (`render_with_mask`)."""
    landmarks = np.asarray(landmarks)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (NUM_LANDMARKS, 2):
      raise ValueError(f"landmarks: expected [T, 68, 2], got shape {landmarks.shape}.")
    out = np.empty((len(landmarks), self.image_size, self.image_size, 3), np.uint8)
    masks = np.empty(out.shape[:3], np.uint8)
    for t, frame in enumerate(landmarks):
      if not np.all(np.isfinite(frame)):
        raise ValueError(f"landmarks: frame {t} contains NaN or infinite values.")
      if with_masks:
        out[t], masks[t] = self.render_with_mask(frame)
      else:
        out[t] = self.render(frame)
    return (out, masks) if with_masks else out


# The 68 iBUG landmarks of Eileen Collins' face in `skimage.data.astronaut()` (512 x 512), measured
# by hand on enlarged, gridded crops of that image (x, y pixels, pixel centres at integers). Jaw
# points 0-2 and 14-16 lie on the hair boundary, which hides her ears. She smiles with parted
# lips: the inner-lip polygon 60-67 encloses her upper teeth.
ASTRONAUT_LANDMARKS = np.array([
    (181, 104), (181, 116), (181, 128), (184, 140), (188, 151), (192, 160),
    (199, 169), (210, 177), (222, 180.5), (233, 179), (243, 173), (253, 164),
    (261, 154), (265.5, 142), (268, 130), (269, 118), (270, 106),
    (188, 95), (194, 91), (201, 90), (208, 90), (214, 92),
    (233, 92), (240, 89), (248, 88), (255, 89), (262, 92),
    (224, 100), (224, 109), (224, 117), (224, 126),
    (213, 128), (218, 131), (223, 132), (228, 131), (233, 128),
    (194, 103.5), (198.5, 98.5), (205, 98.5), (211, 104), (205, 106), (199, 106),
    (236, 104.5), (241, 99), (248, 98.5), (256, 102.5), (250, 105.5), (242, 106),
    (204, 140), (210, 137.5), (216, 135.5), (222, 136), (229, 135.5), (235, 137),
    (243, 140), (238, 148), (231, 152), (223, 153.5), (215, 152), (209, 148),
    (206, 140.5), (214, 141.5), (222, 142), (231, 141.5), (241, 141), (231, 146.5),
    (222, 147.5), (213, 146)], np.float64)

# Square crop (x0, y0, side) of the astronaut image framing her head like
# `morphable.default_camera` frames the model: jaw about half the width, face a little low.
ASTRONAUT_CROP = (135, 36, 180)

# Colours sampled from the photo; only the mouth interior (lips, tongue, gums) uses them.
ASTRONAUT_APPEARANCE = Appearance(
    skin_rgb=(226, 186, 162), hair_rgb=(118, 95, 58), hair_style="short",
    brow_rgb=(120, 90, 60), eye_rgb=(110, 80, 55), lip_rgb=(205, 125, 120),
    shirt_rgb=(220, 90, 53), background_rgb=((214, 206, 202), (200, 192, 188)),
    freckles=0.1, moles=0, wrinkles=0.2, texture_seed=0)


def portrait_renderer(image_size: int) -> tuple[FaceRenderer, np.ndarray]:
  """The photographic identity (scikit-image's astronaut) at `image_size`.

  Returns the renderer and its neutral landmarks [68, 2] (pixels of the S x S output). Drive it
  with neutral + (expression offsets), e.g. from the morphable model rescaled to this face.
  """
  _check_size(image_size)
  from skimage import data  # pylint: disable=g-import-not-at-top  (slow import, needed here only)

  x0, y0, side = ASTRONAUT_CROP
  photo = data.astronaut()[y0:y0 + side, x0:x0 + side]
  factor = image_size / side
  atlas = cv2.resize(photo, (image_size, image_size),
                     interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)
  neutral = (ASTRONAUT_LANDMARKS - [x0, y0] + 0.5) * factor - 0.5
  return FaceRenderer(ASTRONAUT_APPEARANCE, int(image_size), neutral, atlas=atlas), neutral


def benchmark(image_size: int = 128, frames: int = 200, seed: int = 0) -> float:
  """Frames per second of `render` on one CPU thread for a random identity talking."""
  rng = np.random.default_rng(seed)
  appearance = appearance_lib.sample_appearance(rng)
  scale = 0.25 * image_size
  neutral = TEMPLATE_LANDMARKS * scale + [image_size / 2, 0.45 * image_size]
  renderer = FaceRenderer(appearance, image_size, neutral)
  opening = 0.5 + 0.5 * np.sin(np.linspace(0, 6 * np.pi, frames))
  sequence = np.repeat(neutral[None], frames, 0)
  sequence[:, 5:12, 1] += 0.25 * scale * opening[:, None]
  sequence[:, 55:60, 1] += 0.3 * scale * opening[:, None]
  sequence[:, 65:68, 1] += 0.3 * scale * opening[:, None]
  threads = cv2.getNumThreads()
  cv2.setNumThreads(1)
  try:
    start = time.perf_counter()
    renderer.render_sequence(sequence)
    elapsed = time.perf_counter() - start
  finally:
    cv2.setNumThreads(threads)
  return frames / elapsed
