"""wav2vec2 features: 25 fps alignment, whole-utterance encoding, chunking seams, the cache the
precompute command writes and the pipelines read, and the one loader of every weights source."""

import json
import pathlib

import jax
import numpy as np
import pytest

from experiments import precompute_audio_features as precompute
from talking_heads.audio import wav2vec2
from talking_heads.audio import wav2vec2_features as features
from talking_heads.io import dataset as dataset_lib
from talking_heads.pipelines import base, clips, sequences, testing
from talking_heads.pretrained import wav2vec2 as wav2vec2_pretrained
from third_party import weights

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def stable():
  """The committed tiny transformers model of XLSR-53's design (LayerNorm, pre-LN), 16-d."""
  return wav2vec2_pretrained.load_folder(FIXTURES / "wav2vec2_tiny_stable")


@pytest.fixture(scope="module")
def speech():
  with np.load(FIXTURES / "wav2vec2_expected.npz") as data:
    return data["waveform"]                                 # 0.8 s of espeak speech


# ----------------------------------------------------------------------------------- alignment


def test_interpolation_picks_frame_2i_as_the_reference():
  k = 7
  t = int(wav2vec2.output_lengths(640 * k))
  assert t == 2 * k - 1
  x = np.random.default_rng(0).normal(size=(t, 3)).astype(np.float32)
  np.testing.assert_allclose(features.align_to_video(x, k, "interpolate"), x[::2], atol=1e-6)
  pairs = features.align_to_video(x, k, "pair")
  assert pairs.shape == (k, 6)
  for i in range(k - 1):
    np.testing.assert_array_equal(pairs[i], np.concatenate([x[2 * i], x[2 * i + 1]]))
  np.testing.assert_array_equal(pairs[-1], np.concatenate([x[-1], x[-1]]))   # 2k - 1 repeats
  with pytest.raises(ValueError, match="2 k - 1 or 2 k"):
    features.align_to_video(x, 5, "pair")
  with pytest.raises(ValueError, match="alignment must be one of"):
    features.align_to_video(x, k, "nearest")


def test_fit_to_video_trims_or_pads_to_640_samples_per_frame():
  assert features.fit_to_video(np.ones(6500), 10).shape == (6400,)
  padded = features.fit_to_video(np.ones(6000), 10)
  assert padded.shape == (6400,) and padded[6000:].sum() == 0


def test_feature_names():
  assert (features.feature_name("facebook/wav2vec2-large-xlsr-53", -1, "pair")
          == "wav2vec2_wav2vec2-large-xlsr-53_last_pair")
  assert features.feature_name("runs/w2v demo/", 3, "interpolate") == (
      "wav2vec2_w2v-demo_layer3_interpolate")


# ------------------------------------------------------------------------------------ encoding


def test_whole_utterance_matches_the_model_and_padding_buckets_change_nothing(stable, speech):
  config, variables = stable
  extractor = features.FeatureExtractor(config, variables, "fixture", bucket_seconds=1.0)
  got = extractor.frames(speech[:12000])                    # padded to 16000 samples
  want = jax.jit(lambda v, x: wav2vec2.Wav2Vec2Model(config).apply(v, x).last_hidden_state)(
      variables, wav2vec2.normalize_waveform(speech[:12000])[None])
  assert got.shape == (int(wav2vec2.output_lengths(12000, config)), 16)
  np.testing.assert_allclose(got, np.asarray(want[0]), atol=1e-4)
  layer0 = features.FeatureExtractor(config, variables, "fixture", layer=0).frames(speech)
  assert not np.allclose(layer0, extractor.frames(speech))
  with pytest.raises(ValueError, match="layer must be"):
    features.FeatureExtractor(config, variables, "fixture", layer=5)


@pytest.mark.parametrize("variant,context,worst,bound", [
    ("stable", 0.0, 0.1, None), ("stable", 0.2, None, 0.01),
    pytest.param("post_ln", 0.3, None, 0.5, marks=pytest.mark.slow)])
def test_chunk_seam_error(speech, variant, context, worst, bound):
  """The measurement stated in `wav2vec2_features`' docstring (0.4 s cores on 0.8 s)."""
  config, variables = wav2vec2_pretrained.load_folder(FIXTURES / f"wav2vec2_tiny_{variant}")
  whole = features.FeatureExtractor(config, variables, "fixture").frames(speech)
  chunked = features.FeatureExtractor(config, variables, "fixture", chunk_seconds=0.4,
                                      context_seconds=context).frames(speech)
  assert chunked.shape == whole.shape == (39, 16)
  error = np.abs(chunked - whole).max() / np.sqrt(np.mean(whole ** 2))
  print(f"{variant} context {context} s: max seam error {error:.4f} of the RMS")
  if worst is not None:
    assert error > worst          # without context the seam shows
  if bound is not None:
    assert error < bound


