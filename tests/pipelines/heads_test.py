"""Tests for talking_heads.pipelines.heads: frames with head masks and face parameters (PIR)."""

import cv2
import jax
import numpy as np
import pytest

from talking_heads.face import morphable
from talking_heads.io import dataset as dataset_lib
from talking_heads.pipelines import base, heads, testing


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  path = tmp_path_factory.mktemp("data")
  testing.write_random_dataset(path, [10, 14], image_size=48)
  return path


def _batches(root, n=3, **options):
  it = heads.make_head_iterator(root, batch_size=4, shard_index=0, shard_count=1, seed=0,
                                num_workers=0, **options)
  try:
    return [next(it) for _ in range(n)]
  finally:
    it.close()


def _face(size=64, yaw=0.0, seed=0):
  rng = np.random.default_rng(seed)
  pose = morphable.default_pose() + np.array([yaw, 0.05, 0.1, 0, 0, 0])
  return morphable.landmarks_2d(morphable.default_model(), rng.normal(size=15),
                                rng.uniform(0, 1, 9), pose, morphable.default_camera(size))


@pytest.mark.parametrize("yaw", [-0.5, 0.0, 0.4])
def test_head_mask_covers_the_face_and_not_the_corners(yaw):
  landmarks = _face(yaw=yaw)
  mask = heads.head_mask(landmarks, 64, 64)
  assert mask.shape == (64, 64, 1) and mask.dtype == np.float32
  assert set(np.unique(mask)) == {0.0, 1.0}
  xy = np.rint(landmarks).astype(int)
  assert mask[xy[:, 1], xy[:, 0], 0].all()
  assert not mask[[0, 0, -1, -1], [0, -1, 0, -1], 0].any()
  top_of_brows = landmarks[17:27, 1].min()
  assert mask[:int(top_of_brows) - 3].any()  # reaches over the forehead
  assert 0.1 < mask.mean() < 0.6


def test_head_mask_follows_the_face_orientation():
  landmarks = _face()
  upside_down = 63.0 - landmarks  # the image turned by 180 degrees about its centre
  mask = heads.head_mask(landmarks, 64, 64)[..., 0]
  turned = heads.head_mask(upside_down, 64, 64)[..., 0][::-1, ::-1]
  assert (mask * turned).sum() / np.maximum(mask, turned).sum() > 0.97


def test_head_mask_rejects_bad_landmarks():
  with pytest.raises(ValueError, match=r"\[68, 2\]"):
    heads.head_mask(np.zeros((67, 2)), 8, 8)
  bad = _face()
  bad[3, 0] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    heads.head_mask(bad, 64, 64)


def test_samples(root):
  data = dataset_lib.Dataset(root)
  for batch in _batches(root):
    assert batch["image"].shape == batch["masked"].shape == (4, 48, 48, 3)
    assert batch["head_mask"].shape == (4, 48, 48, 1) and batch["head_mask"].dtype == np.float32
    assert batch["K"].shape == (4, 3, 3) and batch["landmarks"].shape == (4, 68, 2)
    assert batch["expression"].shape == (4, 9) and batch["pose"].shape == (4, 6)
    for b in range(4):
      clip, f = data.clips()[batch["clip"][b]], int(batch["start"][b])
      np.testing.assert_array_equal(batch["image"][b], clip.frames[f])
      np.testing.assert_array_equal(batch["landmarks"][b], clip.landmarks[f])
      np.testing.assert_array_equal(batch["expression"][b], clip.expression[f])
      np.testing.assert_array_equal(batch["pose"][b], clip.pose[f])
      np.testing.assert_array_equal(batch["K"][b], clip.K)
      np.testing.assert_array_equal(batch["head_mask"][b], heads.head_mask(clip.landmarks[f], 48, 48))
      np.testing.assert_array_equal(batch["inpaint_mask"][b], heads.inpainting_mask(
          batch["head_mask"][b], clip.landmarks[f]))
      np.testing.assert_array_equal(batch["masked"][b], batch["image"][b] * (
          1 - batch["inpaint_mask"][b]).astype(np.uint8))


