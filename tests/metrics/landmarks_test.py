"""LMD variants, the point error and landmark jitter on hand-computed cases."""

import numpy as np
import pytest

from talking_heads.metrics import landmarks as lm


def _face(seed: int, num_frames: int = 4, iod: float = 50.0) -> np.ndarray:
  """Random landmarks `[T, 68, 2]` with outer eye corners 36 and 45 exactly `iod` apart."""
  points = np.random.default_rng(seed).uniform(0, 100, (num_frames, 68, 2))
  points[:, 36] = [20.0, 30.0]
  points[:, 45] = [20.0 + iod, 30.0]
  return points


def test_translated_mouth_has_zero_lmd():
  ref = _face(0)
  gen = ref.copy()
  gen[:, 48:68] += [7.0, -3.0]  # Centring on the mouth centroid removes a translation.
  gen[:, :48] += 11.0  # Points outside the mouth never count.
  for name, variant in lm.LMD_VARIANTS.items():
    np.testing.assert_allclose(variant(gen, ref), 0.0, atol=1e-4, err_msg=name)


def test_one_moved_mouth_point_hand_computed():
  ref = _face(1, iod=50.0)
  gen = ref.copy()
  gen[:, 50] += [3.0, 4.0]  # |move| = 5.
  # After centring: the moved point is off by 5 * 19/20, each of the 19 others by 5/20.
  per_frame_sum = 5 * 19 / 20 + 19 * 5 / 20  # 9.5
  expected = {
      "lmd_mouth_sum": per_frame_sum,
      "lmd_mouth_mean": per_frame_sum / 20,
      "lmd_mouth_sum_iod": per_frame_sum / 50,
      "lmd_mouth_mean_iod": per_frame_sum / 20 / 50,
  }
  for name, value in expected.items():
    np.testing.assert_allclose(lm.LMD_VARIANTS[name](gen, ref), value, rtol=1e-5, err_msg=name)
  np.testing.assert_allclose(lm.lmd(gen, ref), per_frame_sum, rtol=1e-5)  # Default: ATVGnet's sum.


def test_lmd_averages_frames_and_keeps_batch_dims():
  ref = np.stack([_face(2, num_frames=2), _face(3, num_frames=2)])  # [2 videos, 2 frames, 68, 2]
  gen = ref.copy()
  gen[0, 0, 60] += [0.0, 20.0]  # Video 0: one frame with a moved point, one frame exact.
  gen[1, :, 60] += [0.0, 10.0]  # Video 1: both frames.
  out = np.asarray(lm.lmd(gen, ref, reduction="sum"))
  assert out.shape == (2,)
  np.testing.assert_allclose(out, [(20 * 19 / 20 + 19 * 20 / 20) / 2, 10 * 19 / 20 + 19 * 10 / 20], rtol=1e-5)


def test_lmd_normalises_by_each_reference_frame():
  ref = np.concatenate([_face(4, 1, iod=40.0), _face(4, 1, iod=80.0)])
  gen = ref.copy()
  gen[:, 55] += [4.0, 3.0]
  # Per frame 9.5 / 40 and 9.5 / 80, then the mean over frames.
  np.testing.assert_allclose(lm.lmd(gen, ref, normalise=True), (9.5 / 40 + 9.5 / 80) / 2, rtol=1e-5)


def test_lmd_bad_input():
  ref = _face(5)
  with pytest.raises(ValueError, match="differ"):
    lm.lmd(ref[:3], ref)
  with pytest.raises(ValueError, match=r"\[..., T, 68, 2 or 3\]"):
    lm.lmd(ref[:, :67], ref[:, :67])
  missing = ref.copy()
  missing[2, 10] = np.nan
  with pytest.raises(ValueError, match="generated: frame 2 has non-finite"):
    lm.lmd(missing, ref)
  batched = np.stack([ref, missing])
  with pytest.raises(ValueError, match=r"reference: video \(1,\), frame 2"):
    lm.lmd(np.stack([ref, ref]), batched)
  degenerate = ref.copy()
  degenerate[1, 45] = degenerate[1, 36]
  with pytest.raises(ValueError, match="inter-ocular distance is 0"):
    lm.lmd(ref, degenerate, normalise=True)
  with pytest.raises(ValueError, match="reduction"):
    lm.lmd(ref, ref, reduction="median")


def test_point_error_counts_the_translation_lmd_removes():
  ref = _face(2)
  gen = ref + [3.0, 4.0]                               # every point 5 px off
  np.testing.assert_allclose(lm.point_error(gen, ref), 5.0, rtol=1e-6)
  np.testing.assert_allclose(lm.lmd(gen, ref), 0.0, atol=1e-4)
  gen = ref.copy()
  gen[1, 0] += [6.0, 8.0]                              # one point of one of 4 frames, 10 px
  np.testing.assert_allclose(lm.point_error(gen, ref), 10.0 / (4 * 68), rtol=1e-5)
  both = lm.point_error(np.stack([ref + [3.0, 4.0], ref]), np.stack([ref, ref]))
  np.testing.assert_allclose(both, [5.0, 0.0], atol=1e-5)   # per video
  with pytest.raises(ValueError, match="point_error generated: frame 0 has non-finite"):
    lm.point_error(np.full_like(ref, np.nan), ref)


def test_jitter_hand_computed():
  t = np.arange(6, dtype=np.float64)
  base = _face(6, num_frames=1)
  steady = base + (2.0 * t)[:, None, None]  # Constant velocity: zero acceleration.
  np.testing.assert_allclose(lm.landmark_jitter(steady), 0.0, atol=1e-4)
  shaking = steady.copy()
  shaking[:, :, 0] += 0.5 * (-1.0) ** t[:, None]  # +-e in x each frame: |second difference| = 4e.
  np.testing.assert_allclose(lm.landmark_jitter(shaking), 2.0, rtol=1e-5)
  np.testing.assert_allclose(lm.landmark_jitter(shaking, normalise=True), 2.0 / 50.0, rtol=1e-5)
  # Against a reference with the same shaking nothing is left; against the steady one all of it.
  np.testing.assert_allclose(lm.landmark_jitter(shaking, shaking), 0.0, atol=1e-4)
  np.testing.assert_allclose(lm.landmark_jitter(shaking, steady), 2.0, rtol=1e-5)
  both = np.stack([steady, shaking])
  np.testing.assert_allclose(lm.landmark_jitter(both), [0.0, 2.0], atol=1e-4)


def test_jitter_needs_three_frames():
  with pytest.raises(ValueError, match="at least 3 frame"):
    lm.landmark_jitter(_face(7, num_frames=2))
