"""LaDTalk's sliding evaluation: offsets, planted best windows, set metrics, errors."""

import functools

import numpy as np
import pytest

from talking_heads.metrics import image
from talking_heads.metrics import sliding


def test_window_offsets():
  np.testing.assert_array_equal(sliding.window_offsets(4, 10), np.arange(7))
  np.testing.assert_array_equal(sliding.window_offsets(4, 10, stride=3), [0, 3, 6])
  np.testing.assert_array_equal(sliding.window_offsets(10, 10), [0])
  with pytest.raises(ValueError, match=r"longer than the reference \(9 frames\)"):
    sliding.window_offsets(10, 9)
  with pytest.raises(ValueError, match="stride"):
    sliding.window_offsets(2, 9, stride=0)


def _reference(num_frames: int = 12) -> np.ndarray:
  return np.random.default_rng(0).integers(0, 256, (num_frames, 16, 16, 3), dtype=np.uint8)


def test_planted_window_is_found_by_psnr_and_by_a_distance():
  reference = _reference()
  rng = np.random.default_rng(1)
  noise = rng.integers(-3, 4, (4, 16, 16, 3))
  generated = np.clip(reference[5:9].astype(np.int64) + noise, 0, 255).astype(np.uint8)
  psnr = functools.partial(image.psnr, data_range=255)
  result = sliding.sliding_frame_metric(psnr, generated, reference, higher_is_better=True)
  assert result.best_offset == 5
  np.testing.assert_array_equal(result.offsets, np.arange(9))
  assert result.best == pytest.approx(float(np.mean(psnr(generated, reference[5:9]))), rel=1e-6)
  assert result.best == result.scores.max()

  def mean_abs(a, b):
    return np.abs(a.astype(np.float64) - b.astype(np.float64)).mean(axis=(1, 2, 3))

  distance = sliding.sliding_frame_metric(mean_abs, generated, reference, higher_is_better=False)
  assert distance.best_offset == 5
  assert distance.best == pytest.approx(np.abs(noise).mean(), abs=0.05)  # Clipping may trim a little.
  # Each window score is the mean of the per-frame values of that window.
  k = 2
  assert distance.scores[k] == pytest.approx(mean_abs(generated, reference[k:k + 4]).mean(), rel=1e-12)


def test_equal_lengths_give_the_paired_mean_and_ties_take_the_first_offset():
  reference = _reference(6)
  psnr = functools.partial(image.psnr, data_range=255)
  generated = reference[::-1].copy()
  result = sliding.sliding_frame_metric(psnr, generated, reference, higher_is_better=True)
  assert result.best_offset == 0 and result.scores.shape == (1,)
  assert result.best == pytest.approx(float(np.mean(psnr(generated, reference))), rel=1e-6)
  constant = sliding.sliding_frame_metric(lambda a, b: np.ones(len(a)), reference[:2], reference,
                                          higher_is_better=False)
  assert constant.best_offset == 0 and constant.best == 1.0


def test_set_metric_hand_computed():
  # Features 0..9; a set metric = |mean(generated) - mean(window)|; generated mean 6.5 -> window at 5.
  reference = np.arange(10.0)[:, None]
  generated = np.array([5.0, 6.0, 7.0, 8.0])[:, None]

  def mean_gap(a, b):
    return abs(a.mean() - b.mean())

  result = sliding.sliding_set_metric(mean_gap, generated, reference, higher_is_better=False, stride=2)
  np.testing.assert_array_equal(result.offsets, [0, 2, 4, 6])
  np.testing.assert_allclose(result.scores, [5.0, 3.0, 1.0, 1.0])
  assert (result.best, result.best_offset) == (1.0, 4)


def test_errors():
  reference = _reference(6)
  psnr = functools.partial(image.psnr, data_range=255)
  with pytest.raises(ValueError, match="differ in shape"):
    sliding.sliding_frame_metric(psnr, reference[:2, :8], reference, higher_is_better=True)
  with pytest.raises(ValueError, match="offset 0 scored NaN"):
    sliding.sliding_frame_metric(lambda a, b: np.full(len(a), np.nan), reference[:2], reference,
                                 higher_is_better=True)
