import numpy as np
import pytest

from talking_heads.analysis import phoneme_probe


def test_frames_take_the_phoneme_at_their_centre():
  # 25 fps: centres at 0.02, 0.06, 0.10, 0.14, 0.18, 0.22 s.
  phonemes = [["h", 0.03, 0.08], ["_:", 0.08, 0.12], ["a", 0.12, 0.21]]
  assert phoneme_probe.frame_labels(phonemes, 6, 25) == ["_", "h", "_", "a", "a", "_"]


def _separable(num, dim, classes, noise, rng):
  centres = rng.normal(size=(classes, dim)) * 3
  y = rng.integers(0, classes, num)
  return centres[y] + noise * rng.normal(size=(num, dim)), [f"p{k}" for k in y]


def test_probe_reads_linearly_encoded_phonemes_and_not_noise():
  rng = np.random.default_rng(0)
  x, labels = _separable(1200, 16, 5, 0.5, rng)
  result = phoneme_probe.fit_linear_probe(x[:800], labels[:800], x[800:], labels[800:])
  assert result.accuracy > 0.95 and result.balanced_accuracy > 0.95
  assert result.num_classes == 5 and result.test_frames == 400
  # Features independent of the labels: held-out accuracy stays near the majority rate.
  noise = rng.normal(size=(1200, 16))
  chance = phoneme_probe.fit_linear_probe(noise[:800], labels[:800], noise[800:], labels[800:])
  assert chance.balanced_accuracy < 0.3
  assert chance.accuracy < chance.majority_rate + 0.08


def test_rare_classes_are_left_out_and_bad_shapes_named():
  rng = np.random.default_rng(1)
  x, labels = _separable(300, 4, 3, 0.3, rng)
  labels[0] = "rare"
  result = phoneme_probe.fit_linear_probe(x[:200], labels[:200], x[200:], labels[200:],
                                          min_count=5)
  assert result.num_classes == 3 and result.train_frames == 199
  with pytest.raises(ValueError, match="features must be"):
    phoneme_probe.fit_linear_probe(x[:200], labels[:200], x[200:, :2], labels[200:])
  with pytest.raises(ValueError, match="labels"):
    phoneme_probe.fit_linear_probe(x[:200], labels[:100], x[200:], labels[200:])
