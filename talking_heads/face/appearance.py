"""Identity appearance for the synthetic face renderer: parameters, sampling and the texture atlas.

An `Appearance` says what one synthetic person looks like (skin, hair, eyes, lips, clothes,
background, skin detail); `sample_appearance` draws one from a numpy Generator, and `paint_atlas`
paints that person once, in their neutral landmark layout, into a static RGB image (the atlas)
that `talking_heads.face.render.FaceRenderer` warps onto every frame's landmarks.

Geometry convention (shared with render.py): points are (x, y) pixels, x right, y down, pixel
centres at integer coordinates. Head-relative shapes (hair, ears, neck, torso) are described in
"template units": a frontal face frame whose origin is between the eyes, x towards image right,
y down, with the jaw 2 units wide; a 2x3 similarity `tmpl_to_img` maps it into the image.
Colours are RGB triples of ints in [0, 255].
"""

from __future__ import annotations

import colorsys
import dataclasses

import cv2
import numpy as np

RGB = tuple[int, int, int]

HAIR_STYLES = ("short", "bob", "long", "curly", "buzz", "bald")
BACKGROUND_STYLES = ("gradient", "bokeh", "panels")

# Skin tones from very light to very dark; sampled by interpolating between neighbours.
_SKIN_PALETTE = np.array([
    (250, 222, 200), (238, 196, 170), (226, 178, 146), (205, 150, 112),
    (176, 120, 86), (140, 92, 62), (104, 66, 44), (78, 50, 36)], np.float32)
_HAIR_PALETTE = np.array([
    (22, 18, 16), (48, 32, 24), (86, 58, 38), (128, 88, 56), (176, 128, 76),
    (214, 178, 122), (142, 62, 34), (160, 156, 150), (218, 214, 206)], np.float32)
_EYE_PALETTE = np.array([
    (58, 34, 20), (96, 60, 32), (112, 96, 52), (70, 110, 70), (70, 110, 150),
    (104, 128, 140)], np.float32)

# Light direction (x right, y down, z towards the camera): a key light from the upper left.
_LIGHT = np.array([-0.25, -0.45, 0.86], np.float32) / np.linalg.norm([-0.25, -0.45, 0.86])


def _check_rgb(name: str, value: RGB) -> None:
  if (len(value) != 3 or any(not isinstance(c, (int, np.integer)) for c in value)
      or any(not 0 <= c <= 255 for c in value)):
    raise ValueError(f"Appearance.{name}: expected three ints in [0, 255], got {value!r}.")


@dataclasses.dataclass(frozen=True)
class Appearance:
  """What one synthetic identity looks like; hashable, picklable and cheap to rebuild from.

  Attributes:
    skin_rgb: base skin colour.
    hair_rgb: hair colour (also tints the stubble of the "buzz" style).
    hair_style: one of `HAIR_STYLES`.
    brow_rgb: eyebrow colour.
    eye_rgb: iris colour.
    lip_rgb: lip colour.
    shirt_rgb: colour of the clothes on the torso.
    background_rgb: (top, bottom) background colours.
    background_style: one of `BACKGROUND_STYLES`.
    freckles: freckle density in [0, 1].
    moles: number of moles on the face, 0-6.
    wrinkles: wrinkle strength in [0, 1] (forehead lines, crow's feet, nasolabial folds).
    pores: strength of the fine pore texture in [0, 2].
    hair_volume: size of the hair mass relative to the skull, in [0.8, 1.3].
    texture_seed: seed of every random detail painted into the atlas.
  """
  skin_rgb: RGB = (226, 178, 146)
  hair_rgb: RGB = (86, 58, 38)
  hair_style: str = "short"
  brow_rgb: RGB = (62, 42, 30)
  eye_rgb: RGB = (96, 60, 32)
  lip_rgb: RGB = (180, 96, 92)
  shirt_rgb: RGB = (60, 80, 120)
  background_rgb: tuple[RGB, RGB] = ((180, 186, 192), (120, 126, 134))
  background_style: str = "gradient"
  freckles: float = 0.0
  moles: int = 1
  wrinkles: float = 0.2
  pores: float = 1.0
  hair_volume: float = 1.0
  texture_seed: int = 0

  def __post_init__(self):
    for name in ("skin_rgb", "hair_rgb", "brow_rgb", "eye_rgb", "lip_rgb", "shirt_rgb"):
      _check_rgb(name, getattr(self, name))
    if len(self.background_rgb) != 2:
      raise ValueError("Appearance.background_rgb: expected (top, bottom) colours, got "
                       f"{self.background_rgb!r}.")
    for colour in self.background_rgb:
      _check_rgb("background_rgb", colour)
    if self.hair_style not in HAIR_STYLES:
      raise ValueError(f"Appearance.hair_style: {self.hair_style!r} is not one of {HAIR_STYLES}.")
    if self.background_style not in BACKGROUND_STYLES:
      raise ValueError(f"Appearance.background_style: {self.background_style!r} is not one of "
                       f"{BACKGROUND_STYLES}.")
    for name, lo, hi in (("freckles", 0, 1), ("wrinkles", 0, 1), ("pores", 0, 2),
                         ("hair_volume", 0.8, 1.3), ("moles", 0, 6)):
      if not lo <= getattr(self, name) <= hi:
        raise ValueError(f"Appearance.{name}: {getattr(self, name)!r} is outside [{lo}, {hi}].")


def _rgb(values: np.ndarray) -> RGB:
  return tuple(int(round(float(c))) for c in np.clip(values, 0, 255))


def _hsv_rgb(h: float, s: float, v: float) -> RGB:
  return _rgb(255.0 * np.array(colorsys.hsv_to_rgb(h, s, v)))


