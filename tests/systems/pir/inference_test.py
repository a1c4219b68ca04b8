"""PIR inference and evaluation end to end: component A's expressions are causal at inference, bad
requests are named before any network loads, and (slow: EG3D's volume renderer compiles for
minutes on 2 shared cores) the three tiny stages train, generate a video as long as the audio
through `experiments.generate`, re-render the head under a pose offset, and fill PIR's tables."""

import json
import os

import numpy as np
import pytest

from experiments import generate
from experiments import reproduce
from talking_heads.audio import mel as mel_lib
from talking_heads.face import morphable
from talking_heads.io import audio as audio_io
from talking_heads.io import dataset as dataset_lib
from talking_heads.io import video as video_io
from talking_heads.pipelines import testing
from talking_heads.systems import video_inference
from talking_heads.systems.head_pose import parse_pose
from talking_heads.systems.pir import audio2exp, evaluation, inference

SAMPLES = inference.SAMPLES_PER_FRAME
SIZE = 64     # conftest's dataset64


@pytest.fixture(scope="module")
def dataset(dataset64):
  """The stage tests' clips (conftest) at 64 px: the networks see them resized to 32 px."""
  return dataset64


def _speech(num_samples, seed):
  return np.random.default_rng(seed).uniform(-0.5, 0.5, num_samples).astype(np.float32)


def test_expressions_are_causal_at_inference(audio2exp_run):
  """Perturbing the audio from frame j on leaves the expressions of frames before j - 1 (the mel
  window of frame j - 1 reaches into frame j) unchanged, in j's window too (k = 8: frames 8-9)."""
  stage, _, result = audio2exp_run
  params, k = result.state.eval_params, stage.config.data.window
  num_frames, j = 20, 11
  alpha = np.random.default_rng(1).normal(size=morphable.default_model().num_identity)
  speech = _speech(num_frames * SAMPLES, 0)
  perturbed = speech.copy()
  perturbed[j * SAMPLES:] = _speech((num_frames - j) * SAMPLES, 2)
  run = lambda audio: inference.expressions(
      stage, params, inference.audio_features(stage, audio, num_frames), alpha)
  before, after = run(speech), run(perturbed)
  assert before.shape == (num_frames, stage.model.expression_dim) and k == 8
  np.testing.assert_allclose(after[:j - 1], before[:j - 1], rtol=0, atol=1e-6)
  assert np.abs(after[j:] - before[j:]).max() > 1e-5     # the later audio does drive them


def test_audio_features_cover_every_output_frame(audio2exp_run):
  stage = audio2exp_run[0]
  speech = _speech(13 * SAMPLES + 100, 0)                 # 13 frames and a bit: T = 14
  num_frames = video_inference.output_frame_count(speech.shape[0], 25)
  features = inference.audio_features(stage, speech, num_frames)
  assert num_frames == 14 and features.shape == (14, stage.feature_dim)
  # Frame t reads mel rows 4t .. 4t + 3, as `pipelines.sequences` gives them in training.
  mel = mel_lib.mel_spectrogram_time_major(speech, audio2exp.MEL)
  np.testing.assert_allclose(features[5], mel[20:24].reshape(-1), rtol=1e-6)


def test_expression_lmd_scores_the_mouth_of_the_expressions(dataset):
  target = inference.resolve_target(None, f"{dataset}:clip004")
  truth = target.expression
  # The projection it compares is where the corpus drew the clip's landmarks.
  projected = evaluation.projected_landmarks(target.alpha, truth, target.pose, target.K)
  np.testing.assert_allclose(projected, target.landmarks, atol=0.05)
  assert evaluation.expression_lmd(target, truth) < 1e-3
  jaw = morphable.EXPRESSION_NAMES.index("jaw_open")
  opened = lambda amount: truth + amount * np.eye(truth.shape[1], dtype=truth.dtype)[jaw]
  small, large = (evaluation.expression_lmd(target, opened(a)) for a in (0.05, 0.2))
  assert 0 < small < large
  # Only the mouth counts: an error in the brows alone leaves it at zero.
  brow = morphable.EXPRESSION_NAMES.index("brow_raise")
  raised = truth + 0.2 * np.eye(truth.shape[1], dtype=truth.dtype)[brow]
  assert evaluation.expression_lmd(target, raised) < 1e-2 * small


