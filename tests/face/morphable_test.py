"""Tests for the hand-built morphable face model and its geometry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.face import morphable as m

MODEL = m.default_model()
E = MODEL.num_expression
A = MODEL.num_identity


def _one_hot(name: str, value: float = 1.0) -> np.ndarray:
  beta = np.zeros(E)
  beta[MODEL.exp_names.index(name)] = value
  return beta


def _random_poses(rng: np.random.Generator, n: int) -> np.ndarray:
  pose = np.tile(m.default_pose(), (n, 1))
  pose[:, :3] += rng.uniform(-0.5, 0.5, (n, 3))
  pose[:, 3:] += rng.uniform(-20.0, 20.0, (n, 3))
  return pose


def test_model_layout():
  assert MODEL.mean.shape == (68, 3)
  assert A >= 10 and MODEL.id_basis.shape == (A, 68, 3)
  assert MODEL.exp_names == ("jaw_open", "lip_spread", "lip_round",
                             "lip_press", "smile", "upper_lip_raise",
                             "brow_raise", "blink_left", "blink_right")
  assert MODEL.exp_basis.shape == (E, 68, 3)
  assert len(set(MODEL.id_names)) == A
  assert m.default_model() is MODEL
  with pytest.raises(ValueError, match="read-only"):
    MODEL.mean[0, 0] = 1.0


def test_mirror_is_an_involution_and_mean_is_symmetric():
  assert np.array_equal(m.MIRROR[m.MIRROR], np.arange(68))
  flip = np.array([-1.0, 1.0, 1.0])
  np.testing.assert_allclose(MODEL.mean[m.MIRROR] * flip, MODEL.mean,
                             atol=1e-12)
  # Subject's right (image left) has x < 0: jaw 0, right eye, right brow.
  for i in (0, 17, 36, 39, 48):
    assert MODEL.mean[i, 0] < 0 < MODEL.mean[m.MIRROR[i], 0]
  # Symmetric identity components stay symmetric; blinks mirror each other.
  for basis in MODEL.id_basis:
    np.testing.assert_allclose(basis[m.MIRROR] * flip, basis, atol=1e-9)
  left = MODEL.exp_basis[MODEL.exp_names.index("blink_left")]
  right = MODEL.exp_basis[MODEL.exp_names.index("blink_right")]
  np.testing.assert_allclose(left[m.MIRROR] * flip, right, atol=1e-12)


def test_anatomical_order_of_the_mean_face():
  y = MODEL.mean[:, 1]  # down
  brow, eye = y[list(m.RIGHT_BROW)].mean(), y[list(m.RIGHT_EYE)].mean()
  assert brow < eye < y[30] < y[33] < y[51] < y[57] < y[8]
  # The nose tip is the point nearest the camera.
  assert np.argmin(MODEL.mean[:, 2]) == 30
  mouth_width = MODEL.mean[54, 0] - MODEL.mean[48, 0]
  assert 40.0 < mouth_width < MODEL.mean[12, 0] - MODEL.mean[4, 0]
  # Neutral lips are closed, eyes open.
  assert m.mouth_opening(MODEL.mean) == pytest.approx(0.0, abs=1e-12)
  assert np.all(m.eye_aspect_ratio(MODEL.mean) > 0.25)


def test_random_identities_are_plausible():
  rng = np.random.default_rng(0)
  faces = m.shape(MODEL, rng.standard_normal((300, A)), None)
  x, y = faces[..., 0], faces[..., 1]
  jaw_width = x[:, 16] - x[:, 0]
  assert np.all((110.0 < jaw_width) & (jaw_width < 175.0))
  assert np.all(x[:, 39] < x[:, 42])  # the eyes do not cross
  assert np.all(x[:, 36] < x[:, 39])
  assert np.all((y[:, 27] < y[:, 30]) & (y[:, 33] < y[:, 51]))
  assert np.all((y[:, 57] < y[:, 8]) & (x[:, 48] > x[:, 4]))
  assert np.all(m.eye_aspect_ratio(faces) > 0.2)
  # Every component matters (>= 1.5 mm somewhere) but none is extreme.
  reach = np.abs(MODEL.id_basis).max(axis=(1, 2))
  assert np.all((reach >= 1.5) & (reach <= 12.0)), dict(
      zip(MODEL.id_names, reach))


def test_shape_is_linear_and_broadcasts():
  rng = np.random.default_rng(1)
  alpha = rng.standard_normal(A)
  beta = rng.uniform(0.0, 1.0, (5, E))
  out = m.shape(MODEL, alpha, beta)
  assert out.shape == (5, 68, 3)
  expected = (MODEL.mean + np.einsum("a,avc->vc", alpha, MODEL.id_basis) +
              np.einsum("te,evc->tvc", beta, MODEL.exp_basis))
  np.testing.assert_allclose(out, expected, atol=1e-12)
  np.testing.assert_allclose(m.shape(MODEL, None, None), MODEL.mean)
  assert m.shape(MODEL, np.zeros((2, 3, A)), None).shape == (2, 3, 68, 3)
  with pytest.raises(ValueError, match="beta must have last dimension 9"):
    m.shape(MODEL, alpha, np.zeros(4))
  with pytest.raises(ValueError, match="alpha"):
    m.shape(MODEL, np.zeros(A + 1), None)


def test_rotations_are_orthonormal_and_invert():
  rng = np.random.default_rng(2)
  yaw, roll = rng.uniform(-np.pi, np.pi, (2, 50))
  pitch = rng.uniform(-1.5, 1.5, 50)
  for xp in (np, jnp):
    rot = np.asarray(m.rotation_matrix(xp.asarray(yaw), xp.asarray(pitch),
                                       xp.asarray(roll)), np.float64)
    tol = 1e-12 if xp is np else 1e-5
    np.testing.assert_allclose(rot @ np.swapaxes(rot, 1, 2),
                               np.broadcast_to(np.eye(3), rot.shape),
                               atol=tol)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=tol)
  got = m.rotation_angles(m.rotation_matrix(yaw, pitch, roll))
  for g, want in zip(got, (yaw, pitch, roll)):
    np.testing.assert_allclose(g, want, atol=1e-10)


def test_rotation_conventions_by_hand():
  q = np.pi / 2
  # R_y(90) takes +z to +x; R_x(90) takes +y to +z; R_z(90) takes +x to +y.
  np.testing.assert_allclose(m.rotation_matrix(q, 0, 0) @ [0, 0, 1],
                             [1, 0, 0], atol=1e-12)
  np.testing.assert_allclose(m.rotation_matrix(0, q, 0) @ [0, 1, 0],
                             [0, 0, 1], atol=1e-12)
  np.testing.assert_allclose(m.rotation_matrix(0, 0, q) @ [1, 0, 0],
                             [0, 1, 0], atol=1e-12)
  yaw, pitch, roll = 0.3, -0.2, 0.7
  np.testing.assert_allclose(
      m.rotation_matrix(yaw, pitch, roll),
      m.rotation_matrix(yaw, 0, 0) @ m.rotation_matrix(0, pitch, 0)
      @ m.rotation_matrix(0, 0, roll), atol=1e-12)
  # Documented image-space meaning of the angles.
  camera = m.default_camera(256)
  base = m.default_pose()
  neutral = m.landmarks_2d(MODEL, None, None, base, camera)

  def moved(index, angle):
    pose = base.copy()
    pose[index] = angle
    return m.landmarks_2d(MODEL, None, None, pose, camera)

  assert moved(0, 0.3)[30, 0] < neutral[30, 0]  # yaw: nose to image left
  assert moved(1, 0.3)[30, 1] > neutral[30, 1]  # pitch: face tilts down
  turned = moved(2, 0.3)  # roll: clockwise, the image-right eye drops
  assert turned[45, 1] > turned[36, 1]


def test_project_by_hand_and_behind_camera():
  camera = np.array([[100.0, 0.0, 50.0], [0.0, 120.0, 40.0], [0, 0, 1]])
  np.testing.assert_allclose(m.project(np.array([[1.0, 2.0, 10.0]]), camera),
                             [[60.0, 64.0]])
  with pytest.raises(ValueError, match="behind the camera"):
    m.project(np.array([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]), camera)
  with pytest.raises(ValueError, match="camera K"):
    m.project(np.ones((1, 3)), np.eye(2))


def test_transform_is_rotation_then_translation():
  rng = np.random.default_rng(3)
  points = rng.standard_normal((7, 3))
  pose = np.array([0.2, -0.1, 0.4, 1.0, 2.0, 300.0])
  rot = m.rotation_matrix(*pose[:3])
  np.testing.assert_allclose(m.transform(points, pose),
                             points @ rot.T + pose[3:], atol=1e-12)


@pytest.mark.parametrize("size", [96, 256])
def test_default_framing(size):
  camera = m.default_camera(size)
  lm = m.landmarks_2d(MODEL, None, None, m.default_pose(), camera)
  assert 0.45 <= (lm[16, 0] - lm[0, 0]) / size <= 0.55
  centre_x = (lm[:, 0].min() + lm[:, 0].max()) / 2
  assert abs(centre_x - (size - 1) / 2) < 1e-9
  # Room above the brows for the forehead, below the chin for the neck.
  assert lm[:, 1].min() > 0.25 * size
  assert lm[:, 1].max() < 0.85 * size
  np.testing.assert_allclose(m.default_camera((100, 200))[:2, 2],
                             [99.5, 49.5])


def test_numpy_and_jax_agree():
  rng = np.random.default_rng(4)
  alpha = rng.standard_normal(A)
  beta = rng.uniform(0.0, 1.0, (6, E))
  pose = _random_poses(rng, 6)
  camera = m.default_camera(256)
  want = m.landmarks_2d(MODEL, alpha, beta, pose, camera)
  assert isinstance(want, np.ndarray) and want.dtype == np.float64

  fn = jax.jit(lambda a, b, p: m.landmarks_2d(MODEL, a, b, p, camera))
  got = fn(jnp.asarray(alpha), jnp.asarray(beta), jnp.asarray(pose))
  assert isinstance(got, jax.Array) and got.shape == (6, 68, 2)
  np.testing.assert_allclose(np.asarray(got), want, atol=2e-3)

  per_frame = jax.vmap(fn, in_axes=(None, 0, 0))(
      jnp.asarray(alpha), jnp.asarray(beta), jnp.asarray(pose))
  np.testing.assert_allclose(np.asarray(per_frame), want, atol=2e-3)

  for fn_np, fn_jax in ((m.mouth_opening, m.mouth_opening),
                        (m.eye_aspect_ratio, m.eye_aspect_ratio)):
    np.testing.assert_allclose(np.asarray(fn_jax(jnp.asarray(want))),
                               fn_np(want), rtol=1e-5, atol=1e-6)


def test_landmarks_are_differentiable_in_jax():
  camera = m.default_camera(128)

  def opening(beta):
    lm = m.landmarks_2d(MODEL, None, beta, jnp.asarray(m.default_pose()),
                        camera)
    return m.mouth_opening(lm)

  beta = jnp.asarray(_one_hot("jaw_open", 0.5))
  grad = jax.grad(opening)(beta)
  assert grad[MODEL.exp_names.index("jaw_open")] > 0.1
  assert grad[MODEL.exp_names.index("brow_raise")] == 0.0


def test_jaw_open_opens_the_inner_lips_and_drops_the_chin():
  camera = m.default_camera(256)
  pose = m.default_pose()
  openings = [
      m.mouth_opening(
          m.landmarks_2d(MODEL, None, _one_hot("jaw_open", v), pose, camera))
      for v in (0.0, 0.25, 0.5, 1.0)
  ]
  assert openings[0] == pytest.approx(0.0, abs=1e-9)
  assert np.all(np.diff(openings) > 0.04) and openings[-1] > 0.2
  lm = m.landmarks_2d(MODEL, None, _one_hot("jaw_open"), pose, camera)
  neutral = m.landmarks_2d(MODEL, None, None, pose, camera)
  for upper, lower in m.INNER_LIP_PAIRS:
    assert lm[lower, 1] - lm[upper, 1] > 10.0  # pixels
  assert lm[8, 1] - neutral[8, 1] > 10.0  # the chin drops
  # The upper face does not move.
  np.testing.assert_allclose(lm[17:48], neutral[17:48])


def test_mouth_expressions_do_what_their_names_say():
  mean = MODEL.mean

  def face(name):
    return m.shape(MODEL, None, _one_hot(name))

  width = lambda s: s[54, 0] - s[48, 0]
  lip_height = lambda s: (s[57, 1] - s[51, 1]) - (s[66, 1] - s[62, 1])
  mouth = list(m.MOUTH_INDICES)

  assert width(face("lip_spread")) > width(mean) + 10.0
  rounded = face("lip_round")
  assert width(rounded) < width(mean) - 10.0
  assert rounded[mouth, 2].mean() < mean[mouth, 2].mean() - 4.0  # protrudes
  assert m.mouth_opening(rounded) > 0.02
  pressed = face("lip_press")
  assert lip_height(pressed) < lip_height(mean) - 5.0  # thinner lips
  assert m.mouth_opening(pressed) == pytest.approx(0.0, abs=1e-9)
  smile = face("smile")
  corners = smile[[48, 54], 1].mean() - mean[[48, 54], 1].mean()
  assert corners < -4.0 and width(smile) > width(mean) + 5.0
  raised = face("upper_lip_raise")
  assert raised[51, 1] < mean[51, 1] - 3.0
  assert m.mouth_opening(raised) > 0.02
  upper = list(m.RIGHT_BROW + m.LEFT_BROW + m.RIGHT_EYE + m.LEFT_EYE)
  for name in ("lip_spread", "lip_round", "lip_press", "smile",
               "upper_lip_raise"):
    np.testing.assert_allclose(face(name)[upper], mean[upper], err_msg=name)


def test_brow_raise_and_blinks():
  mean = MODEL.mean
  brows = list(m.RIGHT_BROW + m.LEFT_BROW)
  raised = m.shape(MODEL, None, _one_hot("brow_raise"))
  assert np.all(raised[brows, 1] < mean[brows, 1] - 4.0)
  np.testing.assert_allclose(np.delete(raised, brows, 0),
                             np.delete(mean, brows, 0))

  rng = np.random.default_rng(5)
  alphas = np.concatenate([np.zeros((1, A)), rng.standard_normal((5, A))])
  for name, closed, other in (("blink_left", 1, 0), ("blink_right", 0, 1)):
    ear = m.eye_aspect_ratio(m.shape(MODEL, alphas, _one_hot(name)))
    np.testing.assert_allclose(ear[:, closed], 0.0, atol=1e-9)
    np.testing.assert_allclose(ear[:, other],
                               m.eye_aspect_ratio(m.shape(MODEL, alphas,
                                                          None))[:, other])
    half = m.eye_aspect_ratio(m.shape(MODEL, None, _one_hot(name, 0.5)))
    assert 0.1 < half[closed] < 0.2


def test_expressions_are_distinct_and_not_identity():
  flat = MODEL.exp_basis.reshape(E, -1)
  unit = flat / np.linalg.norm(flat, axis=1, keepdims=True)
  cosine = unit @ unit.T
  assert np.all(np.abs(cosine[~np.eye(E, dtype=bool)]) < 0.8)

  # No expression is (nearly) an identity change or a rigid motion, else a
  # clip's fit could not tell them apart.
  mean = MODEL.mean
  rigid = [np.broadcast_to(axis, mean.shape) for axis in np.eye(3)]
  rigid += [np.cross(axis, mean) for axis in np.eye(3)]
  rigid.append(mean - mean.mean(axis=0))  # scale
  span = np.concatenate([MODEL.id_basis.reshape(A, -1),
                         np.stack(rigid).reshape(len(rigid), -1)])
  q, _ = np.linalg.qr(span.T)
  for name, v in zip(MODEL.exp_names, flat):
    residual = v - q @ (q.T @ v)
    assert np.linalg.norm(residual) / np.linalg.norm(v) > 0.19, name


def test_mouth_vertices():
  rng = np.random.default_rng(6)
  alpha, beta = rng.standard_normal(A), rng.uniform(0, 1, (3, E))
  pose = _random_poses(rng, 3)
  full = m.shape(MODEL, alpha, beta)
  np.testing.assert_allclose(m.mouth_vertices(MODEL, alpha, beta),
                             full[:, 48:68])
  np.testing.assert_allclose(m.mouth_vertices(MODEL, alpha, beta, pose),
                             m.transform(full, pose)[:, 48:68])


def test_landmark_metrics_validate_shapes():
  with pytest.raises(ValueError, match=r"\[\.\.\., 68, 2\]"):
    m.mouth_opening(np.zeros((10, 2)))
  assert m.face_scale(MODEL.mean) == pytest.approx(92.0)
