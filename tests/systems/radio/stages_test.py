"""RADIO's stages: the sync crop is differentiable; `radio_sync` trains, resumes and scores
(held-out BCE, planted-shift recovery); `radio` trains against the frozen sync discriminator,
resumes, and its sync loss reaches the generator while the discriminator stays frozen; a tiny
generator overfits a few frames; the restored generator dubs a video from one image."""

import os

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import generate as generate_lib
from experiments.configs.radio import radio as radio_config
from experiments.configs.radio import radio_sync as radio_sync_config
from talking_heads.io import audio as audio_io
from talking_heads.io import dataset as dataset_lib
from talking_heads.io import video as video_io
from talking_heads.models import radio_sync as radio_sync_model
from talking_heads.pipelines import base, testing
from talking_heads.systems import video_inference
from talking_heads.systems.experts import sync_evaluation
from talking_heads.systems.radio import inference, radio, radio_sync
from talking_heads.training import checkpoint, loop, restore

# Tests that train or compile the stages' networks are `slow` (minutes on 2 cores); the crop,
# the window arithmetic and the error paths run by default.


class _Interrupt(Exception):
  pass


def test_sync_window_is_a_differentiable_tight_grayscale_crop():
  rng = np.random.default_rng(0)
  frames = jnp.asarray(rng.uniform(size=(2, 5, 32, 32, 3)), jnp.float32)
  window = jax.jit(radio_sync_model.sync_window, static_argnums=1)
  out = window(frames, 16)
  assert out.shape == (2, 16, 16, 5)
  rows, cols = radio_sync_model.crop_rows_cols(32)
  assert (rows, cols) == (slice(11, 27), slice(8, 24))          # [0.35, 0.85) x [0.25, 0.75)
  luma = np.asarray(frames[:, :, rows, cols]) @ np.asarray(radio_sync_model.LUMA)
  np.testing.assert_allclose(out, luma.transpose(0, 2, 3, 1), atol=1e-6)   # native size: exact
  grad = np.asarray(jax.grad(lambda f: jnp.sum(window(f, 12) ** 2))(frames))
  inside = np.zeros(grad.shape, bool)
  inside[:, :, rows, cols] = True
  assert np.all(grad[~inside] == 0) and np.all(np.abs(grad[inside]).sum(axis=-1) > 0)
  with pytest.raises(ValueError, match="square faces"):
    radio_sync_model.sync_window(frames[:, :, :30], 16)


def test_mel_windows_follow_training_and_clamp_at_the_ends():
  audio = np.random.default_rng(1).normal(scale=0.1, size=16000).astype(np.float32)  # 1 s
  mels = inference.mel_windows(audio, 30)
  assert mels.shape == (30, 80, 20)
  full = radio_sync.mel_lib.mel_spectrogram(audio, radio_sync.mel_lib.RADIO_MEL)   # [80, 101]
  np.testing.assert_array_equal(mels[0], full[:, :20])           # frame 0: frame 0's window
  np.testing.assert_array_equal(mels[1], full[:, :20])           # frame t: frame t - 1's
  np.testing.assert_array_equal(mels[5], full[:, 16:36])
  np.testing.assert_array_equal(mels[29], full[:, -20:])         # past the end: the last one
  with pytest.raises(ValueError, match="too short for RADIO"):
    inference.mel_windows(audio[:2000], 3)


def test_missing_frozen_networks_are_named(tmp_path):
  config = radio_config.get_config("tiny")
  with pytest.raises(ValueError, match=r"sync_discriminator\.workdir is empty.*never trains "
                                       r"against random sync weights"):
    radio.RadioStage(config).sync
  config.sync_discriminator.workdir = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match=r"sync_discriminator\.workdir=.*nowhere.* is not a "
                                              r"trained 'radio_sync' workdir"):
    radio.RadioStage(config).sync
  config.loss.perceptual_weight = 1.0
  with pytest.raises(ValueError, match="vgg19 perceptual loss needs the public weights"):
    radio.RadioStage(config).perceptual_variables
  with pytest.raises(ValueError, match="model.ablation must be one of"):
    radio.RadioStage(radio_config.get_config("tiny,model.ablation=E"))


def test_table_3_variants_are_set_by_the_documented_config_argument():
  # The launch line of the config's docstring: an empty tuple field gets no --config.* flag.
  config = radio_config.get_config("demo,model.vit=(1,2)")
  assert tuple(config.model.vit) == (1, 2)
  fields = radio.generator_fields(config.model)
  assert (fields["fidelity"], fields["fidelity_layers"], fields["vit_depth"]) == ("vit", 1, 2)


