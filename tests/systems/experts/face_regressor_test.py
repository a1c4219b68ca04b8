"""Face-parameter regressor stage: learns, evaluates, trains/resumes, loads for inference."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs.experts import face_regressor as face_regressor_config
from talking_heads.io import dataset as dataset_lib
from talking_heads.pipelines import base, testing
from talking_heads.systems.experts import face_regressor as fr
from talking_heads.training import loop, registry
from talking_heads.training.state import TrainState


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  root = tmp_path_factory.mktemp("face_regressor_ds")
  # Identities alternate id0, id1: clip002 (id0) is the val clip.
  testing.write_random_dataset(root, [20, 20, 10], image_size=32,
                               splits=["train", "train", "val"])
  return str(root)


@pytest.fixture(scope="module")
def params():
  """The tiny model's initial parameters (initialisation compiles slowly on CPU: share it)."""
  return jax.device_get(jax.jit(fr.FaceRegressorStage(tiny_config()).init_state)(
      jax.random.PRNGKey(0)).params)


def new_state(stage, params):
  return TrainState.create(params, stage.tx, rng=jax.random.PRNGKey(0))


def tiny_config(root="", **kw):
  c = face_regressor_config.get_config("tiny")
  c.data.root = root
  c.progress_bar = False
  for k, v in kw.items():
    c[k] = v
  return c


def dot_batch(n, size=32, seed=0):
  """Frames with one bright dot each; landmarks and pose are functions of the dot's position."""
  rng = np.random.default_rng(seed)
  centres = rng.uniform(6, size - 7, (n, 2))
  yy, xx = np.mgrid[:size, :size]
  images = np.zeros((n, size, size, 3), np.uint8)
  for i, (x, y) in enumerate(centres):
    images[i] = (255 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 8.0))[..., None]
  offsets = np.random.default_rng(1).uniform(-5, 5, (68, 2))
  landmarks = (centres[:, None] + offsets).astype(np.float32)
  pose = np.zeros((n, 6), np.float32)
  x, y = centres[:, 0] - size / 2, centres[:, 1] - size / 2
  pose[:, :3] = 0.001 * np.stack([x, y, x - y], -1)             # within +-0.03 rad
  return {"image": jnp.asarray(images), "degraded": jnp.asarray(images),
          "landmarks": jnp.asarray(landmarks), "pose": jnp.asarray(pose)}


def test_registered():
  assert registry.get("face_regressor") is fr.FaceRegressorStage


def test_overfits_a_small_batch(params):
  stage = fr.FaceRegressorStage(tiny_config(optimizer={**tiny_config().optimizer.to_dict(),
                                                        "learning_rate": 3e-3}))
  batch = dot_batch(8)
  state = new_state(stage, params)
  step = jax.jit(stage.train_step)
  history = []
  for i in range(150):
    state, metrics = step(state, batch, jax.random.PRNGKey(i))
    history.append({k: float(v) for k, v in metrics.items()})
  first, last = history[0], history[-1]
  assert last["loss"] < 0.02 * first["loss"], (first, last)
  assert last["landmark_px"] < 1.0 < first["landmark_px"]
  assert last["pose_loss"] < 0.1 * first["pose_loss"]
  out = jax.jit(stage.predict)(state.params, batch["image"])
  np.testing.assert_allclose(out["landmarks"], batch["landmarks"], atol=1.5)


def test_eval_step_matches_numpy_and_skips_padding(dataset, params):
  stage = fr.FaceRegressorStage(tiny_config(dataset))
  # Eval: the val clip at stride 3 -> frames 0, 3, 6, 9 and 4 padding rows.
  batches = list(stage.eval_batches(8, 0, 1))
  assert len(batches) == 1 and batches[0]["valid"].tolist() == [True] * 4 + [False] * 4
  clip = dataset_lib.Dataset(dataset).clip("clip002")
  np.testing.assert_array_equal(batches[0]["pose"][:4], clip.pose[::3])
  rng = np.random.default_rng(1)
  state = new_state(stage, jax.tree_util.tree_map(
      lambda p: p + 0.01 * rng.standard_normal(p.shape, np.float32), params))
  metrics = jax.jit(stage.eval_step)(state, batches[0], None)
  out = jax.device_get(jax.jit(stage.predict)(state.params, clip.frames[::3]))
  dist = np.linalg.norm(out["landmarks"] - clip.landmarks[::3], axis=-1)
  np.testing.assert_allclose(float(metrics["landmark_px"]), dist.mean(), rtol=1e-4)
  np.testing.assert_allclose(float(metrics["mouth_px"]), dist[:, 48:].mean(), rtol=1e-4)
  error = np.degrees(out["pose"] - clip.pose[::3, :3])
  for k, axis in enumerate(fr.POSE_AXES):
    np.testing.assert_allclose(float(metrics[f"pose_mse_deg2_{axis}"]), np.mean(error[:, k] ** 2), rtol=1e-4)
    np.testing.assert_allclose(float(metrics[f"pose_mae_deg_{axis}"]), np.mean(np.abs(error[:, k])), rtol=1e-4)
  assert float(metrics["eval_weight"]) == 4.0
  grid = jax.jit(stage.images)(state, batches[0], None)["landmarks"]
  assert grid.shape == (8, 32, 32, 3)
  x, y = np.round(batches[0]["landmarks"][0, 30]).astype(int)   # a true landmark is green
  assert grid[0, y, x, 1] == 1.0 or grid[0, y, x, 0] == 1.0     # (or covered by a red one)
  marked = ~np.isclose(grid[0], batches[0]["image"][0] / np.float32(255), atol=1e-6).all(-1)
  assert 0 < marked.sum() <= 2 * 68                              # only landmark pixels change


