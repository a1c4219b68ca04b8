"""FD2Talk inference on the tiny trained workdirs: the DiTs hear the audio features they trained
on; `experiments.generate --system=fd2talk` writes an mp4 as long as its audio (longer than one
motion window); different seeds give different head motion (the same seed the same video);
windows cross-fade linearly; missing workdirs, silent or short audio and a face source without a
face are errors naming them."""

import cv2
import numpy as np
import pytest

from experiments import generate
from talking_heads.audio import windows
from talking_heads.io import audio as audio_io
from talking_heads.io import dataset as dataset_lib
from talking_heads.io import video as video_io
from talking_heads.pipelines import base
from talking_heads.systems import video_inference
from talking_heads.systems.fd2talk import features, inference

SAMPLES = 640   # per 25 fps frame at 16 kHz
OPTIONS = video_inference.Options(box="full", batch_size=8, chunk_frames=8)


@pytest.fixture(scope="module")
def weights(motion_workdirs, unet_runs):
  return {"fd2talk_expression_workdir": motion_workdirs["expression"],
          "fd2talk_pose_workdir": motion_workdirs["pose"], "fd2talk_unet_workdir": unet_runs[3]}


@pytest.fixture(scope="module")
def model(weights):
  return inference.load(weights["fd2talk_expression_workdir"], weights["fd2talk_pose_workdir"],
                        weights["fd2talk_unet_workdir"], steps=2)


def _speech(num_samples, seed):
  """Noise with a syllable-like envelope (not silent)."""
  r = np.random.default_rng(seed)
  envelope = 0.5 + 0.5 * np.sin(np.arange(num_samples) / 16000 * 2 * np.pi * 4)
  return (0.3 * envelope * r.standard_normal(num_samples)).astype(np.float32)


def _face(dataset):
  return np.asarray(dataset_lib.Dataset(dataset).clip("clip000").frames[:1])   # [1, 32, 32, 3]


def test_windows_cover_the_audio_and_cross_fade_linearly():
  np.testing.assert_array_equal(inference.window_starts(5, 8, 2), [0])
  np.testing.assert_array_equal(inference.window_starts(8, 8, 2), [0])
  np.testing.assert_array_equal(inference.window_starts(20, 8, 2), [0, 6, 12])
  np.testing.assert_array_equal(inference.window_starts(21, 8, 2), [0, 6, 12, 13])
  with pytest.raises(ValueError, match="overlap must be in"):
    inference.window_starts(20, 8, 8)
  np.testing.assert_allclose(inference.blend_weights(8, 2),
                             [1 / 3, 2 / 3, 1, 1, 1, 1, 2 / 3, 1 / 3])
  # Two windows overlapping by O: a linear ramp from one to the other; constants stay constant.
  values = np.stack([np.zeros((8, 1)), np.ones((8, 1))])
  blended = inference.blend_windows(values, np.array([0, 6]), 14, 2)[:, 0]
  np.testing.assert_allclose(blended, [0] * 6 + [1 / 3, 2 / 3] + [1] * 6, atol=1e-6)
  starts = inference.window_starts(21, 8, 2)
  np.testing.assert_allclose(inference.blend_windows(np.full((4, 8, 3), 2.5), starts, 21, 2), 2.5)


def test_inference_audio_features_are_the_training_ones(dataset):
  """Each frame's 4 RADIO mel frames, as `pipelines.sequences` gives them to the DiTs."""
  clip = dataset_lib.Dataset(dataset).clip("clip000")
  mel = base.ClipReader(dataset, [clip.id]).mel(0, features.MEL)                # [F', 80]
  audio = features.AudioFeatures("mel", 320, None)
  out = audio.of_audio(np.asarray(clip.audio), clip.num_frames)
  assert out.shape == (clip.num_frames, 320)
  np.testing.assert_allclose(out, mel[:4 * clip.num_frames].reshape(-1, 320), rtol=1e-6)


