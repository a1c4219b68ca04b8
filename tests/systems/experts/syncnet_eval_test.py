"""Independent LSE expert (syncnet_python's S trained here): its batches are the scorer's inputs,
its tiny stage trains (loss falls), restores as the LSE scorer and its held-out planted-offset
recovery is measured."""

import jax
import numpy as np
import pytest

from experiments.configs.experts import syncnet as syncnet_config
from experiments.configs.experts import syncnet_eval as syncnet_eval_config
from talking_heads.audio.windows import SAMPLES_PER_FRAME
from talking_heads.io import dataset as dataset_lib
from talking_heads.metrics import sync_experts
from talking_heads.models import syncnet as syncnet_lib
from talking_heads.pipelines import base as pipeline_base
from talking_heads.pipelines import sync as sync_pipeline
from talking_heads.pipelines import testing
from talking_heads.systems.experts import sync_evaluation
from talking_heads.systems.experts import sync_expert
from talking_heads.training import loop

SIZE = 64


def _linked_clip(rng, num_frames):
  """Frames whose brightness is the loudness of the frame's audio (a learnable sync link)."""
  loud = rng.uniform(0.05, 1.0, num_frames)                                    # [T]
  audio = (rng.normal(0.0, 0.2, (num_frames, SAMPLES_PER_FRAME)) * loud[:, None]).ravel()
  frames = np.broadcast_to((255 * loud)[:, None, None, None], (num_frames, SIZE, SIZE, 3))
  noise = rng.integers(0, 16, frames.shape)
  return np.clip(frames + noise, 0, 255).astype(np.uint8), audio.astype(np.float32)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  """One short training clip (7 windows: a batch of 8 sees nearly all, so the loop can fit it) and
  two held-out clips."""
  root = tmp_path_factory.mktemp("sync_eval_ds")
  rng = np.random.default_rng(0)
  counts, splits = [12, 30, 30], ["train", "val", "val"]
  clips = [_linked_clip(rng, n) for n in counts]
  testing.write_random_dataset(root, counts, image_size=SIZE, splits=splits,
                               frames=[f for f, _ in clips], audio=[a for _, a in clips])
  return str(root)


def test_offset_batches_are_the_scorers_inputs(dataset):
  it = sync_pipeline.make_offset_eval_iterator(dataset, batch_size=4, shard_index=0, shard_count=1,
                                               num_workers=0, split="val", stride=5, max_offset=3)
  batch = next(iter(it))
  data = dataset_lib.Dataset(dataset)
  clips = sorted(data.clips("val"), key=lambda c: c.id)
  for b in range(4):
    clip, v = clips[int(batch["clip"][b])], int(batch["start"][b])
    scorer = sync_experts.syncnet_mfcc_windows(np.asarray(clip.audio))[..., 0]   # [N, 13, 20]
    np.testing.assert_array_equal(batch["frames"][b], np.asarray(clip.frames)[v:v + 5])
    for k in range(-3, 4):
      inside = 0 <= v + k < scorer.shape[0]
      assert bool(batch["offset_mask"][b, k + 3]) == inside, (v, k)
      if inside:
        np.testing.assert_allclose(batch["mfcc"][b, k + 3], scorer[v + k], rtol=1e-6)