def test_evaluate_split_against_a_constant_predictor(dataset, params):
  stage = fr.FaceRegressorStage(tiny_config(dataset))
  params = jax.tree_util.tree_map(np.array, params)
  bias = np.zeros(2 * 68 + 3, np.float32)   # the zero-kernel head outputs its bias
  bias[:136] = np.linspace(-0.5, 0.5, 136)
  bias[136:] = (2.0, -1.0, 0.5)             # x pose_scale 0.01 rad
  params["head"]["bias"] = bias
  predictor = fr.FaceRegressorPredictor(stage, params, batch_size=4)
  pose = np.array([0.02, -0.01, 0.005], np.float32)
  result = fr.evaluate_split(predictor, dataset, "train", stride=2, baseline_pose=pose)
  data = dataset_lib.Dataset(dataset)
  true_pose = np.concatenate([c.pose[::2, :3] for c in data.clips("train")])
  true_landmarks = np.concatenate([c.landmarks[::2] for c in data.clips("train")])
  constant = (bias[:136].reshape(68, 2) + 1) * 16 - 0.5
  dist = np.linalg.norm(constant - true_landmarks, axis=-1)
  assert result["num_frames"] == 20
  np.testing.assert_allclose(result["landmark_px"], dist.mean(), rtol=1e-5)
  np.testing.assert_allclose(result["mouth_px"], dist[:, 48:].mean(), rtol=1e-5)
  for k, axis in enumerate(fr.POSE_AXES):
    rmse = np.degrees(np.sqrt(np.mean((true_pose[:, k] - pose[k]) ** 2)))
    np.testing.assert_allclose(result[f"pose_rmse_deg_{axis}"], rmse, rtol=1e-5)
    np.testing.assert_allclose(result[f"baseline_rmse_deg_{axis}"], rmse, rtol=1e-5)
  np.testing.assert_allclose(fr.mean_pose(dataset, "train", ["id1"]),
                             data.clip("clip001").pose[:, :3].mean(0), rtol=1e-5)


@pytest.mark.slow
def test_trains_resumes_and_loads_a_predictor(dataset, tmp_path):
  config = tiny_config(dataset, total_steps=4, checkpoint_every=2, eval_every=4, image_every=4,
                       log_every=2)
  config.augment.enabled = True
  workdir = str(tmp_path / "run")
  result = loop.train_and_evaluate(config, workdir)
  assert result.step == 4 and all(np.isfinite(h["loss"]) for h in result.history)
  assert {"landmark_px", "mouth_px", "pose_mse_deg2_yaw", "pose_mae_deg_roll"} <= set(result.eval_history[-1])
  config.total_steps = 6
  resumed = loop.train_and_evaluate(config, workdir)
  assert resumed.step == 6 and len(resumed.history) == 2

  predictor = fr.load_face_regressor(workdir, batch_size=4)
  assert predictor.image_size == 32 and predictor.source.endswith("step 6")
  frames = dataset_lib.Dataset(dataset).clip("clip002").frames[:]
  big = base.resize_frames(frames, 48)                            # 10 frames: 3 batches of 4
  out = predictor.predict(big)
  assert out["landmarks"].shape == (10, 68, 2) and out["pose"].shape == (10, 3)
  assert out["landmarks"].dtype == out["pose"].dtype == np.float32
  stage = fr.FaceRegressorStage(config)
  direct = jax.device_get(jax.jit(stage.predict)(resumed.state.eval_params,
                                                 base.resize_frames(big, 32)))
  np.testing.assert_allclose(out["landmarks"], (direct["landmarks"] + 0.5) * 1.5 - 0.5, atol=1e-4)
  np.testing.assert_allclose(out["pose"], direct["pose"], atol=1e-6)


def test_missing_checkpoint_and_bad_inputs(dataset, params, tmp_path):
  with pytest.raises(FileNotFoundError, match="not a training workdir"):
    fr.load_face_regressor(tmp_path / "nothing")
  workdir = tmp_path / "untrained"
  workdir.mkdir()
  (workdir / "config.json").write_text(json.dumps(tiny_config(dataset).to_dict()))
  with pytest.raises(FileNotFoundError, match="No checkpoint"):
    fr.load_face_regressor(workdir)
  other = tiny_config(dataset)
  other.stage = "sovqae"
  (workdir / "config.json").write_text(json.dumps(other.to_dict()))
  with pytest.raises(ValueError, match="trained stage 'sovqae'"):
    fr.load_face_regressor(workdir)
  stage = fr.FaceRegressorStage(tiny_config(dataset))
  predictor = fr.FaceRegressorPredictor(stage, params)
  with pytest.raises(ValueError, match=r"uint8 RGB frames \[N, H, H, 3\]"):
    predictor.predict(np.zeros((2, 32, 40, 3), np.uint8))
  with pytest.raises(ValueError, match="float32"):
    predictor.predict(np.zeros((2, 32, 32, 3), np.float32))
  bad = tiny_config(dataset)
  bad.loss.pose_scale = (0.01, 0.0, 0.01)
  with pytest.raises(ValueError, match="pose_scale"):
    fr.FaceRegressorStage(bad)