def test_generate_writes_the_audios_frames_and_seeds_change_the_pose(dataset, weights, model,
                                                                   tmp_path):
  num_samples = 21 * SAMPLES + 100   # 22 frames (the last one partial): windows at 0, 7, 14
  wav, face = tmp_path / "speech.wav", tmp_path / "face.png"
  audio_io.write_wav(wav, _speech(num_samples, 0))
  cv2.imwrite(str(face), _face(dataset)[0, ..., ::-1])
  out = tmp_path / "fd2talk.mp4"
  made = generate.generate(generate.Request(
      "fd2talk", str(wav), None, str(out), weights=weights,
      system_options={"face": str(face), "ddim_steps": "2", "seed": "3"}, options=OPTIONS))
  frames = video_io.read_video(out)[0]
  assert made.summary["frames"] == frames.shape[0] == 22
  assert frames.shape[1:] == (32, 32, 3)
  assert set(made.summary["sources"]) == {"fd2talk_expression", "fd2talk_pose", "fd2talk_unet",
                                          "fd2talk_autoencoder"}
  assert made.summary["seconds"]["motion"] > 0
  # In memory: seeds change the sampled head motion (and the frames); the same seed repeats.
  audio = audio_io.load_audio(wav, sample_rate=windows.SAMPLE_RATE)
  run = lambda seed: inference.run_arrays(model, audio, _face(dataset),
                                          inference.Settings(seed=seed), OPTIONS)
  first, again, other = run(3), run(3), run(4)
  assert first.pose.shape == (22, 6) and first.expression.shape == (22, 9)
  assert first.frames.shape == (22, 32, 32, 3) and np.isfinite(first.pose).all()
  np.testing.assert_array_equal(first.frames, again.frames)
  np.testing.assert_array_equal(first.pose, again.pose)
  assert np.abs(first.pose - other.pose).mean() > 1e-3 * np.abs(first.pose).mean()
  assert np.abs(first.frames.astype(int) - other.frames).max() > 0
  # A given pose replaces the sampled one (Table 1's fixed-pose protocol); the expression stays.
  fixed = inference.run_arrays(model, audio, _face(dataset), inference.Settings(seed=3), OPTIONS,
                               pose=np.zeros((22, 6), np.float32))
  np.testing.assert_array_equal(fixed.pose, 0)
  np.testing.assert_array_equal(fixed.expression, first.expression)
  np.testing.assert_array_equal(fixed.sampled_pose, first.pose)
  # A given expression replaces the sampled one too (stage 2 alone); the frames follow it.
  given = inference.run_arrays(model, audio, _face(dataset), inference.Settings(seed=3), OPTIONS,
                               pose=np.zeros((22, 6), np.float32),
                               expression=np.zeros_like(first.expression))
  np.testing.assert_array_equal(given.expression, 0)
  assert np.abs(given.frames.astype(int) - fixed.frames).max() > 0
  with pytest.raises(ValueError, match=r"expression must be \[T, E\] = \[22, "):
    inference.run_arrays(model, audio, _face(dataset), inference.Settings(seed=3), OPTIONS,
                         expression=np.zeros((21, first.expression.shape[1]), np.float32))


def test_missing_workdirs_and_bad_inputs_are_named(dataset, weights, model, tmp_path):
  with pytest.raises(ValueError, match="needs --fd2talk_expression_workdir"):
    inference.load(None, weights["fd2talk_pose_workdir"], weights["fd2talk_unet_workdir"])
  with pytest.raises(ValueError, match="needs --fd2talk_pose_workdir"):
    inference.load(weights["fd2talk_expression_workdir"], None, weights["fd2talk_unet_workdir"])
  with pytest.raises(ValueError, match="trained the 'pose' DiT"):
    inference.load(weights["fd2talk_pose_workdir"], weights["fd2talk_pose_workdir"],
                   weights["fd2talk_unet_workdir"])
  with pytest.raises(FileNotFoundError, match="--fd2talk_unet_workdir=.*not a trained"):
    inference.load(weights["fd2talk_expression_workdir"], weights["fd2talk_pose_workdir"],
                   str(tmp_path / "nowhere"))
  face = _face(dataset)
  with pytest.raises(windows.SilentAudioError, match="silent"):
    inference.run_arrays(model, np.zeros(20 * SAMPLES, np.float32), face, options=OPTIONS)
  with pytest.raises(ValueError, match="audio too short"):
    inference.run_arrays(model, _speech(1000, 0), face, options=OPTIONS)
  flat = np.full((1, 64, 64, 3), 128, np.uint8)    # nothing the detector could take for a face
  with pytest.raises(video_inference.FaceNotFoundError, match="no face in frame 0"):
    inference.run_arrays(model, _speech(10 * SAMPLES, 0), flat, options=video_inference.Options())
  wav = tmp_path / "speech.wav"
  audio_io.write_wav(wav, _speech(10 * SAMPLES, 0))
  request = lambda **options: generate.Request(
      "fd2talk", str(wav), None, str(tmp_path / "out.mp4"), weights=weights,
      system_options=options)
  with pytest.raises(ValueError, match="needs --face"):
    generate.generate(request())
  with pytest.raises(FileNotFoundError, match="--face .*missing.png does not exist"):
    generate.generate(request(face=str(tmp_path / "missing.png")))
  with pytest.raises(ValueError, match="--motion_overlap='x': expected an integer"):
    generate.generate(request(face=str(wav), motion_overlap="x"))
