"""Tests for the synthetic face renderer and identity appearance."""

import dataclasses
import pickle

import cv2
import numpy as np
import pytest

from talking_heads.face import appearance as appearance_lib
from talking_heads.face import head_region
from talking_heads.face import morphable
from talking_heads.face import render

MODEL = morphable.default_model()
EXPRESSIONS = morphable.EXPRESSION_NAMES


def landmarks(size, alpha=None, **expression):
  beta = np.zeros(len(EXPRESSIONS))
  for name, value in expression.items():
    beta[EXPRESSIONS.index(name)] = value
  return morphable.landmarks_2d(MODEL, alpha, beta, morphable.default_pose(),
                                morphable.default_camera(size)).astype(np.float32)


def identity(seed, size=128, **overrides):
  rng = np.random.default_rng(seed)
  look = dataclasses.replace(appearance_lib.sample_appearance(rng), **overrides)
  alpha = rng.normal(0.0, 1.0, MODEL.num_identity)
  return render.FaceRenderer(look, size, landmarks(size, alpha)), alpha


def polygon_mask(points, size, dilate=0):
  mask = np.zeros((size, size), np.uint8)
  cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
  if dilate:
    mask = cv2.dilate(mask, np.ones((2 * dilate + 1,) * 2, np.uint8))
  return mask.astype(bool)


def teeth_like(pixels):
  pixels = pixels.astype(int)
  return (pixels.min(-1) > 170) & (pixels.max(-1) - pixels.min(-1) < 50)


def test_sample_appearance_is_deterministic_and_varied():
  a = appearance_lib.sample_appearance(np.random.default_rng(3))
  b = appearance_lib.sample_appearance(np.random.default_rng(3))
  assert a == b
  looks = [appearance_lib.sample_appearance(np.random.default_rng(s)) for s in range(40)]
  assert len({look.skin_rgb for look in looks}) == 40
  assert len({look.hair_style for look in looks}) >= 4
  assert len({look.background_style for look in looks}) == 3


@pytest.mark.parametrize("field,value", [("hair_style", "mohawk"), ("skin_rgb", (300, 0, 0)),
                                         ("freckles", 1.5), ("background_style", "space")])
def test_appearance_rejects_bad_values(field, value):
  with pytest.raises(ValueError, match=field):
    dataclasses.replace(appearance_lib.Appearance(), **{field: value})


def test_mesh_keeps_contours_as_edges():
  triangles = render.mesh_triangles()
  edges = {tuple(sorted((t[i], t[(i + 1) % 3]))) for t in triangles.tolist() for i in range(3)}
  for loop in (range(60, 68), range(48, 60), range(36, 42), range(42, 48)):
    loop = list(loop)
    for a, b in zip(loop, loop[1:] + loop[:1]):
      assert tuple(sorted((a, b))) in edges, (a, b)
  for a in range(16):
    assert (a, a + 1) in edges
  layout = render.triangulation_layout()
  p = layout[triangles]
  d1, d2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
  assert np.all(d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0] > 0)


@pytest.mark.parametrize("size", [64, 128, 256, 512])
def test_output_shape_and_dtype(size):
  renderer, alpha = identity(0, size)
  frame = renderer.render(landmarks(size, alpha, jaw_open=0.5))
  assert frame.shape == (size, size, 3) and frame.dtype == np.uint8
  sequence = renderer.render_sequence(np.stack([landmarks(size, alpha),
                                                landmarks(size, alpha, smile=1.0)]))
  assert sequence.shape == (2, size, size, 3) and sequence.dtype == np.uint8
  assert frame.std() > 10  # not a blank image


def test_deterministic_per_seed():
  a, alpha = identity(5)
  b, _ = identity(5)
  lms = np.stack([landmarks(128, alpha, jaw_open=0.7), landmarks(128, alpha, blink_left=1.0)])
  np.testing.assert_array_equal(a.render_sequence(lms), b.render_sequence(lms))
  c = render.FaceRenderer(dataclasses.replace(a.appearance, texture_seed=6), 128,
                          a.neutral_landmarks)
  assert np.abs(c.atlas.astype(int) - a.atlas.astype(int)).mean() > 0.5


def test_two_appearances_differ():
  a, _ = identity(1)
  b, _ = identity(2)
  assert np.abs(a.atlas.astype(int) - b.atlas.astype(int)).mean() > 20