def test_radio_entry_checks_its_face_source(tmp_path):
  with pytest.raises(ValueError, match="needs --face"):
    inference.check_request("a.wav", None, {"face": ""})
  with pytest.raises(FileNotFoundError, match="--face .*missing.png does not exist"):
    inference.check_request("a.wav", None, {"face": str(tmp_path / "missing.png")})
  bad = tmp_path / "bad.png"
  bad.write_bytes(b"not an image")
  with pytest.raises(ValueError, match="not a readable image"):
    inference.check_request("a.wav", None, {"face": str(bad)})


# ------------------------------------------------------------------------------ training


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  root = tmp_path_factory.mktemp("radio_ds")
  testing.write_random_dataset(root, [30, 30, 25, 25], image_size=32,
                               splits=["train", "train", "val", "val"])
  base.precompute_features(root)
  return str(root)


def _tiny(module, root, **fields):
  c = module.get_config("tiny")
  c.data.root, c.progress_bar = root, False
  c.mesh.num_devices = 1   # 8 fake devices on 2 cores only slow the run down
  c.update(fields)
  return c


def _train_resumed(config, workdir, record):
  """Trains to step 3 (interrupted there), then relaunches to `config.total_steps`."""
  def hook(step, state, metrics):
    record.append((step, {k: float(v) for k, v in metrics.items()}))
    if step == 3:
      raise _Interrupt()

  with pytest.raises(_Interrupt):
    loop.train_and_evaluate(config, workdir, hooks=[hook])
  interrupted_at = checkpoint.Checkpointer(workdir).latest_step()
  return interrupted_at, loop.train_and_evaluate(config, workdir)


@pytest.fixture(scope="module")
def sync_run(dataset, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("radio_sync_run"))
  record = []
  config = _tiny(radio_sync_config, dataset, total_steps=5, eval_every=2, image_every=2,
                 checkpoint_every=100, log_every=1)
  interrupted_at, resumed = _train_resumed(config, workdir, record)
  return workdir, record, interrupted_at, resumed


