"""The front-end comparison's phoneme probe on the tiny corpus: its labels line up with the
speech (a probe of the true labels beats one of labels shifted in time) and every row is there."""

import dataclasses

import jax
import numpy as np
import pytest

from data import synthetic
from experiments.dae_talker import frontend_comparison
from talking_heads.analysis import phoneme_probe
from talking_heads.audio import wav2vec2
from talking_heads.io import dataset as dataset_lib


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  root = tmp_path_factory.mktemp("tiny") / "corpus"
  synthetic.build_corpus(root, "tiny", workers=1, verbose=False, preview=False)
  return str(root)


def _mel_probe(data, shift):
  features, labels = {}, {}
  for split in ("train", "test"):
    clips = list(data.clips(split))
    features[split] = np.concatenate([
        frontend_comparison.mel_frame_features(np.asarray(c.audio), c.num_frames) for c in clips])
    labels[split] = sum((np.roll(phoneme_probe.frame_labels(c.record.phonemes, c.num_frames,
                                                            data.fps), shift).tolist()
                         for c in clips), [])
  return phoneme_probe.fit_linear_probe(features["train"], labels["train"], features["test"],
                                        labels["test"], min_count=5)


def test_mel_probe_reads_phonemes_only_when_labels_are_aligned(corpus):
  data = dataset_lib.Dataset(corpus)
  aligned, shifted = _mel_probe(data, 0), _mel_probe(data, 8)
  assert aligned.balanced_accuracy > shifted.balanced_accuracy + 0.1, (aligned, shifted)


def test_probe_table_has_every_front_end(corpus):
  config = wav2vec2.get_config("tiny")
  variables = wav2vec2.Wav2Vec2Model(config).init(jax.random.key(1),
                                                  np.zeros((1, 1600), np.float32))
  out = frontend_comparison.phoneme_probes(corpus, config, variables, "test init", layers=(2,),
                                            min_count=3)
  assert set(out["probes"]) == {"mel (RADIO, 4 x 80 per frame)", "wav2vec2 layer 2",
                                "wav2vec2 random weights, last layer"}
  assert out["probes"]["wav2vec2 layer 2"]["dim"] == 2 * config.hidden_size
  for probe in out["probes"].values():
    for split in frontend_comparison.PROBE_TEST_SPLITS:
      assert 0.0 <= probe[split]["accuracy"] <= 1.0 and probe[split]["test_frames"] > 0


def test_a_corpus_without_phoneme_timings_is_named(corpus, tmp_path):
  data = dataset_lib.Dataset(corpus)
  clip = next(iter(data.clips("train")))
  with pytest.raises(ValueError, match="have no phoneme timings"):
    frontend_comparison._probe_clips(_WithoutPhonemes(data, clip.id))


class _WithoutPhonemes:
  """A dataset whose first training clip lost its phoneme timings (an old corpus)."""

  def __init__(self, data, clip_id):
    self.root, self._data, self._id = data.root, data, clip_id

  def clips(self, split=None):
    for c in self._data.clips(split):
      if c.id == self._id:
        c.record = dataclasses.replace(c.record, phonemes=None)
      yield c
