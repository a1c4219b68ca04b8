"""Lip-sync experts for LSE and syncnet_python's face-crop procedure.

The S expert's inputs are checked against the reference's recipe rebuilt here (python_speech_features
MFCC of the int16 signal, columns 4v..4v+19; OpenCV-resized BGR 0..255 frames), the trained expert's
against `SyncNetStage.embed` on batches built as the sync pipeline builds them.
"""

import json
import warnings

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import data as skdata

from experiments.configs.experts import syncnet as syncnet_config
from talking_heads.audio import mel as mel_lib
from talking_heads.audio import windows as windows_lib
from talking_heads.io import audio as audio_io
from talking_heads.metrics import lse
from talking_heads.metrics import sync_experts as se
from talking_heads.models import syncnet as syncnet_lib
from talking_heads.pipelines import base as pipeline_base
from talking_heads.pretrained import syncnet as syncnet_convert
from talking_heads.systems.experts import sync_expert
from talking_heads.systems.experts.syncnet import SyncNetStage
from talking_heads.training.checkpoint import Checkpointer
from talking_heads.training.state import TrainState


def _random_variables(abstract, seed):
  """Numpy-fast random weights (init of S costs 15+ s on two CPU cores); positive BN variances."""
  rng = np.random.default_rng(seed)

  def leaf(path, x):
    name = path[-1].key
    if name == "kernel":
      return jnp.asarray(rng.normal(size=x.shape) * np.sqrt(2.0 / np.prod(x.shape[:-1])), x.dtype)
    if name == "var":
      return jnp.asarray(rng.uniform(0.5, 2.0, x.shape), x.dtype)
    return jnp.asarray(rng.normal(scale=0.1, size=x.shape) + (name == "scale"), x.dtype)

  return jax.tree_util.tree_map_with_path(leaf, abstract)


def _clip(num_frames, size=64, seed=0):
  rng = np.random.default_rng(seed)
  frames = rng.integers(0, 256, (num_frames, size, size, 3), dtype=np.uint8)
  audio = (0.3 * rng.standard_normal(640 * num_frames)).clip(-1, 1).astype(np.float32)
  return frames, audio


# --------------------------------------------------------------------------- S (official)


def test_int16_scaling_round_trips_pcm():
  pcm = np.array([-32768, -1, 0, 1, 12345, 32767], np.int16)
  np.testing.assert_array_equal(audio_io.to_int16(pcm.astype(np.float32) / 32768.0), pcm)
  np.testing.assert_array_equal(audio_io.to_int16(np.array([-2.0, 1.0, 2.0])), [-32768, 32767, 32767])


def test_mfcc_windows_match_python_speech_features():
  psf = pytest.importorskip("python_speech_features")
  _, audio = _clip(12)
  windows = se.syncnet_mfcc_windows(audio)
  assert windows.shape == (12 - 5, 13, 20, 1)
  pcm = audio_io.to_int16(audio)
  reference = np.stack(list(zip(*psf.mfcc(pcm, 16000)))).astype(np.float32)  # [13, F], as the scorer
  for v in range(windows.shape[0]):
    np.testing.assert_allclose(windows[v, ..., 0], reference[:, 4 * v:4 * v + 20], rtol=1e-4, atol=1e-3)
  assert se.syncnet_mfcc_windows(audio, 3).shape[0] == 3
  with pytest.raises(ValueError, match="clipX: 9 windows requested but the audio only has 7"):
    se.syncnet_mfcc_windows(audio, 9, clip_id="clipX")
  with pytest.raises(lse.ClipTooShortError, match="no 5-frame window"):
    se.syncnet_mfcc_windows(audio[:640 * 5])


