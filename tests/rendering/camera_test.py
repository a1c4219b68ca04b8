"""Cameras from the morphable model's pose and K: hand-computed cameras, the corpus's landmarks,
K-jitter (PIR Eq. 1)."""

import jax
import jax.numpy as jnp
import numpy as np

from talking_heads.face import morphable
from talking_heads.pipelines import testing
from talking_heads.rendering import camera as cam
from talking_heads.rendering import volume


def _k(f, cx, cy):
  return np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]], np.float32)


def _distance_to_rays(points, origins, directions):
  rel = points - origins
  along = jnp.sum(rel * directions, axis=-1, keepdims=True)
  return jnp.linalg.norm(rel - along * directions, axis=-1)


def test_hand_computed_camera():
  size = 64
  k = _k(100.0, 31.5, 31.5)
  frontal = cam.from_face_pose(jnp.array([0.0, 0.0, 0.0, 0.0, 0.0, 600.0]), k, size)
  # The head box is 300 mm: the camera sits 2 units in front of the head (-z).
  np.testing.assert_allclose(frontal.cam2world[:3, 3], [0.0, 0.0, -2.0], atol=1e-6)
  # A point 30 mm right and 60 mm down at the head centre's depth: 100 * (0.05, 0.1) px off
  # the principal point; pixel centres on integers, as the dataset's landmarks.
  uv = cam.project(cam.face_points_to_world(jnp.array([[30.0, 60.0, 0.0]])), frontal)
  np.testing.assert_allclose(cam.uv_to_pixels(uv, size), [[36.5, 41.5]], atol=1e-4)
  # The ray through the principal point looks along +z, the one 100 px right at 45 degrees.
  uv = cam.pixels_to_uv(jnp.array([[31.5, 31.5], [131.5, 31.5]]), size)
  origins, directions = cam.rays_through(uv, frontal)
  np.testing.assert_allclose(origins, [[0.0, 0.0, -2.0]] * 2, atol=1e-6)
  np.testing.assert_allclose(directions, [[0.0, 0.0, 1.0], [2**-0.5, 0.0, 2**-0.5]], atol=1e-6)
  # Yaw 90 degrees turns the nose (-z in the head) to the image left: 150 mm left at 600 mm.
  turned = cam.from_face_pose(jnp.array([np.pi / 2, 0.0, 0.0, 0.0, 0.0, 600.0]), k, size)
  uv = cam.project(cam.face_points_to_world(jnp.array([[0.0, 0.0, -150.0]])), turned)
  np.testing.assert_allclose(cam.uv_to_pixels(uv, size), [[6.5, 31.5]], atol=1e-4)


def test_image_rays_cover_the_pixel_centres_row_major():
  k = _k(40.0, 15.5, 15.5)
  camera = cam.from_face_pose(jnp.array([0.1, -0.2, 0.05, 5.0, -3.0, 500.0]), k, 32)
  origins, directions = cam.image_rays(camera, 8)                  # 8 x 8 rays of a 32 px frame
  assert origins.shape == directions.shape == (64, 3)
  # Ray (row 2, column 5) passes through frame pixel ((5 + 0.5) * 4 - 0.5, (2 + 0.5) * 4 - 0.5).
  point = origins[2 * 8 + 5] + 1.7 * directions[2 * 8 + 5]
  np.testing.assert_allclose(cam.uv_to_pixels(cam.project(point[None], camera), 32),
                             [[21.5, 9.5]], atol=1e-3)


def test_model_landmarks_project_onto_the_corpus_landmarks(tmp_path):
  data = testing.write_random_dataset(tmp_path / "corpus", [4], image_size=64, seed=3)
  clip = data.clips()[0]
  model = morphable.default_model()
  points = cam.face_points_to_world(
      morphable.shape(model, np.asarray(clip.alpha), np.asarray(clip.expression)))  # [T, 68, 3]
  camera = cam.from_face_pose(np.asarray(clip.pose), np.asarray(clip.K), data.image_size)
  landmarks = np.asarray(clip.landmarks)
  projected = cam.uv_to_pixels(cam.project(points, camera), data.image_size)
  np.testing.assert_allclose(projected, landmarks, atol=2e-3)
  # Rays cast through the stored 2D landmarks pass through the 3D ones.
  origins, directions = cam.rays_through(cam.pixels_to_uv(landmarks, data.image_size), camera)
  assert float(_distance_to_rays(points, origins, directions).max()) < 1e-5
  # The head lies inside the unit box the planes cover.
  assert float(jnp.abs(points).max()) < 0.5