def sample_appearance(rng: np.random.Generator) -> Appearance:
  """Draws a random identity; the same generator state gives the same `Appearance`."""
  tone = rng.uniform(0.0, 1.0)
  position = tone * (len(_SKIN_PALETTE) - 1)
  lo = int(np.floor(position))
  hi = min(lo + 1, len(_SKIN_PALETTE) - 1)
  skin = _SKIN_PALETTE[lo] + (position - lo) * (_SKIN_PALETTE[hi] - _SKIN_PALETTE[lo])
  skin = skin * rng.uniform(0.96, 1.04, 3)
  # Darker skin goes with darker hair and eyes more often.
  hair_weights = np.array([3, 3, 2, 1.5, 1, 1, 0.6, 0.6, 0.4]) * np.array(
      [1 + 3 * tone, 1 + 2 * tone, 1, 1, 1 - 0.8 * tone, 1 - 0.9 * tone, 1 - 0.9 * tone, 1, 1])
  hair = _HAIR_PALETTE[rng.choice(len(_HAIR_PALETTE), p=hair_weights / hair_weights.sum())]
  hair = hair * rng.uniform(0.85, 1.15)
  eye_weights = np.array([3, 2, 1, 1, 1, 0.6]) * np.array(
      [1 + 4 * tone, 1 + tone, 1, 1 - 0.9 * tone, 1 - 0.9 * tone, 1 - 0.9 * tone])
  eye = _EYE_PALETTE[rng.choice(len(_EYE_PALETTE), p=eye_weights / eye_weights.sum())]
  lip = (0.55 * skin + 0.45 * np.array([176, 64, 74])) * rng.uniform(0.82, 1.0)
  grey = hair.mean() > 140 and abs(hair[0] - hair[2]) < 20
  brow = hair * (0.9 if grey else 0.7)
  style = HAIR_STYLES[rng.choice(len(HAIR_STYLES), p=[0.28, 0.2, 0.22, 0.12, 0.1, 0.08])]
  top = _hsv_rgb(rng.uniform(), rng.uniform(0.05, 0.35), rng.uniform(0.45, 0.92))
  bottom = _rgb(np.array(top) * rng.uniform(0.55, 0.95) + rng.normal(0, 8, 3))
  return Appearance(
      skin_rgb=_rgb(skin), hair_rgb=_rgb(hair), hair_style=style, brow_rgb=_rgb(brow),
      eye_rgb=_rgb(eye * rng.uniform(0.85, 1.15)), lip_rgb=_rgb(lip),
      shirt_rgb=_hsv_rgb(rng.uniform(), rng.uniform(0.1, 0.8), rng.uniform(0.15, 0.9)),
      background_rgb=(top, bottom),
      background_style=BACKGROUND_STYLES[rng.choice(len(BACKGROUND_STYLES))],
      freckles=float(rng.uniform() ** 2.5 if tone < 0.5 else 0.0),
      moles=int(rng.choice(4, p=[0.45, 0.35, 0.15, 0.05])),
      wrinkles=float(rng.uniform(0.0, 1.0) ** 1.5),
      pores=float(rng.uniform(0.6, 1.6)),
      hair_volume=float(rng.uniform(0.9, 1.2)),
      texture_seed=int(rng.integers(2**31 - 1)))


@dataclasses.dataclass(frozen=True)
class Atlas:
  """One identity painted in its neutral layout.

  Attributes:
    image: uint8 [S, S, 3] RGB.
    skin: float32 [S, S] in [0, 1], the bare skin of the face (no hair, brows, eyes or lips).
    head: float32 [S, S] in [0, 1], the whole head: face and skull, ears and hair (not the neck;
      face parsing's head classes).
  """
  image: np.ndarray
  skin: np.ndarray
  head: np.ndarray


def catmull_rom(points: np.ndarray, samples: int, closed: bool = False) -> np.ndarray:
  """Samples a Catmull-Rom spline through `points` [P, 2]; returns [samples, 2]."""
  points = np.asarray(points, np.float64)
  if closed:
    ext = np.concatenate([points[-1:], points, points[:2]])
    segments = len(points)
  else:
    ext = np.concatenate([2 * points[:1] - points[1:2], points, 2 * points[-1:] - points[-2:-1]])
    segments = len(points) - 1
  t = np.linspace(0.0, segments, samples, endpoint=not closed)
  i = np.minimum(np.floor(t).astype(int), segments - 1)
  f = (t - i)[:, None]
  p0, p1, p2, p3 = ext[i], ext[i + 1], ext[i + 2], ext[i + 3]
  return 0.5 * (2 * p1 + (p2 - p0) * f + (2 * p0 - 5 * p1 + 4 * p2 - p3) * f**2
                + (3 * p1 - p0 - 3 * p2 + p3) * f**3)