def test_targets_and_missing_inputs_are_named(dataset, tmp_path):
  data = dataset_lib.Dataset(dataset)
  target = inference.resolve_target(None, f"{dataset}:clip004")
  assert target.id == "clip004" and target.frames.shape == (16, SIZE, SIZE, 3)
  np.testing.assert_array_equal(target.pose, data.clip("clip004").pose)
  by_file = inference.resolve_target(os.path.join(dataset, "clips", "clip004", "frames.npy"))
  assert by_file.id == "clip004"
  plain = tmp_path / "talk.mp4"
  plain.write_bytes(b"not inspected")
  with pytest.raises(ValueError, match=r"a video file carries none.*data.ingest"):
    inference.resolve_target(str(plain))
  with pytest.raises(ValueError, match="needs a target"):
    inference.resolve_target(None, "")
  with pytest.raises(ValueError, match="expected ROOT:CLIP_ID"):
    inference.resolve_target(None, "clip004")
  with pytest.raises(ValueError, match="has no clip 'clip999'"):
    inference.resolve_target(None, f"{dataset}:clip999")
  with pytest.raises(FileNotFoundError, match="is not a dataset"):
    inference.resolve_target(None, f"{tmp_path}:clip004")
  # A video ingested without a landmark model has no morphable fit.
  ingested = tmp_path / "ingested"
  testing.write_random_dataset(ingested, [8])
  manifest = json.loads((ingested / dataset_lib.MANIFEST_FILE).read_text())
  manifest["generator"]["landmarks"] = "none"
  (ingested / dataset_lib.MANIFEST_FILE).write_text(json.dumps(manifest))
  with pytest.raises(ValueError, match="no morphable-model fit"):
    inference.resolve_target(None, f"{ingested}:clip000")
  # Workdirs: missing flags and folders name the flag.
  with pytest.raises(ValueError, match="needs --pir_audio2exp_workdir"):
    inference.load(None, str(tmp_path))
  with pytest.raises(FileNotFoundError, match="--pir_audio2exp_workdir=.*not a trained"):
    inference.load(str(tmp_path / "nowhere"), str(tmp_path))
  # The launcher checks the target and the pose before any network loads.
  speech = tmp_path / "speech.wav"
  audio_io.write_wav(speech, _speech(8 * SAMPLES, 0))
  request = lambda **options: generate.Request(
      "pir", str(speech), None, str(tmp_path / "out.mp4"),
      weights={"pir_audio2exp_workdir": "unused", "pir_renderer_workdir": "unused"},
      system_options=options)
  with pytest.raises(ValueError, match="needs a target"):
    generate.generate(request())
  with pytest.raises(ValueError, match="is not a number of degrees"):
    generate.generate(request(target_clip=f"{dataset}:clip004", pose="yaw=left"))