def test_resized_samples_keep_landmarks_and_camera_consistent(root):
  data = dataset_lib.Dataset(root)
  model = morphable.default_model()
  for batch in _batches(root, n=1, image_size=96):
    assert batch["image"].shape == (4, 96, 96, 3)
    for b in range(4):
      clip, f = data.clips()[batch["clip"][b]], int(batch["start"][b])
      np.testing.assert_allclose(batch["landmarks"][b], base.rescale_pixels(clip.landmarks[f], 2.0),
                                 atol=1e-4)
      reprojected = morphable.landmarks_2d(model, clip.alpha, clip.expression[f], clip.pose[f],
                                           batch["K"][b])
      np.testing.assert_allclose(reprojected, batch["landmarks"][b], atol=2e-3)


def test_batch_feeds_a_jitted_step(root):
  batch = _batches(root, n=1)[0]

  def head_l2(batch):  # PIR's photometric term on the head: |M_h (I_face - I_GT)|^2
    target = batch["image"].astype(np.float32) / 255.0
    prediction = batch["masked"].astype(np.float32) / 255.0 + 0.1 * batch["expression"].mean()
    return ((batch["head_mask"] * (prediction - target)) ** 2).mean()

  np.testing.assert_allclose(float(jax.jit(head_l2)(batch)), head_l2(batch), rtol=1e-5)


def test_recorded_masks_win_and_identities_filter(tmp_path):
  """Clips with a recorded head mask give it (resized to S); the others the landmark
  approximation; `identities` keeps only their clips."""
  testing.write_random_dataset(tmp_path, [6, 6, 6], image_size=32, head_masks=[True, False, True])
  for size in (32, 64):
    it = heads.make_head_iterator(tmp_path, batch_size=6, shard_index=0, shard_count=1, seed=0,
                                  num_workers=0, image_size=size, identities=["id0"])
    batch = next(it)
    it.close()
    chosen = base.open_split(tmp_path, "train", ["id0"])[1]   # "clip" indexes the chosen clips
    clips = [chosen[c] for c in batch["clip"]]
    assert {c.identity for c in clips} == {"id0"} and {c.id for c in clips} == {"clip000",
                                                                               "clip002"}
    for b, clip in enumerate(clips):
      recorded = np.asarray(clip.head_mask[int(batch["start"][b])])
      expected = cv2.resize(recorded, (size, size), interpolation=cv2.INTER_NEAREST)
      np.testing.assert_array_equal(batch["head_mask"][b, ..., 0], expected)
  it = heads.make_head_iterator(tmp_path, batch_size=2, shard_index=0, shard_count=1, seed=0,
                                num_workers=0, identities=["id1"])
  batch = next(it)
  it.close()
  clip = dataset_lib.Dataset(tmp_path).clip("clip001")
  for b in range(2):
    f = int(batch["start"][b])
    np.testing.assert_array_equal(batch["head_mask"][b], heads.head_mask(clip.landmarks[f], 32, 32))


def test_inpainting_mask_hides_the_dilated_head_and_the_jaw_below_the_chin():
  landmarks = _face(64)
  head = heads.head_mask(landmarks, 64, 64)
  inpaint = heads.inpainting_mask(head, landmarks, dilate=2 / 64, jaw_drop=0.1)
  assert inpaint.shape == (64, 64, 1) and inpaint.dtype == np.float32
  assert np.all(inpaint >= head)                                   # covers the head ...
  grown = cv2.dilate(head[..., 0].astype(np.uint8), np.ones((3, 3), np.uint8))
  assert np.all(inpaint[..., 0] >= grown)                          # ... and a margin around it
  chin = np.round(landmarks[8]).astype(int)
  assert inpaint[chin[1] + 5, chin[0], 0] == 1 and head[chin[1] + 5, chin[0], 0] == 0
  assert inpaint[min(chin[1] + 9, 63), 0, 0] == 0                  # not the frame's side
  np.testing.assert_array_equal(heads.inpainting_mask(head, landmarks, dilate=0, jaw_drop=0)
                                >= head, True)
