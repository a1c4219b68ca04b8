"""DAE-Talker's speech2latent stage, its predictor and the DAE latents precompute command."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs.dae_talker import dae as dae_config
from experiments.configs.dae_talker import speech2latent as s2l_config
from experiments import precompute_audio_features
from experiments.dae_talker import precompute_latents
from talking_heads.audio import mel as mel_lib
from talking_heads.io import dataset as dataset_lib
from talking_heads.pipelines import base, testing
from talking_heads.systems.dae_talker import latents as dae_latents
from talking_heads.systems.dae_talker import speech2latent as s2l_system
from talking_heads.systems.dae_talker.dae import DAEStage
from talking_heads.training import loop
from talking_heads.training.checkpoint import Checkpointer
from talking_heads.training.state import TrainState
from third_party import weights

ROOT = pathlib.Path(__file__).resolve().parents[3]
LATENTS = "dae_tiny"
Z = 16  # the tiny DAE's latent width


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  """Identities alternate id0, id1: id0 owns clip000 (train) and clip002 (test)."""
  root = tmp_path_factory.mktemp("s2l_ds")
  data = testing.write_random_dataset(root, [40, 36, 30, 28], image_size=32,
                                      splits=["train", "train", "test", "test"])
  rng = np.random.default_rng(1)
  scale, offset = rng.uniform(0.1, 5.0, Z), rng.normal(0.0, 3.0, Z)  # unequal spreads
  for clip in data:
    path = base.latents_path(root, LATENTS, clip.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, (rng.normal(size=(clip.num_frames, Z)) * scale + offset).astype(np.float32))
  return str(root)


def tiny_config(root, **data):
  c = s2l_config.get_config("tiny")
  c.data.root = root
  c.data.update(data)
  c.progress_bar = False
  return c


def save_workdir(workdir, config, state, step=1):
  """A workdir holding `state` at `step`, as the training loop leaves it."""
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "config.json").write_text(json.dumps(config.to_dict()))
  checkpointer = Checkpointer(str(workdir), async_save=False)
  checkpointer.save(step, state)
  checkpointer.close()
  return str(workdir)


def random_state(stage, seed=0):
  """A train state with random parameters and the stage's latent statistics.

  Built from the parameters' shapes: compiling the model's init costs 10-20 s on 2 cores.
  """
  rng = np.random.default_rng(seed)

  def leaf(path, x):
    name = getattr(path[-1], "key", None)
    if name == "kernel":
      return jnp.asarray(rng.normal(size=x.shape) / np.sqrt(np.prod(x.shape[:-1])), x.dtype)
    if name == "scale":
      return jnp.ones(x.shape, x.dtype)
    return jnp.asarray(rng.normal(size=x.shape) * 0.1, x.dtype)

  abstract = jax.eval_shape(stage.init_state, jax.random.PRNGKey(0))
  params = jax.tree_util.tree_map_with_path(leaf, abstract.params)
  stats = {"latent_mean": jnp.asarray(stage.latent_mean),
           "latent_std": jnp.asarray(stage.latent_std)}
  return TrainState.create(params, stage.tx, rng=jax.random.PRNGKey(seed), model_state=stats)


def _first_batch(stage, batch_size=8):
  it = stage.train_iterator(batch_size, 0, 1)
  try:
    return next(it)
  finally:
    it.close()


# ------------------------------------------------------------------------- construction, data


def test_latent_statistics_of_the_identity_train_clips(dataset):
  stage = s2l_system.Speech2LatentStage(tiny_config(dataset))
  train = np.load(base.latents_path(dataset, LATENTS, "clip000"))   # id0's only train clip
  np.testing.assert_allclose(stage.latent_mean, train.mean(0), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(stage.latent_std, train.std(0), rtol=1e-4)
  config = tiny_config(dataset)
  config.loss.standardise_latents = False   # the paper's plain MSE
  plain = s2l_system.Speech2LatentStage(config)
  assert plain.latent_mean.tolist() == [0.0] * Z and plain.latent_std.tolist() == [1.0] * Z
  with pytest.raises(ValueError, match="latent statistics have shapes"):
    s2l_system.Speech2LatentStage(tiny_config(dataset), latent_stats=(np.zeros(4), np.ones(4)))
  with pytest.raises(ValueError, match="data.sampling"):
    s2l_system.Speech2LatentStage(tiny_config(dataset, sampling="sentences"))
  config = tiny_config(dataset)
  config.model.features = "wav2vec2_xlsr"
  with pytest.raises(ValueError, match="set audio.frontend=wav2vec2"):
    s2l_system.Speech2LatentStage(config)
  config = tiny_config(dataset)
  config.audio.frontend = "wav2vec2"
  with pytest.raises(ValueError, match="needs audio.weights"):
    s2l_system.Speech2LatentStage(config)


def test_batches_are_the_identity_windows(dataset):
  stage = s2l_system.Speech2LatentStage(tiny_config(dataset, sampling="fixed_segments"))
  batch = _first_batch(stage)
  clip = dataset_lib.Dataset(dataset).clip("clip000")
  assert batch["mel"].shape == (8, 16 * 4, 80) and batch["latents"].shape == (8, 16, Z)
  # clip000 (40 frames) cut at 0, 16, 32: segments of 16, 16 and 8 frames.
  assert set(zip(batch["start"].tolist(), batch["length"].tolist())) == {(0, 16), (16, 16),
                                                                         (32, 8)}
  for k in range(8):
    s, n = int(batch["start"][k]), int(batch["length"][k])
    np.testing.assert_array_equal(batch["pose"][k, :n], clip.pose[s:s + n])


# ----------------------------------------------------------------------------- training, eval


def test_stage_overfits_a_tiny_batch(dataset):
  config = tiny_config(dataset)
  config.optimizer.learning_rate = 1e-2
  stage = s2l_system.Speech2LatentStage(config)
  batch = _first_batch(stage, batch_size=2)
  state = random_state(stage)
  step = jax.jit(stage.train_step)
  losses = []
  for i in range(100):
    state, metrics = step(state, batch, jax.random.PRNGKey(i))
    losses.append({k: float(v) for k, v in metrics.items()})
  first, last = losses[0], losses[-1]
  assert np.isfinite([m["loss"] for m in losses]).all()
  # Standardised targets: MSE of order 1 from the untrained output.
  assert 0.5 < first["latent_mse_standardised"] < 5.0, first
  assert last["latent_mse_standardised"] < 0.2 * first["latent_mse_standardised"], (first, last)
  assert last["pose_mse"] < 0.5 * first["pose_mse"], (first, last)


def test_eval_is_in_latent_units_and_ignores_padding_entries(dataset):
  stage = s2l_system.Speech2LatentStage(tiny_config(dataset))
  batch = {k: jnp.asarray(v) for k, v in _first_batch(stage).items()
           if k in ("mel", "pose", "latents", "mask")}
  state = random_state(stage)
  eval_step = jax.jit(stage.eval_step)
  valid = jnp.arange(8) < 5
  metrics = eval_step(state, {**batch, "valid": valid}, jax.random.PRNGKey(0))
  # Padding entries may hold anything.
  garbage = {**batch, "latents": batch["latents"].at[5:].set(1e6),
             "pose": batch["pose"].at[5:].set(-3.0), "valid": valid}
  again = eval_step(state, garbage, jax.random.PRNGKey(1))
  for key, value in metrics.items():
    np.testing.assert_allclose(float(again[key]), float(value), rtol=1e-6, err_msg=key)
  mask = np.asarray(batch["mask"]) & np.asarray(valid)[:, None]
  assert float(metrics["eval_weight"]) == mask.sum()
  # Independent of the stage: the model conditioned on pose / 0.05, un-standardised by hand.
  pose = batch["pose"][..., :3] / 0.05
  out = jax.jit(lambda p: stage.model.apply({"params": p}, batch["mel"], None, jnp.asarray(mask),
                                            False, pose_override=pose))(state.params)
  latents = np.asarray(out["latents"]) * stage.latent_std + stage.latent_mean
  err = np.square(latents - np.asarray(batch["latents"]))[mask]
  np.testing.assert_allclose(float(metrics["latent_mse"]), err.mean(), rtol=1e-5)
  standardised = (np.asarray(batch["latents"]) - stage.latent_mean) / stage.latent_std
  err = np.square(np.asarray(out["latents"]) - standardised)[mask]
  np.testing.assert_allclose(float(metrics["latent_mse_standardised"]), err.mean(), rtol=1e-5)
  pose_err = np.square(np.asarray(out["pose"]) - np.asarray(pose))[mask]
  np.testing.assert_allclose(float(metrics["pose_mse"]), pose_err.mean(), rtol=1e-5)
  assert float(metrics["latent_mse_predicted_pose"]) != float(metrics["latent_mse"])


def test_images_show_true_latents_above_predicted(dataset):
  stage = s2l_system.Speech2LatentStage(tiny_config(dataset))
  batch = {k: jnp.asarray(v) for k, v in _first_batch(stage).items()
           if k in ("mel", "pose", "latents", "mask")}
  state = random_state(stage)
  (image,) = jax.jit(stage.images)(state, batch, jax.random.PRNGKey(0)).values()
  z, length = stage.model.latent_dim, batch["mask"].shape[1]
  scale = 64 // z
  assert image.shape == (4, (2 * z + 1) * scale, length * scale, 3)
  image = np.asarray(image)[:, ::scale, ::scale]                           # one pixel per value
  mask = np.asarray(batch["mask"][:4], bool)
  true = (np.asarray(batch["latents"][:4]) - stage.latent_mean) / stage.latent_std
  v = np.clip(true / 3, -1, 1).transpose(0, 2, 1)                                  # [4, Z, L]
  expected = np.stack([1 - np.maximum(-v, 0), 1 - np.abs(v), 1 - np.maximum(v, 0)], axis=-1)
  top = image[:, :z]
  np.testing.assert_allclose(top[np.broadcast_to(mask[:, None], top.shape[:3])],
                             expected[np.broadcast_to(mask[:, None], top.shape[:3])], atol=1e-5)
  assert np.all(top[np.broadcast_to(~mask[:, None], top.shape[:3])] == 0.5)   # padding grey
  assert np.all(image[:, z] == 1.0)                                               # the gap
  assert not np.allclose(image[:, z + 1:], top)       # the untrained prediction differs


# ---------------------------------------------------------------------------------- predictor


@pytest.fixture(scope="module")
def predictor(dataset, tmp_path_factory):
  """A random tiny state saved as a workdir whose config names no existing dataset."""
  config = tiny_config(dataset)
  stage = s2l_system.Speech2LatentStage(config)
  state = random_state(stage, seed=3)
  config.data.root = "/nonexistent/dataset"  # the checkpoint carries the latent statistics
  workdir = save_workdir(tmp_path_factory.mktemp("s2l_workdir"), config, state)
  loaded = s2l_system.load_speech2latent(workdir)
  np.testing.assert_array_equal(loaded.latent_mean, stage.latent_mean)
  np.testing.assert_array_equal(loaded.latent_std, stage.latent_std)
  assert loaded.source == f"{workdir} step 1"
  return loaded


def _mel(seed, num_frames):
  return np.random.default_rng(seed).normal(size=(4 * num_frames + 1, 80)).astype(np.float32)


@pytest.mark.parametrize("num_frames", [11, 21])  # padded to 16 and 32 frames
def test_predictions_match_the_unpadded_model(predictor, num_frames):
  mel = _mel(num_frames, num_frames)
  got = predictor.predict(mel, num_frames)
  stage = predictor.stage
  out = jax.jit(lambda p: stage.model.apply({"params": p}, mel[None, :4 * num_frames], None,
                                            jnp.ones((1, num_frames), bool), False))(
                                                predictor.params)
  want = np.asarray(out["latents"][0]) * predictor.latent_std + predictor.latent_mean
  assert got["latents"].shape == (num_frames, Z) and got["pose"].shape == (num_frames, 3)
  np.testing.assert_allclose(got["latents"], want, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(got["pose"], np.asarray(out["pose"][0]) * 0.05, rtol=1e-4,
                             atol=1e-6)
  again = predictor.predict(mel, num_frames)
  np.testing.assert_array_equal(again["latents"], got["latents"])


def test_pose_override_conditions_the_latents(predictor):
  mel = _mel(0, 12)
  natural = predictor.predict(mel, 12)
  # Conditioning on the predicted pose (radians) is what the default does.
  same = predictor.predict(mel, 12, pose_override=natural["pose"])
  np.testing.assert_allclose(same["latents"], natural["latents"], rtol=1e-4, atol=1e-4)
  turned = predictor.predict(mel, 12, pose_override=np.tile([[0.1, -0.05, 0.0]], (12, 1)))
  assert np.abs(turned["latents"] - natural["latents"]).mean() > 1e-2
  np.testing.assert_array_equal(turned["pose"], natural["pose"])  # the prediction itself


def test_predict_from_audio_and_bad_inputs(predictor):
  audio = np.random.default_rng(5).uniform(-0.5, 0.5, 13 * 640 + 100).astype(np.float32)
  got = predictor.predict_from_audio(audio)
  want = predictor.predict(mel_lib.mel_spectrogram_time_major(audio, mel_lib.RADIO_MEL), 13)
  np.testing.assert_array_equal(got["latents"], want["latents"])
  with pytest.raises(ValueError, match="resample it to 16000 Hz"):
    predictor.predict_from_audio(audio, sample_rate=22050)
  with pytest.raises(ValueError, match="mono"):
    predictor.predict_from_audio(np.stack([audio, audio], 1))
  with pytest.raises(ValueError, match="shorter than one video frame"):
    predictor.predict_from_audio(audio[:600])
  with pytest.raises(ValueError, match=r"pose_override must be \[13, 3\]"):
    predictor.predict_from_audio(audio, pose_override=np.zeros((12, 3)))
  with pytest.raises(ValueError, match=r"\[F >= 52, 80\]"):
    predictor.predict(_mel(0, 12), 13)


def test_load_rejects_other_workdirs(tmp_path):
  with pytest.raises(FileNotFoundError, match="config.json"):
    s2l_system.load_speech2latent(tmp_path)
  (tmp_path / "config.json").write_text(json.dumps(dae_config.get_config("tiny").to_dict()))
  with pytest.raises(ValueError, match="not 'speech2latent'"):
    s2l_system.load_speech2latent(tmp_path)


@pytest.mark.slow
def test_tiny_config_trains_resumes_and_predicts(dataset, tmp_path):
  config = tiny_config(dataset, sampling="pseudo_sentence")
  config.total_steps, config.eval_every, config.checkpoint_every = 6, 6, 6
  workdir = str(tmp_path / "run")
  first = loop.train_and_evaluate(config, workdir)
  config.total_steps = 10
  resumed = loop.train_and_evaluate(config, workdir)
  assert first.step == 6 and resumed.step == 10 and len(resumed.history) == 4
  evals = resumed.eval_history[-1]
  assert set(evals) == {"step", "loss", "pose_mse", "latent_mse", "latent_mse_standardised",
                        "latent_mse_predicted_pose"}
  assert all(np.isfinite(v) for v in evals.values())
  predictor = s2l_system.load_speech2latent(workdir)
  mean, std = s2l_system.latent_statistics(dataset, LATENTS, ["id0"])
  np.testing.assert_array_equal(predictor.latent_mean, mean)   # from init_state, checkpointed
  np.testing.assert_array_equal(predictor.latent_std, std)
  clip = dataset_lib.Dataset(dataset).clip("clip002")
  out = predictor.predict_from_audio(np.asarray(clip.audio))
  assert out["latents"].shape == (clip.num_frames, Z) and np.isfinite(out["latents"]).all()


# ------------------------------------------------------------------------ latents precompute


@pytest.fixture(scope="module")
def dae_workdir(dataset, tmp_path_factory):
  """A tiny DAE (16 px, latent 16) with random parameters, saved as a workdir at step 2."""
  config = dae_config.get_config("tiny")
  config.data.root = dataset
  stage = DAEStage(config)
  abstract = jax.eval_shape(stage.init_state, jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  state = jax.tree_util.tree_map(
      lambda x: (jnp.asarray(rng.normal(size=x.shape) * 0.2, x.dtype)
                 if jnp.issubdtype(x.dtype, jnp.floating) else jnp.zeros(x.shape, x.dtype)),
      abstract)
  return save_workdir(tmp_path_factory.mktemp("dae_workdir"), config, state, step=2), stage, state


def test_precompute_writes_latents_and_skips_finished_clips(dataset, dae_workdir):
  workdir, stage, state = dae_workdir
  name = "dae_precompute"
  summary = precompute_latents.run(dataset, workdir, name, identities="id0",
                                   splits="train,test", batch_size=16)
  assert summary["written"] == 2 and summary["skipped"] == 0 and summary["frames"] == 70
  assert summary["image_size"] == 16 and summary["latent_dim"] == Z
  clip = dataset_lib.Dataset(dataset).clip("clip002")   # id0's test clip, 32 px -> 16 px
  written = np.load(base.latents_path(dataset, name, clip.id))
  assert written.shape == (30, Z) and written.dtype == np.float32
  want = jax.jit(stage.encode)(DAEStage.variables(state), base.resize_frames(clip.frames, 16))
  np.testing.assert_allclose(written, np.asarray(want), rtol=1e-5, atol=1e-5)
  assert not os.path.exists(base.latents_path(dataset, name, "clip001"))  # id1's
  mtime = os.stat(base.latents_path(dataset, name, clip.id)).st_mtime_ns

  encoder = dae_latents.load_dae_encoder(workdir)
  again = dae_latents.encode_clips(dataset, name, encoder, identities=["id0"], batch_size=16)
  assert again.written == () and again.skipped == ("clip000", "clip002")
  assert os.stat(base.latents_path(dataset, name, clip.id)).st_mtime_ns == mtime
  # Clips of other identities are added beside the finished ones.
  assert dae_latents.encode_clips(dataset, name, encoder, batch_size=16).written == (
      "clip001", "clip003")
  other = dae_latents.DAEEncoder(encoder.encode, 16, Z, source=f"{workdir} step 3")
  with pytest.raises(ValueError, match="pass overwrite"):
    dae_latents.encode_clips(dataset, name, other)
  np.save(base.latents_path(dataset, name, "clip003"), np.zeros((5, Z), np.float32))
  with pytest.raises(dataset_lib.DatasetError, match="clip 'clip003'.*rerun with overwrite"):
    dae_latents.encode_clips(dataset, name, encoder, batch_size=16)
  redone = dae_latents.encode_clips(dataset, name, encoder, overwrite=True, splits=["test"],
                                    batch_size=16)
  assert redone.written == ("clip002", "clip003")
  assert np.load(base.latents_path(dataset, name, "clip003")).shape == (28, Z)
  with pytest.raises(ValueError, match="no clips of identities"):
    dae_latents.encode_clips(dataset, name, encoder, identities=["id9"])


def test_precompute_command_line(dataset, dae_workdir, tmp_path):
  workdir = dae_workdir[0]
  env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
  args = [sys.executable, "-m", "experiments.dae_talker.precompute_latents", f"--dataset={dataset}",
          f"--dae_workdir={workdir}", "--name=dae_cli", "--identities=id1", "--splits=train"]
  done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                        check=False)
  assert done.returncode == 0, done.stderr[-2000:]
  summary = json.loads(done.stdout)
  assert summary["written"] == 1 and summary["frames"] == 36
  assert np.load(base.latents_path(dataset, "dae_cli", "clip001")).shape == (36, Z)


# ------------------------------------------------------------------------- wav2vec2 front end

WAV2VEC2_FOLDER = str(ROOT / "tests" / "audio" / "fixtures" / "wav2vec2_tiny_stable")  # 16-d


def wav2vec2_config(root):
  config = tiny_config(root)
  config.audio.update(frontend="wav2vec2", weights=WAV2VEC2_FOLDER, dim=16, alignment="pair")
  return config


def test_wav2vec2_frontend_trains_on_cached_features_and_predicts_from_audio(dataset, tmp_path):
  config = wav2vec2_config(dataset)
  with pytest.raises(dataset_lib.DatasetError, match="precompute_audio_features.*"
                     "--weights=.*wav2vec2_tiny_stable"):
    s2l_system.Speech2LatentStage(config)               # nothing cached yet
  summary = precompute_audio_features.run(dataset, weights=WAV2VEC2_FOLDER, alignment="pair",
                                          identities="id0", progress_bar=False)
  assert summary["written"] == 2
  config.optimizer.learning_rate = 1e-2
  stage = s2l_system.Speech2LatentStage(config)
  assert stage.frames_per_video_frame == 2               # 50 fps pairs: the paper's stride 2
  batch = _first_batch(stage, batch_size=2)
  assert batch["audio_features"].shape == (2, 16, 32) and "mel" not in batch
  assert stage.features(batch).shape == (2, 32, 16)
  state = random_state(stage)
  step = jax.jit(stage.train_step)
  losses = []
  for i in range(60):
    state, metrics = step(state, batch, jax.random.PRNGKey(i))
    losses.append(float(metrics["latent_mse_standardised"]))
  assert losses[-1] < 0.3 * losses[0], losses[::10]

  workdir = save_workdir(tmp_path / "w2v_s2l", config, state)
  predictor = s2l_system.load_speech2latent(workdir)
  clip = dataset_lib.Dataset(dataset).clip("clip002")
  got = predictor.predict_from_audio(np.asarray(clip.audio))
  cached = np.load(base.audio_feature_path(dataset, clip.id, stage.feature_name))
  want = predictor.predict(cached.reshape(-1, 16), clip.num_frames)
  np.testing.assert_allclose(got["latents"], want["latents"], rtol=1e-5, atol=1e-5)


def test_paper_config_names_xlsr53_and_fails_clearly_without_it(dataset, tmp_path):
  config = s2l_config.get_config("paper")
  assert (config.audio.frontend, config.audio.weights, config.audio.dim) == (
      "wav2vec2", "facebook/wav2vec2-large-xlsr-53", 1024)
  config.data.update(root=dataset, identities="id0", latents=LATENTS, eval_split="test")
  config.model.latent_dim = Z
  with pytest.raises(dataset_lib.DatasetError,
                     match="--weights=facebook/wav2vec2-large-xlsr-53"):
    s2l_system.Speech2LatentStage(config)
  config.data.root = ""                                  # built without data: the predictor
  stage = s2l_system.Speech2LatentStage(config)
  assert stage.frames_per_video_frame == 2
  predictor = s2l_system.Speech2LatentPredictor(stage, {}, np.zeros(Z), np.ones(Z), "test")
  with pytest.raises(weights.MissingWeightsError, match="wav2vec2-large-xlsr-53/model.safetensors"):
    predictor.predict_from_audio(np.zeros(6400, np.float32))


def test_spacing_comparison_scores_one_autoencoder_under_both_spacings(dataset, dae_workdir):
  """Same frames, seeds and parameters; only the DDIM timesteps differ (t = T - 1 vs diffae's)."""
  from experiments.dae_talker import spacing_comparison  # pylint: disable=g-import-not-at-top
  workdir, _, _ = dae_workdir
  results = spacing_comparison.compare(dataset, "id0", workdir, [2], stride=10, batch_size=4,
                                       seed=0)
  linspace, ddim = (results["spacings"][s]["2"] for s in ("linspace", "ddim"))
  assert linspace["first_timesteps"] == [99, 0] and ddim["first_timesteps"] == [50, 0]
  assert results["frames"] == 3                                 # clip002's 30 frames, every 10th
  for rows in (linspace, ddim):
    for name in ("DAE latent, random x_T", "DAE latent, inverted x_T"):
      assert np.isfinite(rows[name]["psnr"]) and rows[name]["frames"] == 3
  assert linspace["DAE latent, random x_T"]["psnr"] != ddim["DAE latent, random x_T"]["psnr"]
  results.update(command="test", machine="test", duration_s=0.0)
  assert "| ddim | 2 | [50, 0] | DAE latent, inverted x_T |" in spacing_comparison.markdown(results)