def test_the_lower_centre_region_is_cropped_alike_in_training_and_scoring(dataset, tmp_path):
  it = sync_pipeline.make_offset_eval_iterator(dataset, batch_size=2, shard_index=0, shard_count=1,
                                               num_workers=0, split="val", stride=5, max_offset=3,
                                               image_size=SIZE, region="lower_centre")
  batch = next(iter(it))
  clip = sorted(dataset_lib.Dataset(dataset).clips("val"), key=lambda c: c.id)[int(batch["clip"][0])]
  v = int(batch["start"][0])
  window = np.asarray(clip.frames)[v:v + 5]
  crop = sync_pipeline.crop_lip_region(window, "lower_centre")
  np.testing.assert_array_equal(crop, window[:, SIZE // 2:, SIZE // 4:3 * SIZE // 4])
  np.testing.assert_array_equal(batch["frames"][0], pipeline_base.resize_frames(crop, SIZE))
  config = syncnet_eval_config.get_config(
      "tiny,total_steps=1,eval_every=0,checkpoint_every=1,image_every=0")
  config.data.update({"root": dataset, "lip_region": "lower_centre"})
  config.progress_bar = False
  loop.train_and_evaluate(config, str(tmp_path))
  expert = sync_expert.independent_expert(str(tmp_path))
  assert "lower_centre" in expert.name
  np.testing.assert_array_equal(expert._resize(window, SIZE), batch["frames"][0])  # pylint: disable=protected-access
  with pytest.raises(ValueError, match="lip region 'mouth'"):
    sync_pipeline.make_offset_iterator(dataset, batch_size=2, shard_index=0, shard_count=1, seed=0,
                                       num_workers=0, region="mouth")


def test_tiny_stage_trains_and_its_offset_recovery_is_measured(dataset, tmp_path):
  config = syncnet_eval_config.get_config(
      "tiny,total_steps=40,eval_every=40,checkpoint_every=40,image_every=0,log_every=1")
  config.data.root = dataset
  config.progress_bar = False
  result = loop.train_and_evaluate(config, str(tmp_path))
  losses = [h["loss"] for h in result.history]
  assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses
  assert 0 <= result.eval_history[-1]["offset_accuracy"] <= 1
  quality = sync_expert.independent_expert_quality(str(tmp_path))
  assert quality["step"] == 40 and quality["chance"] == pytest.approx(1 / 7)
  assert quality["offset_accuracy"] == pytest.approx(result.eval_history[-1]["offset_accuracy"])
  assert quality["required"] == 0.0   # tiny experts show the wiring: they judge at any accuracy
  # Restored as the LSE scorer (named as trained here), then the held-out planted-offset check.
  expert = sync_expert.lse_scorer(sync_eval_workdir=str(tmp_path), syncnet_workdir="unused")
  assert not expert.comparable_with_papers and "trained here" in expert.name
  assert expert.crop_size == SIZE
  clips = sorted(dataset_lib.Dataset(dataset).clips("val"), key=lambda c: c.id)
  report = sync_evaluation.evaluate_split(expert, clips, max_shift=2)
  assert set(report["shift_accuracy"]) == {"-2", "-1", "0", "1", "2"}
  assert 0 <= report["shift_exact_percent"] <= 100
  assert np.isfinite(report["in_sync"]["lse_c"]) and np.isfinite(report["mismatched"]["lse_d"])


def test_a_weak_independent_expert_does_not_judge(dataset, tmp_path):
  """Below its accuracy bar the independent expert is refused: the colour expert scores, named
  with the reason, or, without one, an error says why."""
  sync_eval = tmp_path / "sync_eval"
  config = syncnet_eval_config.get_config(
      "tiny,total_steps=2,eval_every=2,checkpoint_every=2,image_every=0")
  config.data.root, config.progress_bar = dataset, False
  loop.train_and_evaluate(config, str(sync_eval))
  bar = sync_expert.independent_expert_quality(str(sync_eval))["over_chance"] + 0.5
  with pytest.raises(ValueError, match="too weak to judge: held-out offset accuracy"):
    sync_expert.lse_scorer(sync_eval_workdir=str(sync_eval), min_over_chance=bar)
  colour = tmp_path / "syncnet"
  config = syncnet_config.get_config("tiny,total_steps=2,checkpoint_every=2,eval_every=0,image_every=0")
  config.data.root = dataset
  config.progress_bar = False
  loop.train_and_evaluate(config, str(colour))
  expert = sync_expert.lse_scorer(sync_eval_workdir=str(sync_eval), syncnet_workdir=str(colour),
                                  min_over_chance=bar)
  assert isinstance(expert, sync_experts.TrainedSyncNetExpert)
  assert "used because the independent expert" in sync_expert.scorer_label(expert)


def test_scorer_choice_and_errors(tmp_path):
  with pytest.raises(ValueError, match="LSE needs an expert"):
    sync_expert.lse_scorer(sync_eval_workdir=str(tmp_path / "absent"))
  with pytest.raises(ValueError, match="leave no feature map"):
    jax.eval_shape(lambda: syncnet_lib.SyncNetS(lip_size=16).init(
        jax.random.PRNGKey(0), np.zeros((1, 5, 16, 16, 3)), np.zeros((1, 13, 20, 1))))


def test_agreement_over_score_rows():
  rows = [{"lse_c": 1.0, "lse_c_second": 2.0}, {"lse_c": 2.0, "lse_c_second": 3.0},
          {"lse_c": 3.0, "lse_c_second": 1.0}]
  # Ranks (1, 2, 3) vs (2, 3, 1): 1 - 6 (1 + 1 + 4) / (3 (9 - 1)) = -0.5.
  assert sync_expert.agreement(rows) == {"pairs": 3, "spearman_lse_c": pytest.approx(-0.5)}
  assert sync_expert.agreement([{"lse_c": 1.0}]) == {}
