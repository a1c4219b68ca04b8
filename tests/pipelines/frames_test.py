"""Tests for talking_heads.pipelines.frames: frame samples and degradations."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from talking_heads.io import dataset as dataset_lib
from talking_heads.pipelines import frames, testing

NO_DEGRADATION = frames.Degradations(blur_prob=0.0, rescale_prob=0.0, noise_prob=0.0,
                                     region_prob=0.0)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  path = tmp_path_factory.mktemp("data")
  testing.write_random_dataset(path, [12, 20, 9], splits=["train", "train", "val"])
  return path


def _batches(root, n=2, **options):
  it = frames.make_frames_iterator(root, batch_size=4, shard_index=0, shard_count=1, seed=0,
                                   num_workers=0, **options)
  try:
    return [next(it) for _ in range(n)]
  finally:
    it.close()


def test_shapes_dtypes_and_content(root):
  clips = dataset_lib.Dataset(root).clips("train")
  for batch in _batches(root, reference=True, degradations=frames.Degradations()):
    assert batch["image"].shape == batch["degraded"].shape == batch["reference"].shape == (
        4, 32, 32, 3)
    assert batch["image"].dtype == batch["degraded"].dtype == batch["reference"].dtype == np.uint8
    assert batch["clip"].dtype == batch["start"].dtype == np.int32
    for b in range(4):
      clip_frames = clips[batch["clip"][b]].frames
      np.testing.assert_array_equal(batch["image"][b], clip_frames[batch["start"][b]])
      matches = [f for f in range(len(clip_frames))
                 if np.array_equal(clip_frames[f], batch["reference"][b])]
      assert matches and batch["start"][b] not in matches  # another frame of the same clip


def test_resized_and_undegraded(root):
  for batch in _batches(root, image_size=16):
    assert batch["image"].shape == (4, 16, 16, 3)
    np.testing.assert_array_equal(batch["degraded"], batch["image"])
  for batch in _batches(root, degradations=NO_DEGRADATION):
    np.testing.assert_array_equal(batch["degraded"], batch["image"])


def test_pipeline_degrades_every_input(root):
  always = frames.Degradations(blur_prob=1.0, rescale_prob=1.0, noise_prob=1.0, region_prob=0.0)
  for batch in _batches(root, degradations=always):
    for b in range(4):
      assert not np.array_equal(batch["degraded"][b], batch["image"][b])


@pytest.mark.parametrize("sigma", [0.7, 2.0])
def test_gaussian_blur_matches_scipy(sigma):
  image = np.random.default_rng(0).uniform(0, 255, (24, 20, 3)).astype(np.float32)
  radius = math.ceil(3 * sigma)
  expected = ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0), mode="mirror",
                                     truncate=radius / sigma)
  np.testing.assert_allclose(frames.gaussian_blur(image, sigma), expected, atol=1e-3)


def test_down_up():
  flat = np.full((16, 16, 3), 90.0, np.float32)
  np.testing.assert_allclose(frames.down_up(flat, 3.0), flat, atol=1e-4)
  checker = (np.indices((16, 16)).sum(0) % 2 * 255.0).astype(np.float32)[..., None]
  # 2x2 area means of a one-pixel checkerboard are all 127.5: the detail is gone.
  np.testing.assert_allclose(frames.down_up(checker, 2.0), 127.5, atol=1e-3)
  ramp = np.tile(np.linspace(0, 255, 32, dtype=np.float32), (32, 1))[..., None]
  assert abs(frames.down_up(ramp, 4.0).mean() - ramp.mean()) < 1.0


def test_noise_statistics_and_region():
  gray = np.full((64, 64, 3), 128, np.uint8)
  params = frames.DegradationParams(blur_sigma=None, rescale_factor=None, noise_std=10.0,
                                    region=None, noise_seed=3)
  diff = frames.apply_degradation(gray, params).astype(np.float64) - 128
  assert abs(diff.std() - 10.0) < 0.5 and abs(diff.mean()) < 0.3
  boxed = frames.apply_degradation(gray, dataclasses.replace(params, region=(5, 10, 20, 30)))
  inside = np.zeros((64, 64), bool)
  inside[5:25, 10:40] = True
  assert (boxed[~inside] == 128).all()
  np.testing.assert_array_equal(boxed[inside], frames.apply_degradation(gray, params)[inside])
  none = dataclasses.replace(params, noise_std=None)
  np.testing.assert_array_equal(frames.apply_degradation(gray, none), gray)


def test_sample_degradation_probabilities_ranges_and_stable_draws():
  config = frames.Degradations(blur_prob=1.0, rescale_prob=1.0, noise_prob=1.0, region_prob=1.0)
  for seed in range(50):
    p = frames.sample_degradation(config, np.random.default_rng(seed), 48, 40)
    assert 0.5 <= p.blur_sigma <= 3.0 and 1.5 <= p.rescale_factor <= 4.0
    assert 2.0 <= p.noise_std <= 20.0
    top, left, h, w = p.region
    assert 0 <= top and top + h <= 48 and 0 <= left and left + w <= 40
    assert 0.25 * 48 - 1 <= h <= 0.75 * 48 + 1 and 0.25 * 40 - 1 <= w <= 0.75 * 40 + 1
    off = frames.sample_degradation(NO_DEGRADATION, np.random.default_rng(seed), 48, 40)
    assert (off.blur_sigma, off.rescale_factor, off.noise_std, off.region) == (None,) * 4
    no_blur = dataclasses.replace(config, blur_prob=0.0)
    q = frames.sample_degradation(no_blur, np.random.default_rng(seed), 48, 40)
    assert q.blur_sigma is None
    assert (q.rescale_factor, q.noise_std, q.region, q.noise_seed) == (
        p.rescale_factor, p.noise_std, p.region, p.noise_seed)


def test_bad_degradation_config():
  with pytest.raises(ValueError, match="blur_prob"):
    frames.Degradations(blur_prob=1.5)
  with pytest.raises(ValueError, match="rescale_factor"):
    frames.Degradations(rescale_factor=(0.5, 2.0))


def test_batch_feeds_a_jitted_step(root):
  batch = _batches(root, n=1, degradations=frames.Degradations(), reference=True)[0]

  @jax.jit
  def l1(batch):
    target = batch["image"].astype(jnp.float32) / 255.0
    return jnp.mean(jnp.abs(batch["degraded"].astype(jnp.float32) / 255.0 - target))

  expected = np.mean(np.abs(batch["degraded"] / 255.0 - batch["image"] / 255.0))
  np.testing.assert_allclose(float(l1(batch)), expected, rtol=1e-5)


def test_identity_filter(root):
  # The fixture's clips 0, 1, 2 belong to id0, id1, id0 (splits train, train, val).
  data = dataset_lib.Dataset(root)
  for batch in _batches(root, n=3, identities=["id1"]):
    assert set(batch["clip"].tolist()) == {0}   # position in the filtered list: clip001 only
    for b in range(4):
      np.testing.assert_array_equal(batch["image"][b], data.clip("clip001").frames[batch["start"][b]])
  it = frames.make_frames_eval_iterator(root, batch_size=4, shard_index=0, shard_count=1, seed=0,
                                        num_workers=0, split=None, identities=("id0",))
  seen = [(int(c), int(s)) for b in it for c, s, v in zip(b["clip"], b["start"], b["valid"]) if v]
  assert sorted(seen) == [(0, f) for f in range(12)] + [(1, f) for f in range(9)]
  with pytest.raises(ValueError, match=r"split 'train' has no clips of identities \['nobody'\].*\['id0', 'id1'\]"):
    _batches(root, identities=["nobody"])
  with pytest.raises(ValueError, match="sequence of names"):
    _batches(root, identities="id0")


def test_annotations_follow_the_frame_and_its_size(root):
  data = dataset_lib.Dataset(root)
  clips = data.clips("train")
  for size, batch in ((32, _batches(root, n=1, annotations=True)[0]),
                      (16, _batches(root, n=1, image_size=16, annotations=True)[0])):
    assert batch["landmarks"].shape == (4, 68, 2) and batch["pose"].shape == (4, 6)
    assert batch["expression"].shape == (4, len(data.expression_names))
    assert batch["landmarks"].dtype == batch["pose"].dtype == batch["expression"].dtype == np.float32
    for b in range(4):
      clip, frame = clips[batch["clip"][b]], batch["start"][b]
      np.testing.assert_array_equal(batch["pose"][b], clip.pose[frame])
      np.testing.assert_array_equal(batch["expression"][b], clip.expression[frame])
      # Pixel centres on integers: the 2x2 block with centre 10.5 at 32 px is pixel 5 at 16 px.
      expected = clip.landmarks[frame] if size == 32 else (clip.landmarks[frame] + 0.5) / 2 - 0.5
      np.testing.assert_allclose(batch["landmarks"][b], expected, rtol=1e-6, atol=1e-5)
  it = frames.make_frames_eval_iterator(root, batch_size=4, shard_index=0, shard_count=1, seed=0,
                                        num_workers=0, split="val", annotations=True)
  batch = next(it)
  np.testing.assert_array_equal(batch["pose"][:4], data.clip("clip002").pose[:4])
  assert "landmarks" not in _batches(root, n=1)[0] and "pose" not in _batches(root, n=1)[0]