def test_neutral_frame_is_the_atlas_outside_eyes():
  renderer, alpha = identity(4)
  neutral = landmarks(128, alpha)
  frame = renderer.render(neutral)
  eyes = polygon_mask(neutral[36:42], 128, 3) | polygon_mask(neutral[42:48], 128, 3)
  diff = np.abs(frame.astype(int) - renderer.atlas.astype(int)).max(-1)
  assert diff[~eyes].max() <= 1
  assert diff[eyes].max() > 50  # the eyeballs are drawn per frame


def test_jaw_open_shows_mouth_interior_and_teeth():
  renderer, alpha = identity(7, 256)
  closed = landmarks(256, alpha)
  opened = landmarks(256, alpha, jaw_open=0.8)
  mouth = polygon_mask(opened[60:68], 256)
  a, b = renderer.render(closed), renderer.render(opened)
  changed = np.abs(a.astype(int) - b.astype(int)).max(-1) > 30
  assert changed[mouth].mean() > 0.8
  assert teeth_like(a[mouth]).sum() == 0
  assert teeth_like(b[mouth]).sum() > 20
  assert (b[mouth].astype(int).max(-1) < 60).sum() > 100  # dark oral cavity


def test_closing_the_eyes_hides_the_iris():
  green = (40, 200, 60)  # an eye colour found nowhere else in the frame
  renderer, alpha = identity(8, 256, eye_rgb=green)

  def iris_pixels(frame):
    f = frame.astype(int)
    return ((f[..., 1] > f[..., 0] + 50) & (f[..., 1] > f[..., 2] + 50)).sum()

  open_eyes = renderer.render(landmarks(256, alpha))
  half = renderer.render(landmarks(256, alpha, blink_left=0.5, blink_right=0.5))
  shut = renderer.render(landmarks(256, alpha, blink_left=1.0, blink_right=1.0))
  assert iris_pixels(open_eyes) > 100
  assert 0 < iris_pixels(half) < iris_pixels(open_eyes)
  assert iris_pixels(shut) == 0


def test_skin_has_high_frequency_texture():
  for seed in range(3):
    renderer, _ = identity(seed, 256)
    skin = renderer.skin_mask > 0.9
    assert skin.sum() > 5000
    gray = cv2.cvtColor(renderer.atlas, cv2.COLOR_RGB2GRAY).astype(np.float32)
    detail = cv2.Laplacian(gray, cv2.CV_32F)[skin].var()
    smooth = cv2.Laplacian(cv2.GaussianBlur(gray, (0, 0), 1.5), cv2.CV_32F)[skin].var()
    assert detail > 20 and detail > 10 * smooth


def test_renderer_pickles():
  renderer, alpha = identity(9)
  clone = pickle.loads(pickle.dumps(renderer))
  lms = landmarks(128, alpha, jaw_open=0.6, blink_right=1.0)
  np.testing.assert_array_equal(clone.render(lms), renderer.render(lms))


def test_bad_input_is_rejected_with_context():
  renderer, alpha = identity(0)
  with pytest.raises(ValueError, match=r"\(68, 2\)"):
    renderer.render(np.zeros((67, 2)))
  sequence = np.stack([landmarks(128, alpha)] * 3)
  sequence[1, 5, 0] = np.nan
  with pytest.raises(ValueError, match="frame 1"):
    renderer.render_sequence(sequence)
  with pytest.raises(ValueError, match="image_size"):
    render.FaceRenderer(renderer.appearance, 8, renderer.neutral_landmarks)
  mirrored = renderer.neutral_landmarks * [-1, 1] + [128, 0]  # left/right swapped
  with pytest.raises(ValueError, match="folds"):
    render.FaceRenderer(renderer.appearance, 128, mirrored)


def test_morphable_identities_and_expressions_render():
  rng = np.random.default_rng(0)
  for _ in range(4):
    alpha = rng.normal(0.0, 1.5, MODEL.num_identity)
    look = appearance_lib.sample_appearance(rng)
    renderer = render.FaceRenderer(look, 64, landmarks(64, alpha))
    beta = rng.uniform(0.0, 1.0, len(EXPRESSIONS))
    pose = morphable.default_pose() + [0.3, 0.15, 0.1, 5.0, 5.0, 0.0]
    moved = morphable.landmarks_2d(MODEL, alpha, beta, pose, morphable.default_camera(64))
    assert renderer.render(moved).std() > 10