# ------------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_generate_reenacts_the_target_for_the_whole_audio(dataset, workdirs, tmp_path):
  wav = tmp_path / "speech.wav"
  audio_io.write_wav(wav, _speech(18 * SAMPLES, 3))   # 18 frames: the 16-frame target loops
  out = tmp_path / "pir.mp4"
  made = generate.generate(generate.Request(
      "pir", str(wav), None, str(out), weights=workdirs,
      system_options={"target_clip": f"{dataset}:clip004"},
      options=generate.Options(batch_size=4, chunk_frames=8)))
  assert made.summary["frames"] == 18 and made.summary["size"][:2] == [SIZE, SIZE]
  assert set(made.summary["sources"]) == {"pir_audio2exp", "pir_triplane", "pir_renderer"}
  assert video_io.read_video(out)[0].shape == (18, SIZE, SIZE, 3)
  # In memory: frames, C's renders and A's expressions, the target looped; a partial last
  # frame of audio gets a frame too (T = ceil(N / 640)).
  speech = _speech(17 * SAMPLES + 100, 3)
  model = inference.load(workdirs["pir_audio2exp_workdir"], workdirs["pir_renderer_workdir"])
  target = inference.resolve_target(None, f"{dataset}:clip004")
  result = inference.run_arrays(model, target, speech,
                                video_inference.Options(batch_size=4, chunk_frames=8))
  assert result.frames.shape == (18, SIZE, SIZE, 3) and result.frames.dtype == np.uint8
  assert result.rendered.shape == (18, 32, 32, 3) and result.rendered.std() > 0
  assert np.all(np.isfinite(result.expressions)) and result.expressions.shape == (18, 9)
  np.testing.assert_array_equal(result.order, np.arange(18) % 16)
  np.testing.assert_array_equal(result.pose, target.pose[result.order])
  # Outside the inpaint mask the written frames are the target's own pixels.
  outside = result.inpaint_masks[..., 0] == 0
  np.testing.assert_array_equal(result.frames[outside],
                                np.asarray(target.frames)[result.order][outside])


@pytest.mark.slow
def test_pose_offset_rerenders_the_head_region_only(dataset, workdirs):
  model = inference.load(workdirs["pir_audio2exp_workdir"], workdirs["pir_renderer_workdir"])
  target = inference.resolve_target(None, f"{dataset}:clip004")
  speech = np.asarray(dataset_lib.Dataset(dataset).clip("clip004").audio)
  options = video_inference.Options(batch_size=4, chunk_frames=8)
  natural = inference.run_arrays(model, target, speech, options)
  offset = parse_pose("yaw=20,pitch=-10", natural.frames.shape[0])
  turned = inference.run_arrays(model, target, speech, options, pose_offset=offset)
  np.testing.assert_allclose(turned.pose[:, :3] - natural.pose[:, :3],
                             np.deg2rad([[20.0, -10.0, 0.0]] * 16), atol=1e-6)
  np.testing.assert_array_equal(turned.pose[:, 3:], natural.pose[:, 3:])
  np.testing.assert_array_equal(turned.expressions, natural.expressions)
  inside = natural.inpaint_masks[..., 0] > 0
  change = np.abs(turned.frames.astype(np.int16) - natural.frames).max(axis=-1)
  assert inside.mean() > 0.1 and (change[inside] > 0).mean() > 0.1
  assert change[~inside].max() == 0


@pytest.mark.slow
def test_evaluation_fills_tables_1_and_2(dataset, workdirs, experts, tmp_path):
  results = evaluation.run(
      dataset, "id0", workdirs["pir_audio2exp_workdir"], workdirs["pir_renderer_workdir"],
      syncnet_workdir=experts["syncnet"], regressor_workdir=experts["regressor"], batch_size=4)
  pir = results["splits"]["test"]["summary"]["pir"]
  for key in ("ssim_wang", "psnr", "psnr_inpainted", "cpbd", "lmd", "lse_c", "expression_mse",
              "expression_variance"):
    assert np.isfinite(pir[key]), key
  assert pir["expression_mse"] > 0 and results["splits"]["test"]["frames"] == 16
  assert pir["psnr_inpainted"] < pir["psnr"]      # outside the mask the frames are the truth's
  results["machine"] = "test"
  (tmp_path / "tables.json").write_text(json.dumps(results))
  tables = {t["table"]: t for t in evaluation.paper_rows(str(tmp_path))}
  rows = {r["method"]: r["values"] for r in tables["table_1_hdtf"]["measured"]}
  assert set(rows["PIR (Ours)"]) == {"SSIM", "PSNR", "CPBD", "LMD", "AVConf"}
  assert set(rows["Ground Truth"]) == {"CPBD", "AVConf"}
  cross = tables["table_2_adnerf"]["measured"]
  assert [set(r["values"]) for r in cross] == [{"AVConf"}, {"AVConf"}]
  markdown, data = reproduce.reproduce("pir", str(tmp_path))
  assert "PIR (Ours)" in markdown and data["system"] == "pir"
  assert "expression MSE" in evaluation.markdown(results)