@pytest.mark.slow
def test_sync_stage_trains_resumes_and_scores_offsets(sync_run, dataset):
  workdir, record, interrupted_at, resumed = sync_run
  assert [s for s, _ in record] == [1, 2, 3] and interrupted_at == 3
  assert resumed.step == 5 and len(resumed.history) == 2
  for _, m in record:
    assert 0 < m["loss"] < 10 and 0 <= m["accuracy"] <= 1
  assert os.listdir(os.path.join(workdir, "images"))
  # The held-out BCE of the eval step is the BCE of its probabilities (padding left out).
  stage, state, step = restore.restore_stage(workdir)
  state = jax.device_get(state)     # off the 8 fake devices: one copy of the work on 2 cores
  assert step == 5
  batches = list(stage.eval_batches(8, 0, 1))
  assert batches and not np.all(batches[-1]["valid"])           # 2 val clips: padded batch
  metrics = jax.jit(stage.eval_step)(state, batches[-1], jax.random.PRNGKey(0))
  p = np.asarray(stage.model.apply(stage.variables(state), stage.window(batches[-1]["frames"]),
                                   batches[-1]["mel"]), np.float64)
  label, valid = batches[-1]["label"], batches[-1]["valid"].astype(np.float64)
  bce = -(label * np.log(np.clip(p, 1e-7, 1 - 1e-7))
          + (1 - label) * np.log(1 - np.clip(p, 1e-7, 1 - 1e-7)))
  np.testing.assert_allclose(metrics["loss"], np.sum(bce * valid) / valid.sum(), rtol=1e-4)
  # Offset recovery with the colour expert's evaluator (planted audio shifts, foreign audio).
  expert = radio_sync.lse_expert(workdir)
  clips = sorted(dataset_lib.Dataset(dataset).clips("val"), key=lambda c: c.id)
  report = sync_evaluation.evaluate_split(expert, clips, max_shift=1)
  assert report["num_clips"] == 2 and 0 <= report["shift_exact_percent"] <= 100
  assert set(report["shift_accuracy"]) == {"-1", "0", "1"}
  assert np.isfinite(report["in_sync"]["lse_c"]) and np.isfinite(report["mismatched"]["lse_d"])
  video = expert.embed_video(np.asarray(clips[0].frames))
  np.testing.assert_allclose(np.linalg.norm(video, axis=1), 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def radio_run(dataset, sync_run, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("radio_run"))
  record = []
  config = _tiny(radio_config, dataset, total_steps=5, eval_every=2, image_every=2,
                 checkpoint_every=100, log_every=1)
  config.sync_discriminator.workdir = sync_run[0]
  interrupted_at, resumed = _train_resumed(config, workdir, record)
  return workdir, record, interrupted_at, resumed


@pytest.mark.slow
def test_radio_stage_trains_resumes_and_generates(radio_run, dataset, tmp_path):
  workdir, record, interrupted_at, resumed = radio_run
  assert [s for s, _ in record] == [1, 2, 3] and interrupted_at == 3
  assert resumed.step == 5 and len(resumed.history) == 2
  for _, m in record:
    assert all(np.isfinite(v) for v in m.values()), m
    assert m["sync_loss"] > 0 and m["adv_loss"] > 0 and m["disc_loss"] > 0
    assert m["loss"] == pytest.approx(m["l1"] + 0.03 * m["sync_loss"] + 0.1 * m["adv_loss"],
                                      rel=1e-4)
  assert os.listdir(os.path.join(workdir, "images"))
  # One image of a held-out identity and longer audio than any clip: a video as long as it.
  clip = dataset_lib.Dataset(dataset).clips("val")[0]
  face = str(tmp_path / "face.png")
  cv2.imwrite(face, np.asarray(clip.frames[0])[..., ::-1])
  audio = str(tmp_path / "speech.wav")
  audio_io.write_wav(audio, np.tile(np.asarray(clip.audio), 2), 16000)
  out = str(tmp_path / "dubbed.mp4")
  generation = generate_lib.generate(generate_lib.Request(
      system="radio", audio=audio, video=None, out=out, weights={"radio_workdir": workdir},
      system_options={"face": face},
      options=video_inference.Options(box="full", batch_size=4, chunk_frames=8)))
  frames = video_io.read_video(out)[0]
  assert generation.summary["frames"] == frames.shape[0] == 2 * clip.num_frames
  assert frames.shape[1:] == (32, 32, 3)
  # In memory: RADIO's mel window per output frame, and the mouth follows the audio.
  model = inference.load_radio(workdir)
  inputs = inference.prepare(audio, face, model.image_size, video_inference.Options(box="full"))
  assert inputs.mel_chunks.shape == (2 * clip.num_frames, 80, 20)
  result = inference.run(model, inputs, video_inference.Options(box="full", batch_size=4))
  assert result.faces.shape == (2 * clip.num_frames, 32, 32, 3)
  assert np.abs(result.faces[0].astype(int) - result.faces[7].astype(int)).max() > 0


def _batch(stage, batch_size=2):
  it = stage.train_iterator(batch_size, 0, 1)
  batch = next(it)
  it.close()
  return {k: jnp.asarray(batch[k]) for k in radio.TRAIN_KEYS}


@pytest.mark.slow
def test_sync_loss_reaches_the_generator_and_the_sync_discriminator_stays_frozen(
    radio_run, sync_run):
  stage, state, _ = restore.restore_stage(radio_run[0])
  state = jax.device_get(state)     # off the 8 fake devices: one copy of the work on 2 cores
  assert set(state.discriminators) == {radio.PLAYER}          # the sync D is no train state
  batch = _batch(stage)
  frozen_before = jax.tree.map(np.array, stage.sync.variables)
  # Gradient of the sync term alone, through the differentiable crop, w.r.t. the generator.
  sync_only = lambda params: jnp.mean(stage._sync_terms(   # pylint: disable=protected-access
      stage._generate(params, batch["frames"], batch["reference"],   # pylint: disable=protected-access
                      batch["indiv_mels"]), batch["mel"])[0])
  grads = jax.jit(jax.grad(sync_only))(state.generator.params)
  norms = {k: float(jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree.leaves(v))))
           for k, v in grads.items()}
  assert all(n > 0 for n in norms.values()), norms          # every encoder and decoder layer
  # Generator steps leave the frozen discriminator bit-identical (and equal to its workdir's).
  step = jax.jit(stage.train_step)
  for i in range(2):
    state, _ = step(state, batch, jax.random.PRNGKey(i))
  reloaded = radio_sync.load_frozen_sync(sync_run[0])
  for a, b, c in zip(jax.tree.leaves(frozen_before), jax.tree.leaves(stage.sync.variables),
                     jax.tree.leaves(reloaded.variables)):
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


@pytest.mark.slow
def test_tiny_generator_overfits_a_few_frames(dataset):
  config = _tiny(radio_config, dataset)
  config.loss.update(sync_weight=0.0, adv_weight=0.0)
  config.optimizer.learning_rate = 3e-3
  stage = radio.RadioStage(config)
  batch = _batch(stage)
  state = jax.jit(stage.init_state)(jax.random.PRNGKey(0))
  step = jax.jit(stage.train_step)
  l1 = []
  for i in range(30):
    state, metrics = step(state, batch, jax.random.PRNGKey(i))
    l1.append(float(metrics["l1"]))
  assert l1[-1] < 0.6 * l1[0], l1