def test_s_expert_feeds_the_network_as_syncnet_python():
  abstract = syncnet_convert.syncnet_s_variables_shape()
  variables = _random_variables(abstract, seed=1)
  expert = se.SyncNetSExpert(variables, batch_size=2)
  assert expert.comparable_with_papers and expert.crop_size == 224
  assert isinstance(expert, se.SyncExpert)
  frames, audio = _clip(8, size=48, seed=2)
  score = se.score_clip(expert, frames, audio)
  assert score.num_windows == 3

  model = syncnet_lib.SyncNetS()
  bgr = np.stack([cv2.resize(f, (224, 224)) for f in frames])[..., ::-1].astype(np.float32)
  lips = np.stack([bgr[v:v + 5] for v in range(3)])
  expected_video = model.apply(variables, jnp.asarray(lips), method=syncnet_lib.SyncNetS.forward_lip)
  np.testing.assert_allclose(expert.embed_video(frames, 3), expected_video, rtol=1e-4, atol=1e-3)
  video = expert.embed_video(frames)  # T - 5 windows without a count
  assert video.shape == (3, 1024)
  mfcc = se.syncnet_mfcc_windows(audio)
  expected_audio = model.apply(variables, jnp.asarray(mfcc), method=syncnet_lib.SyncNetS.forward_aud)
  np.testing.assert_allclose(expert.embed_audio(audio), expected_audio, rtol=1e-4, atol=1e-3)
  reference = lse.sync_score(np.asarray(expected_video), np.asarray(expected_audio))
  assert score.offset == reference.offset
  assert score.confidence == pytest.approx(reference.confidence, rel=1e-3, abs=1e-3)


# ----------------------------------------------------------------------- trained SyncNet_color


def _tiny_stage():
  """The tiny SyncNet stage and a train state with random weights, built as `init_state` builds
  it but without compiling the initialiser (20+ s on two shared CPU cores)."""
  config = syncnet_config.get_config("tiny")
  stage = SyncNetStage(config)
  abstract = jax.eval_shape(stage.init_state, jax.random.PRNGKey(0))
  variables = _random_variables({"params": abstract.params, **abstract.model_state}, seed=7)
  state = TrainState.create(variables["params"], stage.tx, rng=jax.random.PRNGKey(0),
                            model_state={"batch_stats": variables["batch_stats"]})
  return config, stage, state