def test_off_centre_zoomed_camera_matches_the_model():
  # An FFHQ-aligned corpus folds its crop into K: another focal and principal point.
  model = morphable.default_model()
  alpha = np.linspace(-1.0, 1.0, model.num_identity)
  beta = np.linspace(0.0, 1.0, model.num_expression)
  pose = np.array([0.2, -0.1, 0.15, 12.0, -20.0, 520.0])
  k = _k(230.0, 40.25, 58.5)
  expected = morphable.landmarks_2d(model, alpha, beta, pose, k)
  camera = cam.from_face_pose(pose, k, 96)
  points = cam.face_points_to_world(morphable.shape(model, alpha, beta))
  np.testing.assert_allclose(cam.uv_to_pixels(cam.project(points, camera), 96), expected,
                             atol=2e-3)


def test_k_jitter_moves_projections_within_the_stated_range():
  size, s = 64, cam.JITTER_PIXELS
  k = _k(128.0, 31.5, 31.5)
  pose = jnp.array([0.1, 0.05, 0.0, 0.0, -10.0, 576.0])
  # Pixels spanning the frame (and the principal point), back-projected in front of the head.
  grid = jnp.concatenate([cam.uv_to_pixels(cam.pixel_grid(16), size), k[None, :2, 2]])

  @jax.jit
  def displacements(key):
    offsets = cam.sample_jitter(key, 512)
    jittered = cam.jitter_intrinsics(jnp.broadcast_to(k, (512, 3, 3)), offsets)
    origins, directions = cam.rays_through(cam.pixels_to_uv(grid, size),
                                           cam.from_face_pose(pose, k, size))
    points = origins + 1.9 * directions
    after = cam.from_face_pose(jnp.broadcast_to(pose, (512, 6)), jittered, size)
    projected = cam.project(jnp.broadcast_to(points, (512,) + points.shape), after)
    return offsets, cam.uv_to_pixels(projected, size) - grid            # [512, 257, 2]

  offsets, moved = displacements(jax.random.key(0))
  assert float(jnp.abs(offsets).max()) <= s and float(jnp.abs(offsets).min()) < 0.1
  # Eq. 1: a shift of (x2, x3) at the principal point, plus up to |x1| / 2 at the frame's edge.
  np.testing.assert_allclose(moved[:, -1], offsets[:, 1:], atol=1e-3)
  bound = jnp.abs(offsets[:, 1:])[:, None, :] + jnp.abs(offsets[:, :1])[:, None, :] / 2 + 1e-3
  assert bool(jnp.all(jnp.abs(moved) <= bound))
  assert float(jnp.abs(moved).max()) > 0.8 * 1.5 * s                  # the range is used


def _sphere_field(points):
  """A dense sphere of radius 0.3 whose colour varies with position (density continuous, so
  rays a rounding error apart render alike)."""
  sigma = 300.0 * (0.3 - jnp.linalg.norm(points, axis=-1, keepdims=True))
  colors = jax.nn.sigmoid(4.0 * points[..., :2] + jnp.array([0.0, 1.0]))
  return colors, sigma


def test_k_jitter_shifts_the_rendered_image_by_the_pixel_offset():
  size = 32
  k = _k(64.0, 15.5, 15.5)
  pose = jnp.array([0.0, 0.0, 0.0, 0.0, 0.0, 600.0])
  shifted = cam.jitter_intrinsics(k[None], jnp.array([[0.0, 3.0, -2.0]]))[0]

  @jax.jit
  def render(kk):
    origins, directions = cam.image_rays(cam.from_face_pose(pose, kk, size), size)
    out = volume.render_rays(_sphere_field, origins[None], directions[None], 24, 24, 0.5)
    return out.features[0].reshape(size, size, 2)

  plain, moved = render(jnp.asarray(k)), render(shifted)
  assert float(jnp.abs(plain).max()) > 0.3                              # something rendered
  # I'(row, col) = I(row + 2, col - 3): 3 px right, 2 px up.
  np.testing.assert_allclose(moved[:-2, 3:], plain[2:, :-3], atol=1e-5)
