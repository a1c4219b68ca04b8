"""LSE-C / LSE-D and AV offset (talking_heads.metrics.lse) on synthetic embedding sequences.

With torch installed, the scores are compared with a reference written here from syncnet_python's
algorithm (`calc_pdist` with torch's pairwise_distance, mean, min and median over offsets).
"""

import warnings

import numpy as np
import pytest

from talking_heads.metrics import lse


def _planted(offset: int, n: int = 60, d: int = 16, noise: float = 0.05, seed: int = 0):
  """Video [n, d] and audio [n, d] where audio row v - offset matches video row v."""
  rng = np.random.default_rng(seed)
  content = rng.normal(size=(n + 2 * lse.VSHIFT, d))  # content[lse.VSHIFT + t] is frame t's
  video = content[lse.VSHIFT:lse.VSHIFT + n] + noise * rng.normal(size=(n, d))
  audio = content[lse.VSHIFT + offset:lse.VSHIFT + offset + n] + noise * rng.normal(size=(n, d))
  return video, audio


@pytest.mark.parametrize("offset", [-15, -7, -1, 0, 2, 6, 15])
def test_recovers_a_planted_offset(offset):
  video, audio = _planted(offset)
  score = lse.sync_score(video, audio)
  assert score.offset == offset
  assert score.num_windows == 60
  # The distance at the planted offset is the noise level, far below the unmatched median.
  assert score.confidence > 2.0
  assert score.distance == pytest.approx(score.mean_distances[lse.VSHIFT - offset])
  assert score.distance < 0.5 * np.median(score.mean_distances)


def test_constant_distances_give_zero_confidence():
  assert lse.sync_score(np.zeros((10, 8)), np.zeros((10, 8))).confidence == 0.0
  score = lse.score_distances(np.full((7, 31), 3.25))
  assert score.confidence == 0.0
  assert score.distance == 3.25
  # Identical embeddings for every frame: each offset sees the same rows except padding, which
  # is absent when vshift is 0.
  same = np.ones((5, 4))
  assert lse.sync_score(same, same, vshift=0).confidence == 0.0


def test_distance_curve_by_hand():
  # D = 1, N = 3, vshift = 1: entry [v, j] = |video[v] - audio[v + j - 1] + eps|, audio outside = 0.
  video = np.array([[1.0], [2.0], [4.0]])
  audio = np.array([[0.0], [3.0], [5.0]])
  eps = lse.PAIRWISE_EPS
  expected = np.array([
      [abs(1 - 0 + eps), abs(1 - 0 + eps), abs(1 - 3 + eps)],   # audio[-1] is padding (0)
      [abs(2 - 0 + eps), abs(2 - 3 + eps), abs(2 - 5 + eps)],
      [abs(4 - 3 + eps), abs(4 - 5 + eps), abs(4 - 0 + eps)],   # audio[3] is padding
  ])
  np.testing.assert_allclose(lse.distance_curve(video, audio, vshift=1), expected, rtol=0, atol=1e-15)
  score = lse.sync_score(video, audio, vshift=1)
  mdist = expected.mean(axis=0)  # ~[1.333, 1.0, 3.0]
  assert score.offset == 1 - 1
  assert score.distance == pytest.approx(1.0, abs=1e-5)
  assert score.confidence == pytest.approx(1 / 3, abs=1e-5)
  np.testing.assert_allclose(score.mean_distances, mdist, rtol=1e-12)
  # fconf = median - distance at the best offset = 1/3 for each frame; the 9-tap median filter
  # pads with zeros, so with 3 frames every window holds 6 zeros and its median is 0.
  np.testing.assert_array_equal(score.frame_confidence, np.zeros(3))


def test_frame_confidence_is_positive_inside_a_synced_clip():
  video, audio = _planted(3, n=40)
  conf = lse.sync_score(video, audio).frame_confidence
  # The zero-padded median filter pulls the first and last 4 frames down; the interior is in sync.
  assert (conf[4:-4] > 1.0).all()


@pytest.mark.parametrize("n", [1, 3, 8, 9, 10, 31])
def test_medfilt_matches_scipy(n):
  scipy_signal = pytest.importorskip("scipy.signal")
  x = np.random.default_rng(n).normal(size=n)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # scipy warns when the kernel exceeds the signal
    expected = scipy_signal.medfilt(x, kernel_size=9)
  np.testing.assert_array_equal(lse.medfilt(x, 9), expected)
  with pytest.raises(ValueError, match="odd"):
    lse.medfilt(x, 4)


def test_lengths_follow_syncnet_python():
  assert lse.min_length(100, 640 * 80 + 639) == 80
  assert lse.min_length(50, 640 * 80) == 50
  assert lse.num_windows(100, 640 * 80) == 75
  assert lse.num_windows(6, 640 * 6) == 1
  with pytest.raises(lse.ClipTooShortError, match=r"clip7: too short.*5 video frames"):
    lse.num_windows(5, 640 * 100, clip_id="clip7")
  with pytest.raises(lse.ClipTooShortError, match="min_length 5"):
    lse.num_windows(100, 640 * 6 - 1)


def test_bad_embeddings_are_named():
  with pytest.raises(ValueError, match="one shape"):
    lse.sync_score(np.zeros((4, 8)), np.zeros((5, 8)))
  with pytest.raises(lse.ClipTooShortError, match="N = 0"):
    lse.sync_score(np.zeros((0, 8)), np.zeros((0, 8)))
  bad = np.zeros((4, 8))
  bad[2, 1] = np.nan
  with pytest.raises(ValueError, match="clipA: audio embedding of start frame 2"):
    lse.sync_score(np.zeros((4, 8)), bad, clip_id="clipA")


def test_summary_means_over_clips():
  scores = [lse.sync_score(*_planted(k, seed=k + 20)) for k in (0, 1, -2)]
  summary = lse.summarise(scores)
  assert summary.offsets == (0, 1, -2)
  assert summary.lse_c == pytest.approx(np.mean([s.confidence for s in scores]))
  assert summary.lse_d == pytest.approx(np.mean([s.distance for s in scores]))
  with pytest.raises(ValueError, match="no clip"):
    lse.summarise([])


@pytest.mark.parity
def test_matches_a_torch_reference():
  torch = pytest.importorskip("torch")

  def reference(video, audio, vshift):  # syncnet_python's evaluate, from its description.
    feat1, feat2 = torch.from_numpy(video).float(), torch.from_numpy(audio).float()
    win = 2 * vshift + 1
    feat2p = torch.nn.functional.pad(feat2, (0, 0, vshift, vshift))
    dists = [torch.nn.functional.pairwise_distance(feat1[[i], :].repeat(win, 1), feat2p[i:i + win, :])
             for i in range(len(feat1))]
    mdist = torch.mean(torch.stack(dists, 1), 1)
    minval, minidx = torch.min(mdist, 0)
    return int(vshift - minidx), float(torch.median(mdist) - minval), float(minval)

  rng = np.random.default_rng(3)
  for offset, vshift in ((4, 15), (-9, 15), (1, 3)):
    video, audio = _planted(offset, n=37, d=64, noise=0.5)
    video, audio = video * 7.0 + 1.0, audio * 7.0 + 1.0 + rng.normal(size=audio.shape)
    ref_offset, ref_conf, ref_dist = reference(video, audio, vshift)
    score = lse.sync_score(video, audio, vshift=vshift)
    assert score.offset == ref_offset
    assert score.confidence == pytest.approx(ref_conf, rel=1e-4, abs=1e-4)
    assert score.distance == pytest.approx(ref_dist, rel=1e-5)