def test_portrait_landmarks_agree_with_a_face_detector():
  from skimage import data
  gray = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
  cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
  boxes = cascade.detectMultiScale(gray, 1.1, 5)
  x, y, w, h = max(boxes, key=lambda b: b[2] * b[3])
  lms = render.ASTRONAUT_LANDMARKS
  inside = ((lms[:, 0] >= x) & (lms[:, 0] < x + w) & (lms[:, 1] >= y) & (lms[:, 1] < y + h))
  assert inside[17:68].all()  # brows, eyes, nose and mouth lie in the detected face box
  centre = lms[27:68].mean(0)
  assert np.hypot(*(centre - [x + w / 2, y + h / 2])) < 0.15 * w
  # The eyes' dark irises sit between the measured lid landmarks.
  for idx in render.EYES:
    eye = polygon_mask(lms[list(idx)], 512)
    assert gray[eye].mean() < 0.8 * gray[polygon_mask(lms[[29, 31, 33, 35]], 512)].mean()


@pytest.mark.parametrize("size", [64, 256])
def test_portrait_warps_the_photo(size):
  renderer, neutral = render.portrait_renderer(size)
  assert renderer.atlas.shape == (size, size, 3)
  rest = renderer.render(neutral)
  assert np.abs(rest.astype(int) - renderer.atlas.astype(int)).mean() < 0.5
  offsets = landmarks(size, jaw_open=0.8) - landmarks(size)
  scale = morphable.face_scale(neutral) / morphable.face_scale(landmarks(size))
  talking = neutral + offsets * scale
  frame = renderer.render(talking)
  mouth = polygon_mask(talking[60:68], size)
  assert (frame[mouth].astype(int).max(-1) < 70).mean() > 0.2  # a dark open mouth
  assert np.abs(frame.astype(int) - rest.astype(int))[mouth].mean() > 30


def test_portrait_blink_covers_the_eyes():
  renderer, neutral = render.portrait_renderer(256)
  shut = neutral.copy()
  for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
    shut[upper] = neutral[lower]
  rest, closed = renderer.render(neutral), renderer.render(shut)
  for idx in render.EYES:
    eye = polygon_mask(neutral[list(idx)], 256)
    # The dark iris is replaced by lighter lid skin.
    assert closed[eye].mean() > rest[eye].mean() + 15


@pytest.mark.slow
def test_renders_at_least_100_frames_per_second_at_128():
  assert render.benchmark(128, frames=300) >= 100


def test_head_mask_covers_the_rendered_head_and_not_the_background():
  """Pixels that change with the background colour lie outside the mask (up to its 1 px
  anti-aliased edge); pixels that change with the hair colour lie inside it; the face's inner
  landmarks (brows, eyes, nose, mouth) are on it, the corners and the neck below the chin off."""
  size = 64
  look = appearance_lib.sample_appearance(np.random.default_rng(0))
  look = dataclasses.replace(look, hair_style="long")
  neutral = landmarks(size)
  talking = landmarks(size, jaw_open=0.8)
  renders, renderers = {}, {}
  for name, change in (("base", {}), ("background", {"background_rgb": ((255, 0, 255),
                                                                         (0, 255, 0))}),
                       ("hair", {"hair_rgb": (0, 0, 255)})):
    renderers[name] = render.FaceRenderer(dataclasses.replace(look, **change), size, neutral)
    renders[name] = renderers[name].render_with_mask(talking)
  image, mask = renders["base"]
  assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
  np.testing.assert_array_equal(image, renderers["base"].render(talking))
  kernel = np.ones((3, 3), np.uint8)
  changed = lambda name: np.abs(renders[name][0].astype(int) - image.astype(int)).max(-1) > 8
  background, hair = changed("background"), changed("hair")
  assert background.mean() > 0.2 and hair.sum() > 100
  assert not np.any(background & (cv2.erode(mask, kernel) == 1))
  assert not np.any(hair & (cv2.dilate(mask, kernel) == 0))
  x, y = np.round(talking[17:]).astype(int).T
  assert np.all(mask[y, x] == 1)
  assert mask[0, 0] == mask[0, -1] == mask[-1, 0] == mask[-1, -1] == 0
  chin = np.round(talking[8]).astype(int)
  assert mask[min(chin[1] + 4, size - 1), chin[0]] == 0          # the neck is not the head
  # The sequence gives the same frames and masks; the mask follows the jaw down.
  frames, masks = renderers["base"].render_sequence(np.stack([neutral, talking]),
                                                    with_masks=True)
  np.testing.assert_array_equal(frames[1], image)
  np.testing.assert_array_equal(masks[1], mask)
  assert masks[1].sum() > masks[0].sum()


def test_portrait_head_mask_is_the_warped_landmark_approximation():
  renderer, neutral = render.portrait_renderer(64)
  image, mask = renderer.render_with_mask(neutral)
  np.testing.assert_array_equal(image, renderer.render(neutral))
  expected = head_region.head_mask(neutral, 64, 64)[..., 0]
  assert np.mean(mask != expected) < 0.01          # at rest the warp is the identity