def test_chunk_plans_cover_every_frame_once():
  plans = features.plan_chunks(23, 10, 3)
  assert [(p.first, p.last, p.before, p.after) for p in plans] == [
      (0, 10, 0, 3), (10, 20, 3, 3), (20, 23, 3, 0)]


# --------------------------------------------------------------------------- cache and loaders


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  root = tmp_path_factory.mktemp("w2v_features_ds")
  testing.write_random_dataset(root, [20, 14, 12], image_size=8,
                               splits=["train", "train", "test"])
  return str(root)


def test_precompute_writes_aligned_features_resumes_and_pipelines_read_them(dataset, tmp_path):
  folder = str(FIXTURES / "wav2vec2_tiny_stable")
  summary = precompute.run(dataset, weights=folder, alignment="pair", progress_bar=False)
  name = "wav2vec2_wav2vec2-tiny-stable_last_pair"
  assert summary["name"] == name and summary["written"] == 3 and summary["dim"] == 32
  info = json.loads(base.audio_feature_info_path(dataset, name).read_text())
  assert info["encoder_dim"] == 16 and info["alignment"] == "pair" and info["source"] == folder
  clip = dataset_lib.Dataset(dataset).clip("clip001")
  cached = np.load(base.audio_feature_path(dataset, clip.id, name))
  config, variables = wav2vec2_pretrained.load_folder(folder)
  want = features.FeatureExtractor(config, variables, folder).video_features(
      np.asarray(clip.audio), clip.num_frames, "pair")
  assert cached.shape == (14, 32)
  np.testing.assert_array_equal(cached, want)

  again = precompute.run(dataset, weights=folder, alignment="pair", progress_bar=False)
  assert again["written"] == 0 and again["skipped"] == 3                     # resumable
  with pytest.raises(dataset_lib.DatasetError, match="layer: -1 now 1.*--overwrite"):
    precompute.run(dataset, weights=folder, alignment="pair", name=name, layer=1,
                   progress_bar=False)

  # The sequence pipeline: rows s .. s+n-1 of the cache, zero-padded.
  it = sequences.make_sequence_eval_iterator(
      dataset, batch_size=2, shard_index=0, shard_count=1, seed=0, num_workers=0, split="train",
      min_length=4, max_length=8, mel=None, audio_features=name)
  batch = next(it)
  for k in range(2):
    i, s, n = int(batch["clip"][k]), int(batch["start"][k]), int(batch["length"][k])
    cid = ["clip000", "clip001"][i]
    rows = np.load(base.audio_feature_path(dataset, cid, name))[s:s + n]
    np.testing.assert_array_equal(batch["audio_features"][k, :n], rows)
    assert not batch["audio_features"][k, n:].any()
  # The clip pipeline: the T frames' rows.
  it = clips.make_clips_eval_iterator(dataset, batch_size=2, shard_index=0, shard_count=1,
                                      seed=0, num_workers=0, split="train", num_frames=5,
                                      audio_features=name)
  batch = next(it)
  f = int(batch["start"][0])
  rows = np.load(base.audio_feature_path(dataset, ["clip000", "clip001"][int(batch["clip"][0])],
                                         name))
  np.testing.assert_array_equal(batch["audio_features"][0], rows[f:f + 5])

  # A missing clip file stops the pipeline, naming the command.
  base.audio_feature_path(dataset, "clip002", name).unlink()
  with pytest.raises(dataset_lib.DatasetError, match="precompute_audio_features"):
    sequences.make_sequence_eval_iterator(
        dataset, batch_size=1, shard_index=0, shard_count=1, seed=0, num_workers=0, split="test",
        min_length=4, max_length=8, mel=None, audio_features=name)
  with pytest.raises(dataset_lib.DatasetError, match="no cached audio features 'nothing'"):
    base.check_audio_features(dataset, "nothing", [])


def test_missing_weights_are_named(tmp_path, dataset):
  with pytest.raises(weights.MissingWeightsError,
                     match="facebook/wav2vec2-large-xlsr-53/model.safetensors"):
    wav2vec2_pretrained.load_encoder("facebook/wav2vec2-large-xlsr-53", tmp_path)
  with pytest.raises(weights.MissingWeightsError, match="not found"):
    precompute.run(dataset, weights=str(tmp_path / "nowhere"), progress_bar=False)
  (tmp_path / "empty").mkdir()
  with pytest.raises(weights.MissingWeightsError, match="config.json"):
    wav2vec2_pretrained.load_encoder(tmp_path / "empty")