def test_trained_expert_embeds_as_the_stage_trained():
  config, stage, state = _tiny_stage()
  variables = stage.variables(state)
  expert = se.TrainedSyncNetExpert(variables, width=config.model.width, image_size=96, bgr=True,
                                   source="test", batch_size=4)
  assert not expert.comparable_with_papers and expert.crop_size == 96
  frames, audio = _clip(11, size=128, seed=3)
  n = lse.num_windows(11, audio.shape[0])
  mel = mel_lib.mel_spectrogram_time_major(audio)
  batch = {"frames": np.stack([pipeline_base.resize_frames(frames[v:v + 5], 96) for v in range(n)]),
           "mel": np.stack([windows_lib.slice_windows(mel, v).T for v in range(n)])}
  expected_audio, expected_video = stage.embed(variables, batch)
  np.testing.assert_allclose(expert.embed_video(frames, n), expected_video, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(expert.embed_audio(audio, n), expected_audio, rtol=1e-5, atol=1e-6)
  assert expert.embed_audio(audio[:640 * 9]).shape[0] == 4


def test_trained_expert_restores_from_a_workdir(tmp_path):
  config, stage, state = _tiny_stage()
  (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
  checkpointer = Checkpointer(str(tmp_path), async_save=False)
  checkpointer.save(7, state)
  checkpointer.close()
  expert = sync_expert.lse_expert(tmp_path)
  assert expert.source == f"{tmp_path} step 7"
  assert "trained here" in expert.describe()["name"] and not expert.describe()["comparable_with_papers"]
  frames, audio = _clip(9, size=96, seed=4)
  direct = se.TrainedSyncNetExpert(stage.variables(state), width=config.model.width, image_size=96,
                                   bgr=True, source="direct")
  np.testing.assert_allclose(expert.embed_video(frames), direct.embed_video(frames), rtol=1e-6)
  with pytest.raises(FileNotFoundError, match="not a training workdir"):
    sync_expert.lse_expert(tmp_path / "nothing")


def test_bad_inputs_are_named():
  config, stage, state = _tiny_stage()
  expert = se.TrainedSyncNetExpert(stage.variables(state), width=config.model.width,
                                   image_size=96, bgr=True, source="test")
  with pytest.raises(ValueError, match="clipQ: expected RGB uint8 face crops"):
    expert.embed_video(np.zeros((9, 96, 96, 3), np.float32), clip_id="clipQ")
  with pytest.raises(ValueError, match="clipQ: expected mono 16 kHz audio"):
    expert.embed_audio(np.zeros((640 * 9, 2), np.float32), clip_id="clipQ")
  with pytest.raises(lse.ClipTooShortError, match="clipQ: too short"):
    se.score_clip(expert, np.zeros((5, 96, 96, 3), np.uint8), np.zeros(640 * 9, np.float32),
                  clip_id="clipQ")


# ------------------------------------------------------------------------------ face crops


def test_tracks_join_overlapping_detections_and_interpolate_gaps():
  settings = se.CropSettings(min_track=3, min_face_size=10)
  box = np.array([10.0, 20.0, 40.0, 50.0])
  detections = [np.empty((0, 4))] * 12
  for t in (0, 1, 2, 5, 6):  # frames 3-4 missed: bridged by interpolation
    detections[t] = (box + [t, 0, t, 0])[None]
  detections[1] = np.stack([detections[1][0], [200.0, 200, 230, 230]])  # a second, short-lived face
  tracks = se.build_tracks(detections, settings)
  assert len(tracks) == 1
  np.testing.assert_array_equal(tracks[0].frames, np.arange(7))
  np.testing.assert_allclose(tracks[0].boxes[:, 0], 10 + np.arange(7))  # x moves 1 px a frame
  assert tracks[0].audio_span == (0, 7 * 640)
  # A gap longer than max_missed ends the track; too few detections drop it.
  gap = [box[None]] * 4 + [np.empty((0, 4))] * 3 + [box[None]] * 4
  split = se.build_tracks(gap, se.CropSettings(min_track=3, min_face_size=10, max_missed=2))
  assert [t.frames.tolist() for t in split] == [[0, 1, 2, 3], [7, 8, 9, 10]]
  assert se.build_tracks(gap, se.CropSettings(min_track=4, min_face_size=10, max_missed=2)) == []
  # Small faces are dropped (mean side 30 px is not above 30).
  assert se.build_tracks(gap, se.CropSettings(min_track=3, min_face_size=30, max_missed=2)) == []


def test_crop_follows_the_reference_window_and_padding():
  # s = 10 (20 px box): crop rows [cy - 10, cy + 18), cols [cx - 14, cx + 14) = 28 x 28, so a
  # 28 px output needs no resampling.
  rng = np.random.default_rng(5)
  frames = rng.integers(0, 100, (15, 60, 80, 3), dtype=np.uint8)
  inside = np.array([30.0, 20.0, 50.0, 40.0])  # centre (40, 30)
  track = se.FaceTrack(np.arange(15), np.tile(inside, (15, 1)))
  crops = se.crop_track(frames, track, 28)
  np.testing.assert_array_equal(crops, frames[:, 20:48, 26:54])
  # Near the top-left corner the crop reaches into the 110-valued border.
  corner = np.array([0.0, 0.0, 20.0, 20.0])  # centre (10, 10): rows [0, 28), cols [-4, 24)
  crops = se.crop_track(frames, se.FaceTrack(np.arange(15), np.tile(corner, (15, 1))), 28)
  np.testing.assert_array_equal(crops[:, :, 4:], frames[:, 0:28, 0:24])
  assert (crops[:, :, :4] == 110).all()


def test_crop_smoothing_removes_a_one_frame_outlier():
  frames = np.random.default_rng(6).integers(0, 256, (20, 80, 80, 3), dtype=np.uint8)
  boxes = np.tile([30.0, 20.0, 50.0, 40.0], (20, 1))
  jumpy = boxes.copy()
  jumpy[10] += 7  # a detector glitch on one frame
  clean = se.crop_track(frames, se.FaceTrack(np.arange(20), boxes), 28)
  smoothed = se.crop_track(frames, se.FaceTrack(np.arange(20), jumpy), 28)
  np.testing.assert_array_equal(smoothed, clean)


def test_face_track_crops_on_a_real_portrait():
  image = skdata.astronaut()  # 512x512, face near (x 200, y 110)
  frames = np.stack([np.roll(image, t, axis=1) for t in range(8)])
  audio = np.arange(8 * 640, dtype=np.float32) / 1e5
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    out = se.face_track_crops(frames, audio, 96, settings=se.CropSettings(min_track=5, min_face_size=50))
  assert len(out) == 1
  crop = out[0]
  assert crop.frames.shape == (8, 96, 96, 3)
  np.testing.assert_array_equal(crop.audio, audio)
  x0, y0, x1, y1 = crop.track.boxes[0]
  assert 150 < (x0 + x1) / 2 < 260 and 50 < (y0 + y1) / 2 < 170
  assert se.face_track_crops(frames, None, 96) == []  # 8 detections: below the default min_track
