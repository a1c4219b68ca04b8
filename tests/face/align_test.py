"""Tests for FFHQ-style alignment (talking_heads/face/align.py)."""

import cv2
import numpy as np
import pytest

from talking_heads.face import align
from talking_heads.face import morphable


def _face(size=96, yaw=0.0, jaw_open=0.0):
  model = morphable.default_model()
  beta = np.zeros(model.num_expression)
  beta[0] = jaw_open
  pose = morphable.default_pose() + [yaw, 0, 0, 0, 0, 0]
  return morphable.landmarks_2d(model, np.zeros(model.num_identity), beta, pose,
                                morphable.default_camera(size))


def _similarity(degrees, scale, shift):
  m = cv2.getRotationMatrix2D((0.0, 0.0), degrees, scale)
  m[:, 2] = shift
  return m


def test_hand_computed_quad_and_matrix():
  """Eyes 20 px apart, mouth 22 px below: side = 2 max(2 * 20, 1.8 * 22) = 80, centre 2.2 px
  below the eyes' midpoint; the quad's top-left corner is output coordinate -0.5."""
  points = np.zeros((68, 2))
  points[36:42] = (40.0, 50.0)
  points[42:48] = (60.0, 50.0)
  points[48], points[54] = (42.0, 72.0), (58.0, 72.0)
  quad = align.ffhq_quad(points)
  np.testing.assert_allclose(quad, [[10, 12.2], [10, 92.2], [90, 92.2], [90, 12.2]])
  matrix = align.ffhq_matrix(points, 80)
  np.testing.assert_allclose(matrix, [[1, 0, -10.5], [0, 1, -12.7]], atol=1e-12)
  np.testing.assert_allclose(align.apply_matrix(matrix, quad), [[-0.5, -0.5], [-0.5, 79.5],
                                                                [79.5, 79.5], [79.5, -0.5]],
                             atol=1e-12)
  # The mouth term wins when the mouth is far: side 2 * 1.8 * 30 = 108.
  points[48], points[54] = (42.0, 80.0), (58.0, 80.0)
  assert align.matrix_scale(align.ffhq_matrix(points, 108)) == pytest.approx(1.0)


@pytest.mark.parametrize("degrees, scale, shift", [(30.0, 0.7, (13.0, -4.0)),
                                                   (-75.0, 2.5, (-40.0, 90.0))])
def test_a_rotated_scaled_face_maps_back_to_the_canonical_template(degrees, scale, shift):
  canonical = align.apply_matrix(align.ffhq_matrix(_face(), 64), _face())
  moved = align.apply_matrix(_similarity(degrees, scale, shift), _face())
  np.testing.assert_allclose(align.apply_matrix(align.ffhq_matrix(moved, 64), moved), canonical,
                             atol=1e-9)
  # Canonical placement: the eye line horizontal, the eyes' midpoint on the vertical centre line.
  eyes = np.stack([canonical[36:42].mean(0), canonical[42:48].mean(0)])
  assert eyes[0, 1] == pytest.approx(eyes[1, 1], abs=1e-9)
  assert eyes.mean(0)[0] == pytest.approx(31.5, abs=1e-9)


def test_warp_image_puts_a_point_where_the_matrix_says():
  """A blob at p lands at apply_matrix(matrix, p), also through the downscale's shrink step."""
  for source_size, size in ((128, 96), (600, 64)):
    ys, xs = np.mgrid[:source_size, :source_size]
    p = np.array([0.41, 0.57]) * source_size
    sigma = source_size / 40
    blob = np.exp(-((xs - p[0]) ** 2 + (ys - p[1]) ** 2) / (2 * sigma**2))
    image = np.repeat((255 * blob).astype(np.uint8)[..., None], 3, -1)
    matrix = _similarity(20.0, size / source_size * 1.3, (-10.0, 5.0))
    out = align.warp_image(image, matrix, size, border="constant")[..., 0].astype(np.float64)
    yo, xo = np.mgrid[:size, :size]
    centroid = np.array([(out * xo).sum(), (out * yo).sum()]) / out.sum()
    np.testing.assert_allclose(centroid, align.apply_matrix(matrix, p[None])[0], atol=0.15)


def test_smoothing_keeps_linear_motion_and_spreads_a_spike():
  t = np.arange(9, dtype=np.float64)
  linear = np.broadcast_to((3.0 * t - 2.0)[:, None, None], (9, 68, 2))
  np.testing.assert_allclose(align.smooth_landmarks(linear, 5), linear, atol=1e-12)
  spike = np.zeros((9, 68, 2))
  spike[4] = 5.0
  smoothed = align.smooth_landmarks(spike, 5)
  np.testing.assert_allclose(smoothed[:, 0, 0], [0, 0, 1, 1, 1, 1, 1, 0, 0])
  np.testing.assert_array_equal(align.smooth_landmarks(spike, 1), spike)


def test_align_frames_and_paste_back_round_trip():
  rng = np.random.default_rng(0)
  base = cv2.GaussianBlur(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), (0, 0), 3)
  landmarks = np.stack([_face(160, yaw=0.1 * k, jaw_open=0.3 * k) for k in range(3)])
  frames = np.stack([base] * 3)
  aligned, points, matrices = align.align_frames(frames, landmarks, 96)
  assert aligned.shape == (3, 96, 96, 3) and aligned.dtype == np.uint8
  np.testing.assert_allclose(points, align.apply_matrix(matrices, landmarks), atol=1e-4)
  # Smoothed over the 3 frames: frame 1's transform comes from the mean track.
  np.testing.assert_allclose(matrices[1], align.ffhq_matrix(landmarks.mean(0), 96), atol=1e-9)
  pasted = align.paste_aligned(base, aligned[1], matrices[1], mask=np.ones((96, 96)))
  inside = align.apply_matrix(align.invert_matrix(matrices[1]),
                              np.array([[20.0, 20.0], [75.0, 75.0]])).round().astype(int)
  (x0, y0), (x1, y1) = inside.min(0), inside.max(0)
  error = np.abs(pasted[y0:y1, x0:x1].astype(int) - base[y0:y1, x0:x1]).mean()
  assert error < 3.0
  np.testing.assert_array_equal(pasted[-40:, -40:], base[-40:, -40:])  # outside the quad


@pytest.mark.parametrize("call, match", [
    (lambda: align.ffhq_quad(np.zeros((67, 2))), "68, 2"),
    (lambda: align.ffhq_matrix(np.full((68, 2), np.nan), 64), "NaN"),
    (lambda: align.ffhq_matrix(_face(), 0), "size"),
    (lambda: align.warp_image(np.zeros((8, 8, 3), np.uint8), np.eye(2, 3), 4, "wrap"), "border"),
    (lambda: align.align_frames(np.zeros((2, 8, 8, 3), np.uint8), _face()[None], 4), "2 frames"),
    (lambda: align.smooth_landmarks(np.zeros((3, 68, 2)), 0), "window"),
])
def test_bad_input_is_named(call, match):
  with pytest.raises(ValueError, match=match):
    call()