class _Canvas:
  """A supersampled float canvas that knows the template frame of every pixel."""

  def __init__(self, size: int, supersample: int, tmpl_to_img: np.ndarray):
    self.ss = supersample
    self.n = size * supersample
    # Image pixel centre p sits at canvas coordinate ss * p + (ss - 1) / 2.
    m = np.asarray(tmpl_to_img, np.float64)
    self.t2c = np.concatenate([m[:, :2] * self.ss, m[:, 2:] * self.ss + (self.ss - 1) / 2], 1)
    self.ppu = float(np.sqrt(abs(np.linalg.det(self.t2c[:, :2]))))  # canvas pixels per unit
    inv = cv2.invertAffineTransform(self.t2c)
    ys, xs = np.mgrid[0:self.n, 0:self.n].astype(np.float32)
    self.u = (inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]).astype(np.float32)
    self.v = (inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]).astype(np.float32)
    self.img = np.zeros((self.n, self.n, 3), np.float32)

  def tmpl(self, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, np.float64)
    return points @ self.t2c[:, :2].T + self.t2c[:, 2]

  def from_image(self, points: np.ndarray) -> np.ndarray:
    return np.asarray(points, np.float64) * self.ss + (self.ss - 1) / 2

  def fill(self, polygons: list[np.ndarray], blur: float = 0.0) -> np.ndarray:
    """Anti-aliased mask of canvas-space polygons, optionally blurred by `blur` units."""
    mask = np.zeros((self.n, self.n), np.uint8)
    pts = [np.round(np.asarray(p) * 16).astype(np.int32) for p in polygons]
    cv2.fillPoly(mask, pts, 255, cv2.LINE_AA, 4)
    return self.blur_near(mask, np.concatenate(polygons), 0.0, blur)

  def stroke(self, curve: np.ndarray, width: float, blur: float = 0.0) -> np.ndarray:
    """Mask of an open canvas-space polyline `width` units wide."""
    mask = np.zeros((self.n, self.n), np.uint8)
    thickness = max(1, int(round(width * self.ppu)))
    cv2.polylines(mask, [np.round(np.asarray(curve) * 16).astype(np.int32)], False, 255,
                  thickness, cv2.LINE_AA, 4)
    return self.blur_near(mask, np.asarray(curve), thickness, blur)

  def blur_near(self, mask: np.ndarray, points: np.ndarray, pad: float,
                 units: float) -> np.ndarray:
    """uint8 mask -> float mask, blurred only around `points` (where it can be non-zero)."""
    out = mask.astype(np.float32) / 255.0
    if units <= 0:
      return out
    sigma = max(units * self.ppu, 0.3)
    margin = pad + 4 * sigma + 2
    x0, y0 = np.maximum(np.floor(points.min(0) - margin).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(points.max(0) + margin).astype(int), self.n)
    if x1 > x0 and y1 > y0:
      out[y0:y1, x0:x1] = cv2.GaussianBlur(out[y0:y1, x0:x1], (0, 0), sigma)
    return out

  def blur(self, mask: np.ndarray, units: float) -> np.ndarray:
    if units <= 0:
      return mask
    sigma = max(units * self.ppu, 0.3)
    factor = int(sigma // 3)
    if factor < 2:
      return cv2.GaussianBlur(mask, (0, 0), sigma)
    # Wide blurs run on a downscaled copy: same result to within interpolation, much cheaper.
    small = cv2.resize(mask, (self.n // factor,) * 2, interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
    return cv2.resize(small, (self.n, self.n), interpolation=cv2.INTER_LINEAR)

  def gauss(self, centre: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Gaussian bump in template units, evaluated only where it exceeds ~1e-4."""
    out = np.zeros((self.n, self.n), np.float32)
    corners = self.tmpl(np.array([[centre[0] + a * sx, centre[1] + b * sy]
                                  for a in (-4.3, 4.3) for b in (-4.3, 4.3)]))
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 1, self.n)
    if x1 > x0 and y1 > y0:
      u, v = self.u[y0:y1, x0:x1], self.v[y0:y1, x0:x1]
      out[y0:y1, x0:x1] = np.exp(-0.5 * (((u - centre[0]) / sx) ** 2 + ((v - centre[1]) / sy) ** 2))
    return out

  def segment_distance(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared distance (units^2) of every pixel to segment ab, and its parameter t in [0, 1]."""
    d = np.asarray(b, np.float32) - np.asarray(a, np.float32)
    du, dv = self.u - a[0], self.v - a[1]
    t = np.clip((du * d[0] + dv * d[1]) / float(d @ d), 0.0, 1.0)
    return (du - t * d[0]) ** 2 + (dv - t * d[1]) ** 2, t

  def over(self, alpha: np.ndarray, colour: np.ndarray) -> None:
    """Composites `colour` (RGB in [0, 1], per pixel or constant) with coverage `alpha`."""
    rows = np.flatnonzero(alpha.max(1) > 1e-4)
    cols = np.flatnonzero(alpha.max(0) > 1e-4)
    if not len(rows):
      return
    box = np.s_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    colour = np.asarray(colour, np.float32)
    if colour.ndim == 3:
      colour = colour[box]
    a = alpha[box][..., None]
    self.img[box] = self.img[box] * (1.0 - a) + colour * a

  def noise(self, rng: np.random.Generator, units: float) -> np.ndarray:
    """Unit-variance smooth noise with correlation length `units`."""
    sigma = max(units * self.ppu, 0.3)
    factor = max(int(sigma // 3), 1)
    n = rng.standard_normal((self.n // factor,) * 2).astype(np.float32)
    n = cv2.GaussianBlur(n, (0, 0), sigma / factor)
    if factor > 1:
      n = cv2.resize(n, (self.n, self.n), interpolation=cv2.INTER_CUBIC)
    return n / max(float(n.std()), 1e-6)


def _skin_array(appearance: Appearance) -> np.ndarray:
  return np.asarray(appearance.skin_rgb, np.float32) / 255.0


def _background(c: _Canvas, app: Appearance, rng: np.random.Generator) -> None:
  top, bottom = (np.asarray(x, np.float32) / 255.0 for x in app.background_rgb)
  y = np.linspace(0.0, 1.0, c.n, dtype=np.float32)[:, None, None]
  c.img = np.broadcast_to(top + (bottom - top) * y, c.img.shape).copy()
  if app.background_style == "bokeh":
    for _ in range(int(rng.integers(10, 20))):
      centre = rng.uniform(0, c.n, 2)
      radius = rng.uniform(0.03, 0.12) * c.n
      tint = np.clip(top * rng.uniform(1.0, 1.5) + rng.normal(0, 0.08, 3), 0, 1)
      disc = np.zeros((c.n, c.n), np.uint8)
      cv2.circle(disc, tuple(np.round(centre * 16).astype(int)), int(radius * 16), 255, -1,
                 cv2.LINE_AA, 4)
      c.over(disc.astype(np.float32) / 255.0 * rng.uniform(0.15, 0.4), tint)
    c.img = cv2.GaussianBlur(c.img, (0, 0), 0.012 * c.n)
  elif app.background_style == "panels":
    period = rng.uniform(0.12, 0.3) * c.n
    phase = rng.uniform(0, period)
    xs = (np.arange(c.n, dtype=np.float32) + phase) % period
    groove = np.exp(-0.5 * (np.minimum(xs, period - xs) / (0.004 * c.n + 0.5)) ** 2)
    ramp = 1.0 - 0.06 * (xs / period)
    c.img *= (ramp * (1.0 - 0.25 * groove))[None, :, None]
  # Soft light behind the head and a gentle vignette.
  ys, xs = np.mgrid[0:c.n, 0:c.n].astype(np.float32) / c.n
  head = c.tmpl(np.array([[0.0, -0.2]]))[0] / c.n
  glow = np.exp(-((xs - head[0]) ** 2 + (ys - head[1]) ** 2) / 0.08)
  vignette = 1.0 - 0.18 * ((xs - 0.5) ** 2 + (ys - 0.5) ** 2) / 0.5
  c.img *= ((1.0 + 0.12 * glow) * vignette)[..., None]


def _torso(c: _Canvas, app: Appearance, rng: np.random.Generator) -> None:
  half = np.array([(0.58, 1.95), (0.95, 2.3), (1.7, 2.55), (2.35, 2.85), (2.75, 3.4),
                   (2.95, 6.0)])
  half[:, 0] *= rng.uniform(0.92, 1.08)
  outline = np.concatenate([half * [-1, 1], half[::-1]])
  shirt = c.fill([c.tmpl(catmull_rom(outline, 200))], blur=0.01)
  shirt_rgb = np.asarray(app.shirt_rgb, np.float32) / 255.0
  light = 1.0 - 0.22 * np.clip(np.abs(c.u) / 3.0, 0, 1) - 0.1 * np.clip(c.u / 3.0, -1, 1)
  folds = 1.0 + 0.05 * c.noise(rng, 0.15) + 0.015 * c.noise(rng, 0.01)
  c.over(shirt, shirt_rgb * (light * folds)[..., None])


def _neck(c: _Canvas, app: Appearance, neckline: float) -> None:
  """Paints the neck down to a round collar at height `neckline` (template units)."""
  half = np.array([(0.6, 0.4), (0.56, 1.2), (0.53, 1.7), (0.58, 2.05), (0.66, neckline + 0.2)])
  curve = catmull_rom(np.concatenate([half * [-1, 1], half[::-1]]), 120)
  neck = c.fill([c.tmpl(curve)], blur=0.008)
  # Round collar: skin above the neckline curve only.
  collar_v = neckline + 0.28 * (1 - np.clip(c.u / 0.66, -1, 1) ** 2)
  neck *= np.clip((collar_v - c.v) * c.ppu, 0, 1)
  cylinder = np.sqrt(np.clip(1.0 - (c.u / 0.62) ** 2, 0.05, 1.0))
  shade = 0.55 + 0.45 * cylinder - 0.08 * np.clip(c.u / 0.6, -1, 1)
  c.over(neck, _skin_array(app)[None, None] * 0.9 * shade[..., None] ** [0.8, 1.0, 1.15])
  u_collar = np.linspace(-0.7, 0.7, 60)
  collar = np.stack([u_collar, neckline + 0.28 * (1 - np.clip(u_collar / 0.66, -1, 1) ** 2)], 1)
  band = c.stroke(c.tmpl(collar), 0.07, blur=0.01)
  shirt = np.asarray(app.shirt_rgb, np.float32) / 255.0
  c.over(band * (c.v > 1.8), shirt * 0.72)


def _ears(c: _Canvas, app: Appearance, lt: np.ndarray) -> np.ndarray:
  skin = _skin_array(app)
  masks = []
  for side, idx in ((-1, (1, 2)), (1, (15, 14))):
    top, bottom = lt[idx[0]], lt[idx[1]]
    centre = np.array([(top[0] + bottom[0]) / 2 + side * 0.07, (top[1] + bottom[1]) / 2 - 0.05])
    d = np.sqrt(((c.u - centre[0]) / 0.14) ** 2 + ((c.v - centre[1]) / 0.3) ** 2)
    ear = np.clip((1.0 - d) * 0.14 * c.ppu, 0, 1)
    inner = np.exp(-0.5 * (((c.u - centre[0] + side * 0.02) / 0.05) ** 2
                           + ((c.v - centre[1]) / 0.15) ** 2))
    colour = skin * np.array([1.0, 0.9, 0.88]) * (0.9 - 0.3 * inner)[..., None]
    c.over(ear, colour)
    masks.append(ear)
  return np.maximum(*masks)


def _jaw_profile(lt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Jaw centre and half width as functions of height, sampled on a fixed v grid."""
  vs = np.linspace(-2.0, 4.0, 601)
  left = np.interp(vs, lt[0:9, 1], lt[0:9, 0], left=lt[0, 0], right=lt[8, 0])
  right = np.interp(vs, lt[16:7:-1, 1], lt[16:7:-1, 0], left=lt[16, 0], right=lt[8, 0])
  half = np.where(vs > lt[8, 1], 0.0, (right - left) / 2)
  return vs, (left + right) / 2, half


def _height_field(c: _Canvas, lt: np.ndarray, face: np.ndarray, wrinkles: float) -> np.ndarray:
  """Pseudo depth of the face in template units, from landmarks; drives the shading."""
  inside = cv2.distanceTransform((face > 0.5).astype(np.uint8), cv2.DIST_L2, 5) / c.ppu
  h = 0.55 * np.sqrt(np.clip(1 - (c.u / 1.1) ** 2 - ((c.v - 0.3) / 1.9) ** 2, 0, 1))
  # The distance field creases along the polygon's medial axis: blur it into a smooth bulge.
  h += 0.45 * c.blur(np.sqrt(np.clip(inside / 0.4, 0, 1)), 0.12)
  dist2, t = c.segment_distance(lt[27], lt[30])
  h += (0.04 + 0.16 * t**1.5) * np.exp(-0.5 * dist2 / (0.055 + 0.05 * t) ** 2)
  h += 0.07 * c.gauss(lt[30] + [0, 0.02], 0.085, 0.075)
  for i in (31, 35):
    h += 0.05 * c.gauss(lt[i] + [0, -0.04], 0.065, 0.06)
  for eye, brow in ((slice(36, 42), slice(17, 22)), (slice(42, 48), slice(22, 27))):
    centre = lt[eye].mean(0)
    h -= 0.08 * c.gauss(centre, 0.2, 0.13)
    h += 0.045 * c.gauss(centre, 0.1, 0.065)
    h += 0.05 * c.gauss(lt[brow].mean(0) + [0, 0.04], 0.3, 0.09)
  for i, j in ((36, 48), (45, 54)):
    cheek = (lt[i] + lt[j]) / 2 + [np.sign(lt[i][0] - lt[27][0]) * 0.1, -0.05]
    h += 0.06 * c.gauss(cheek, 0.22, 0.2)
  mouth = lt[48:60].mean(0)
  h += 0.07 * c.gauss(mouth, 0.36, 0.24)
  h += 0.025 * c.gauss((lt[51] + lt[62]) / 2, 0.2, 0.035)
  h += 0.03 * c.gauss((lt[57] + lt[66]) / 2, 0.2, 0.045)
  h -= 0.025 * c.gauss(lt[57] + [0, 0.12], 0.2, 0.045)
  h += 0.05 * c.gauss(lt[8] + [0, -0.2], 0.2, 0.15)
  for i, j, side in ((31, 48, -1), (35, 54, 1)):
    dist2, _ = c.segment_distance(lt[i] + [side * 0.06, 0.0], lt[j] + [side * 0.08, 0.12])
    h -= (0.01 + 0.025 * wrinkles) * np.exp(-0.5 * dist2 / 0.035**2)
  for i in (50, 52):
    dist2, _ = c.segment_distance(lt[33] + [0, 0.02], lt[i] + [0, -0.01])
    h += 0.006 * np.exp(-0.5 * dist2 / 0.018**2)
  return h


def _shade(c: _Canvas, height: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Lambert shade (1 on a surface facing the camera) and a specular term."""
  hy, hx = np.gradient(height * c.ppu)
  norm = np.sqrt(hx**2 + hy**2 + 1.0)
  nx, ny, nz = -hx / norm, -hy / norm, 1.0 / norm
  lambert = np.maximum(nx * _LIGHT[0] + ny * _LIGHT[1] + nz * _LIGHT[2], 0.0) / _LIGHT[2]
  half = _LIGHT + np.array([0, 0, 1], np.float32)
  half /= np.linalg.norm(half)
  spec = np.maximum(nx * half[0] + ny * half[1] + nz * half[2], 0.0) ** 40
  return (0.42 + 0.58 * lambert).astype(np.float32), spec.astype(np.float32)


def _hair_geometry(style: str, volume: float, rng: np.random.Generator):
  """Silhouette ellipse parameters and hairline of a style, in template units."""
  part = rng.uniform(-0.3, 0.3)
  geometry = {
      "short": dict(centre=(0, -0.4), rx=1.04 + 0.1 * volume, ry_up=1.12 + 0.1 * volume,
                    ry_down=0.45, power=2.0, bottom=0.05, temple=0.9,
                    hairline=lambda u: (-0.93 + 0.25 * (u / 0.9) ** 2
                                        + 0.05 * np.tanh(6 * (u - part)))),
      "bob": dict(centre=(0, -0.2), rx=1.0 + 0.32 * volume, ry_up=1.3 + 0.08 * volume,
                  ry_down=1.38, power=4.0, bottom=1.3, temple=0.86,
                  hairline=lambda u: -0.48 + 0.08 * (u / 0.9) ** 2),
      "long": dict(centre=(0, 0.3), rx=1.0 + 0.3 * volume, ry_up=1.8 + 0.06 * volume,
                   ry_down=2.7, power=6.0, bottom=3.2, temple=0.8,
                   hairline=lambda u: -0.97 + 0.5 * np.abs((u - 0.4 * part) / 0.9) ** 1.5),
      "curly": dict(centre=(0, -0.45), rx=1.05 + 0.45 * volume, ry_up=1.12 + 0.22 * volume,
                    ry_down=1.05, power=2.0, bottom=0.65, temple=0.88,
                    hairline=lambda u: -0.82 + 0.22 * (u / 0.9) ** 2),
      "buzz": dict(centre=(0, -0.36), rx=1.06, ry_up=1.2, ry_down=0.3, power=2.0, bottom=-0.1,
                   temple=0.92, hairline=lambda u: -1.0 + 0.3 * (u / 0.9) ** 2),
  }
  return geometry[style]


def _strand_texture(c: _Canvas, rng: np.random.Generator, crown: np.ndarray) -> np.ndarray:
  """Hair strands radiating from the crown: noise stretched along the radius, in polar space."""
  rows = 256
  r_max = 6.0
  cols = int(np.clip(2 * np.pi * 1.3 * c.ppu, 256, 8192))
  def periodic_blur(sigma_x: float, sigma_y: float) -> np.ndarray:
    # Angle wraps around: pad with the opposite side so the texture has no seam.
    noise = rng.standard_normal((rows, cols)).astype(np.float32)
    pad = int(4 * sigma_x) + 1
    wide = np.concatenate([noise[:, -pad:], noise, noise[:, :pad]], 1)
    out = cv2.GaussianBlur(wide, (0, 0), sigmaX=sigma_x, sigmaY=sigma_y)[:, pad:-pad]
    return out / out.std()

  tex = 0.7 * periodic_blur(0.7, 0.3 * rows / r_max) + 0.5 * periodic_blur(cols / 300,
                                                                           0.6 * rows / r_max)
  theta = np.arctan2(c.v - crown[1], c.u - crown[0])
  radius = np.hypot(c.u - crown[0], c.v - crown[1])
  map_x = ((theta + np.pi) / (2 * np.pi) * cols).astype(np.float32)
  map_y = (radius / r_max * rows).astype(np.float32)
  return cv2.remap(tex, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


def _curly_texture(c: _Canvas, rng: np.random.Generator) -> np.ndarray:
  return np.sin(6.0 * c.noise(rng, 0.035)) + 0.5 * c.noise(rng, 0.008)


def _hair(c: _Canvas, app: Appearance, rng: np.random.Generator, lt: np.ndarray,
          face: np.ndarray) -> np.ndarray:
  """Paints the hair in front of the face and its shadow on the skin; returns the hair alpha."""
  g = _hair_geometry(app.hair_style, app.hair_volume, rng)
  cx, cy = g["centre"]
  soft = 1.5 / c.ppu
  du = (c.u - cx) / g["rx"]
  below = c.v > cy
  dv = (c.v - cy) / np.where(below, g["ry_down"], g["ry_up"])
  power = np.where(below, g["power"], 2.0)
  theta = np.arctan2(c.v - cy, c.u - cx)
  radius = (np.abs(du) ** power + np.abs(dv) ** power) ** (1.0 / power)
  if app.hair_style == "curly":
    phase = rng.uniform(0, 2 * np.pi, 2)
    radius /= 1.0 + 0.035 * np.sin(11 * theta + phase[0]) + 0.02 * np.sin(23 * theta + phase[1])
  crown = np.array([cx + rng.uniform(-0.15, 0.15), -2.2])
  if app.hair_style == "curly":
    tex = _curly_texture(c, rng)
  elif app.hair_style == "buzz":
    tex = c.noise(rng, 0.004)
  else:
    tex = _strand_texture(c, rng, crown)
  silhouette = np.clip((1.0 - radius) * g["rx"] / soft, 0, 1)
  silhouette *= np.clip((g["bottom"] - c.v + 0.04 * tex) / soft, 0, 1)

  vs, centre, half = _jaw_profile(lt)
  jaw_top = lt[0, 1] / 2 + lt[16, 1] / 2
  uc = np.interp(c.v, vs, centre).astype(np.float32)
  blend = np.clip((c.v - (jaw_top - 0.5)) / 0.5, 0, 1)
  top_half = float(np.interp(jaw_top, vs, half))
  hw = np.where(c.v < jaw_top, g["temple"] + (top_half - g["temple"]) * blend,
                np.interp(c.v, vs, half)) - 0.02
  # Fringes end in strand tips; combed-back hair fades in over a soft hairline.
  tips = app.hair_style in ("bob", "long")
  hairline = g["hairline"](c.u - uc) + (0.012 if tips else 0.005) * np.clip(tex, -2, 2)
  hairline_soft = soft if tips else 2.5 * soft
  face_window = (np.clip((hw - np.abs(c.u - uc)) / soft, 0, 1)
                 * np.clip((c.v - hairline) / hairline_soft, 0, 1))
  neck_window = (np.clip((0.58 - np.abs(c.u - lt[8, 0])) / soft, 0, 1)
                 * np.clip((c.v - jaw_top - 0.4) / soft, 0, 1))
  alpha = silhouette * (1.0 - np.maximum(face_window, neck_window))
  if app.hair_style == "buzz":
    alpha *= 0.7

  base = np.asarray(app.hair_rgb, np.float32) / 255.0
  nz = np.sqrt(np.clip(1.0 - du**2 - np.minimum(dv, 1) ** 2, 0.12, 1.0))
  norm = np.sqrt(du**2 + dv**2 + nz**2)
  lambert = np.maximum((du * _LIGHT[0] + dv * _LIGHT[1] + nz * _LIGHT[2]) / norm, 0) / _LIGHT[2]
  shade = 0.45 + 0.55 * lambert
  strands = np.clip(1.0 + 0.2 * tex, 0.4, 1.6)
  colour = base * (shade * strands)[..., None]
  if app.hair_style not in ("buzz", "curly"):
    r = np.hypot(c.u - crown[0], c.v - crown[1])
    sheen = np.exp(-0.5 * ((r - 1.5) / 0.16) ** 2) * np.clip(0.6 + 0.4 * tex, 0, 1.5) * lambert
    colour += 0.2 * sheen[..., None] * (0.6 * base + 0.12)
  shadow = np.roll(c.blur(alpha, 0.04), int(round(0.05 * c.ppu)), axis=0)
  c.img *= (1.0 - 0.35 * shadow * (1.0 - alpha) * face)[..., None]
  c.over(alpha, np.clip(colour, 0, 1))
  return alpha


def _eye_surroundings(c: _Canvas, app: Appearance, lt: np.ndarray) -> np.ndarray:
  """Lids, creases and lid shadows; the eyeballs themselves are drawn per frame."""
  skin = _skin_array(app)
  mask = np.zeros((c.n, c.n), np.float32)
  for corners, upper, lower in (((36, 39), (36, 37, 38, 39), (39, 40, 41, 36)),
                                ((45, 42), (45, 44, 43, 42), (42, 47, 46, 45))):
    width = float(np.linalg.norm(lt[corners[0]] - lt[corners[1]]))
    out = np.sign(lt[corners[0], 0] - lt[corners[1], 0])
    lid = lt[list(upper)]
    crease = lid + np.array([[out * 0.02, -0.02], [0, -0.3 * width], [0, -0.3 * width],
                             [-out * 0.01, -0.05]])
    crease_curve = c.tmpl(catmull_rom(crease, 40))
    lid_band = c.fill([np.concatenate([c.tmpl(catmull_rom(lid, 40)), crease_curve[::-1]])],
                      blur=0.015)
    c.over(0.35 * lid_band, skin * np.array([0.78, 0.66, 0.66]))
    c.over(0.4 * c.stroke(crease_curve, 0.014, blur=0.008), skin * 0.5)
    lower_curve = c.tmpl(catmull_rom(lt[list(lower)] + [0, 0.02], 30))
    c.over(0.2 * c.stroke(lower_curve, 0.012, blur=0.01), skin * 0.62)
    opening = c.fill([c.tmpl(lt[list(upper) + list(lower[1:3])])])
    c.over(opening, skin * np.array([0.55, 0.42, 0.42]))
    mask = np.maximum(mask, opening)
  return mask


def _brows(c: _Canvas, app: Appearance, rng: np.random.Generator, lt: np.ndarray) -> np.ndarray:
  colour = np.asarray(app.brow_rgb, np.float32) / 255.0
  alpha = np.zeros((c.n, c.n), np.float32)
  for idx in ((21, 20, 19, 18, 17), (22, 23, 24, 25, 26)):
    curve = catmull_rom(lt[list(idx)], 64)
    tangent = np.gradient(curve, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.stack([tangent[:, 1], -tangent[:, 0]], 1)
    normal *= np.sign(-normal[:, 1:2] + 1e-9)  # point up the forehead
    thick = 0.09 * (1.0 - 0.6 * np.linspace(0, 1, len(curve))) + 0.01
    body = np.concatenate([curve + normal * thick[:, None] * 0.55,
                           (curve - normal * thick[:, None] * 0.45)[::-1]])
    base = c.fill([c.tmpl(body)], blur=0.012)
    strokes = np.zeros((c.n, c.n), np.uint8)
    count = int(np.clip(np.ptp(c.tmpl(curve)[:, 0]) * 0.09 * c.ppu * 0.6, 40, 1500))
    ts = rng.uniform(0, 1, count) ** 0.8
    k = np.minimum((ts * (len(curve) - 1)).astype(int), len(curve) - 1)
    across = np.clip(rng.normal(0, 0.3, count), -0.5, 0.5) * thick[k]
    start = curve[k] + normal[k] * across[:, None]
    lift = np.deg2rad(55 - 45 * ts + rng.normal(0, 8, count))
    direction = (tangent[k] * np.cos(lift)[:, None] + normal[k] * np.sin(lift)[:, None])
    end = start + direction * rng.uniform(0.05, 0.09, count)[:, None]
    for a, b, value in zip(c.tmpl(start), c.tmpl(end), rng.uniform(150, 255, count)):
      cv2.line(strokes, tuple(np.round(a * 16).astype(int)), tuple(np.round(b * 16).astype(int)),
               int(value), 1, cv2.LINE_AA, 4)
    hairs = c.blur(strokes.astype(np.float32) / 255.0, 0.003)
    alpha = np.maximum(alpha, np.maximum(0.6 * base, hairs * (0.5 + 0.5 * base)))
  c.over(alpha, colour)
  return alpha


def _nose(c: _Canvas, app: Appearance, lt: np.ndarray) -> None:
  skin = _skin_array(app)
  for outer, inner in ((31, 32), (35, 34)):
    centre = lt[outer] + 0.5 * (lt[inner] - lt[outer]) + [0, -0.012]
    angle = np.degrees(np.arctan2(*(lt[inner] - lt[outer])[::-1]))
    size = 0.5 * float(np.linalg.norm(lt[inner] - lt[outer]))
    mask = np.zeros((c.n, c.n), np.uint8)
    centre_c = c.tmpl(centre[None])[0]
    cv2.ellipse(mask, tuple(np.round(centre_c * 16).astype(int)),
                (int(size * 1.0 * c.ppu * 16), int(size * 0.45 * c.ppu * 16)),
                angle, 0, 360, 255, -1, cv2.LINE_AA, 4)
    c.over(0.85 * c.blur_near(mask, centre_c[None], size * c.ppu, 0.012),
           skin * [0.32, 0.2, 0.18])
    side = np.sign(lt[outer, 0] - lt[33, 0])
    wing = lt[outer] + np.array([[0.0, 0.02], [side * 0.03, -0.03], [side * 0.0, -0.09],
                                 [-side * 0.04, -0.12]])
    c.over(0.22 * c.stroke(c.tmpl(catmull_rom(wing, 30)), 0.015, blur=0.012), skin * 0.55)


def _lips(c: _Canvas, app: Appearance, rng: np.random.Generator, lt: np.ndarray) -> np.ndarray:
  lip = np.asarray(app.lip_rgb, np.float32) / 255.0
  outer_upper = catmull_rom(lt[48:55], 60)
  outer_lower = catmull_rom(lt[[54, 55, 56, 57, 58, 59, 48]], 60)
  inner_upper = catmull_rom(lt[[60, 61, 62, 63, 64]], 40)
  inner_lower = catmull_rom(lt[[64, 65, 66, 67, 60]], 40)
  upper = c.fill([c.tmpl(np.concatenate([[lt[48]], outer_upper, inner_upper[::-1]]))], 0.01)
  lower = c.fill([c.tmpl(np.concatenate([outer_lower, inner_lower[::-1]]))], 0.01)
  mouth_width = float(np.linalg.norm(lt[54] - lt[48]))
  shine = c.gauss((lt[57] + lt[66]) / 2 + [0, -0.01], 0.22 * mouth_width, 0.03)
  grain = 1.0 + 0.03 * c.noise(rng, 0.004)
  lines = np.cos((c.u - lt[62, 0]) * 90.0) * 0.5 + 0.5
  texture = (grain * (1.0 - 0.04 * lines))[..., None]
  c.over(upper, lip * 0.82 * texture)
  c.over(lower, np.clip(lip * texture * (1.0 + 0.35 * shine[..., None]), 0, 1))
  gap = c.fill([c.tmpl(np.concatenate([inner_upper, inner_lower[1:-1]]))])
  c.over(gap, lip * 0.25)
  c.over(0.55 * c.stroke(c.tmpl(inner_upper), 0.016, blur=0.006), lip * 0.35)
  return np.maximum(upper, lower)


def _skin_marks(c: _Canvas, app: Appearance, rng: np.random.Generator, lt: np.ndarray,
                face: np.ndarray, keep_out: np.ndarray) -> None:
  """Freckles, moles and wrinkles."""
  skin = _skin_array(app)
  spots = np.zeros((c.n, c.n), np.uint8)
  n_freckles = int(app.freckles * 450)
  nose = (lt[29] + lt[30]) / 2
  for _ in range(n_freckles):
    p = nose + rng.normal(0, [0.42, 0.2])
    centre = c.tmpl(p[None])[0]
    x, y = np.round(centre).astype(int)
    if not (0 <= x < c.n and 0 <= y < c.n) or face[y, x] < 0.5 or keep_out[y, x] > 0.1:
      continue
    cv2.circle(spots, tuple(np.round(centre * 16).astype(int)),
               int(rng.uniform(0.005, 0.013) * c.ppu * 16), int(rng.uniform(50, 120)), -1,
               cv2.LINE_AA, 4)
  c.over(c.blur(spots.astype(np.float32) / 255.0, 0.003), skin * [0.74, 0.6, 0.5])
  placed = 0
  while placed < app.moles:
    p = rng.uniform([0.25, -0.8], [0.85, 1.5]) * [rng.choice([-1, 1]), 1]
    centre = c.tmpl(p[None])[0]
    x, y = np.round(centre).astype(int)
    if not (0 <= x < c.n and 0 <= y < c.n) or face[y, x] < 0.9 or keep_out[y, x] > 0.01:
      continue
    mole = np.zeros((c.n, c.n), np.uint8)
    cv2.circle(mole, tuple(np.round(centre * 16).astype(int)),
               int(rng.uniform(0.008, 0.016) * c.ppu * 16), 255, -1, cv2.LINE_AA, 4)
    c.over(0.85 * c.blur_near(mole, centre[None], 0.03 * c.ppu, 0.004), skin * [0.42, 0.3, 0.26])
    placed += 1
  w = app.wrinkles
  if w <= 0.05:
    return
  dark = skin * 0.62
  brow_top = min(lt[17:27, 1]) - 0.12
  for k in range(1 + int(round(3 * w))):
    v = brow_top - 0.09 * k
    us = np.linspace(-0.5 + 0.06 * k, 0.5 - 0.06 * k, 20)
    curve = np.stack([us + lt[27, 0], v + 0.012 * np.sin(us * 9 + rng.uniform(0, 6))
                      + 0.02 * (us / 0.5) ** 2], 1)
    c.over((0.05 + 0.18 * w) * c.stroke(c.tmpl(curve), 0.012, blur=0.006), dark)
  for corner, side in ((36, -1), (45, 1)):
    for angle in (-30, 0, 28):
      a = np.deg2rad(angle)
      start = lt[corner] + [side * 0.05, 0.0]
      end = start + 0.12 * np.array([side * np.cos(a), np.sin(a)])
      c.over((0.1 + 0.3 * w) * c.stroke(c.tmpl(np.stack([start, end])), 0.01, blur=0.004), dark)
  for i, j, side in ((31, 48, -1), (35, 54, 1)):
    fold = np.stack([lt[i] + [side * 0.06, 0.0], (lt[i] + lt[j]) / 2 + [side * 0.11, 0.0],
                     lt[j] + [side * 0.08, 0.12]])
    c.over((0.04 + 0.16 * w) * c.stroke(c.tmpl(catmull_rom(fold, 30)), 0.014, blur=0.012), dark)
  for eye in ((36, 41, 40, 39), (45, 46, 47, 42)):
    bag = lt[list(eye)] + [0, 0.08]
    c.over((0.05 + 0.2 * w) * c.stroke(c.tmpl(catmull_rom(bag, 30)), 0.012, blur=0.008), dark)


def paint_atlas(appearance: Appearance, image_size: int, landmarks: np.ndarray,
                tmpl_to_img: np.ndarray) -> Atlas:
  """Paints `appearance` in the neutral layout `landmarks` [68, 2] (pixels).

  `tmpl_to_img` is the 2x3 similarity from template units to image pixels fitted to the same
  landmarks. Deterministic in `appearance.texture_seed` and `image_size`.
  """
  rng = np.random.default_rng(appearance.texture_seed)
  # Painting at twice the resolution anti-aliases small images; large ones need no help.
  c = _Canvas(image_size, 2 if image_size <= 256 else 1, tmpl_to_img)
  inv = cv2.invertAffineTransform(np.asarray(tmpl_to_img, np.float64))
  lt = np.asarray(landmarks, np.float64) @ inv[:, :2].T + inv[:, 2]
  lc = c.from_image(landmarks)
  skin = _skin_array(appearance)

  _background(c, appearance, rng)
  _torso(c, appearance, rng)
  neckline = float(lt[8, 1]) + 0.5
  _neck(c, appearance, neckline)
  shadow = c.blur(np.roll(c.fill([lc[0:17]]), int(round(0.1 * c.ppu)), axis=0), 0.08)
  neck_zone = np.clip((c.v - lt[8, 1] + 0.6) / 0.3, 0, 1)
  c.img *= (1.0 - 0.45 * shadow * neck_zone)[..., None]
  ears = _ears(c, appearance, lt)

  angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
  skull = catmull_rom(np.stack([1.02 * np.cos(angles), -0.35 + 1.17 * np.sin(angles)], 1), 96,
                      closed=True)
  face = np.clip(c.fill([lc[0:17]]) + c.fill([c.tmpl(skull)]), 0, 1)
  face = c.blur(face, 0.006)
  height = _height_field(c, lt, face, appearance.wrinkles)
  shade, spec = _shade(c, height)
  blotch = 1.0 + 0.035 * c.noise(rng, 0.08)
  red = np.zeros_like(shade)
  for i, j in ((36, 48), (45, 54)):
    red += 0.6 * c.gauss((lt[i] + lt[j]) / 2, 0.2, 0.16)
  red += 0.5 * c.gauss(lt[30], 0.09, 0.08) + 0.25 * c.gauss(lt[8] + [0, -0.15], 0.2, 0.12)
  under_eye = (c.gauss(lt[40:42].mean(0) + [0, 0.09], 0.14, 0.05)
               + c.gauss(lt[46:48].mean(0) + [0, 0.09], 0.14, 0.05))
  tint = np.stack([np.ones_like(red), 1.0 - 0.09 * red, 1.0 - 0.07 * red], -1)
  face_rgb = skin * tint * (shade[..., None] ** np.array([0.88, 1.0, 1.12], np.float32))
  face_rgb *= (blotch * (1.0 - 0.1 * under_eye))[..., None]
  face_rgb += (0.08 * spec * (1.0 + c.gauss(lt[30], 0.1, 0.1)))[..., None]
  c.over(face, np.clip(face_rgb, 0, 1))
  # Cast shadows under the nose and the lower lip.
  c.img *= (1.0 - 0.22 * c.gauss(lt[33] + [0, 0.05], 0.12, 0.035)
            - 0.15 * c.gauss(lt[57] + [0, 0.06], 0.16, 0.035))[..., None]

  eyes = _eye_surroundings(c, appearance, lt)
  _nose(c, appearance, lt)
  lips = _lips(c, appearance, rng, lt)
  brows = _brows(c, appearance, rng, lt)
  keep_out = np.maximum.reduce([c.blur(eyes, 0.05), c.blur(lips, 0.03), brows])
  _skin_marks(c, appearance, rng, lt, face, keep_out)
  hair = np.zeros_like(face)
  if appearance.hair_style != "bald":
    hair = _hair(c, appearance, rng, lt, face)

  size = (image_size, image_size)
  image = cv2.resize(c.img, size, interpolation=cv2.INTER_AREA)
  bare = face * (1 - hair) * (1 - keep_out)
  bare = cv2.resize(np.clip(bare, 0, 1), size, interpolation=cv2.INTER_AREA)
  skin_area = cv2.resize(np.maximum(face * (1 - hair), ears), size, interpolation=cv2.INTER_AREA)
  head = cv2.resize(np.clip(np.maximum.reduce([face, hair, ears]), 0, 1), size,
                    interpolation=cv2.INTER_AREA)
  # Pores: band-pass noise added at the output resolution so that downsampling keeps it.
  noise = rng.standard_normal(size).astype(np.float32)
  pores = cv2.GaussianBlur(noise, (0, 0), 0.5) - cv2.GaussianBlur(noise, (0, 0), 1.6)
  pores /= max(float(pores.std()), 1e-6)
  # Pores are tiny: a pixel of a small face averages more of them, so they show less.
  strength = 0.018 * appearance.pores * min(1.0, np.sqrt(c.ppu / c.ss / 64.0))
  image *= (1.0 + strength * pores * skin_area)[..., None]
  image += rng.normal(0.0, 0.8 / 255.0, image.shape).astype(np.float32)
  image = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
  return Atlas(image=image, skin=bare.astype(np.float32), head=head.astype(np.float32))
