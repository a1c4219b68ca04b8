"""Tests for the synthetic corpus generator (data/synthetic.py).

Most tests read one tiny corpus built once per module (serial, in-process);
the parallel, resume and crash tests build small corpora of their own.
"""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from data import motion
from data import speech
from data import synthetic
from talking_heads.audio import mel
from talking_heads.face import morphable
from talking_heads.face import render
from talking_heads.io import dataset as dataset_lib
from talking_heads.io import video as video_io
from talking_heads.pipelines import base as pipelines_base

# A small corpus for the parallel/resume/crash tests: the portrait, 2 clips.
SMALL = dict(identities=1, heldout_identities=0, heldout_voice_clips=0,
             minutes=0.1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  root = tmp_path_factory.mktemp("tiny") / "corpus"
  summary = synthetic.build_corpus(root, "tiny", workers=1, verbose=False)
  return root, summary


@pytest.fixture(scope="module")
def data(corpus):
  return dataset_lib.Dataset(corpus[0])


NAMES = dataset_lib.ARRAY_NAMES + dataset_lib.OPTIONAL_ARRAY_NAMES


def _arrays(clip):
  return {name: np.asarray(clip.load(name)) for name in NAMES}


def _assert_same_arrays(a, b):
  for name in NAMES:
    np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_tiny_corpus_builds_and_validates(corpus, data):
  root, summary = corpus
  data.validate(full=True)
  config = synthetic.make_config("tiny")
  plan = synthetic.plan_corpus(config)
  assert [c.id for c in data] == [c.id for c in plan.clips]
  assert summary["clips"] == summary["written"] == len(plan.clips) == 12
  assert summary["features_written"] == 2 * 12   # Wav2Lip and RADIO mels
  assert summary["frames"] == sum(c.num_frames for c in data)
  assert json.loads((root / synthetic.SUMMARY_FILE).read_text()) == summary
  assert data.generator["config"] == config.to_json()
  assert data.image_size == 64 and data.fps == 25 and data.sample_rate == 16000
  lo, hi = config.clip_seconds
  for clip in data:
    assert clip.num_samples == 640 * clip.num_frames
    assert lo <= clip.num_samples / 16000 <= hi + 0.04  # + padding to a frame
    assert clip.record.text


def test_previews_hold_the_clip_with_audio(data):
  clip = data.clips("train")[0]
  info = video_io.probe(clip.preview_path)
  assert info.has_audio and (info.width, info.height) == (64, 64)
  frames, fps = video_io.read_video(clip.preview_path)
  assert fps == 25
  assert len(frames) == clip.num_frames
  # H.264 at CRF 18: close to the stored frames.
  assert np.abs(frames.astype(int) - np.asarray(clip.frames)).mean() < 6
  assert all(c.preview_path is not None for c in data)


def test_required_splits_exist(data):
  assert set(dataset_lib.STANDARD_SPLITS) <= set(data.splits())


def test_heldout_identities_and_voices_stay_out_of_training(data):
  identities = data.identities
  heldout = {name for name, meta in identities.items() if meta["heldout"]}
  assert heldout == {"heldout00"}
  for split in ("train", "val", "test"):
    for clip in data.clips(split):
      assert clip.identity not in heldout
      assert clip.record.voice not in speech.HELD_OUT_VOICES
      assert clip.record.language not in speech.HELD_OUT_LANGUAGES
      assert clip.record.voice == identities[clip.identity]["voice"]
  for clip in data.clips("heldout_voice"):
    assert clip.identity not in heldout
    assert clip.record.voice in speech.HELD_OUT_VOICES
  assert {c.identity for c in data.clips("heldout_identity")} == heldout


def test_each_identity_has_its_own_voice_and_two_languages_are_spoken(data):
  identities = data.identities
  voices = [meta["voice"] for meta in identities.values()]
  assert len(set(voices)) == len(voices) == 3
  assert identities["astronaut"]["kind"] == "portrait"
  assert identities["id01"]["kind"] == "painted"
  assert len({c.record.language for c in data}) >= 2


def test_plan_splits_about_80_10_10_and_varies_reused_voices():
  config = synthetic.make_config("demo", identities=12, portrait=False)
  plan = synthetic.plan_corpus(config)
  own = {}
  for spec in plan.clips:
    own.setdefault(spec.identity, []).append(spec.split)
  per_identity = round(config.minutes * 60 / config.mean_clip_seconds)
  for name, splits in own.items():
    if name.startswith("heldout"):
      assert set(splits) == {"heldout_identity"}
      continue
    assert splits.count("heldout_voice") == config.heldout_voice_clips
    assert len(splits) - config.heldout_voice_clips == per_identity
    assert splits.count("val") == splits.count("test") == 3  # 10% of 30
  voices = [i.voice for i in plan.identities.values()]
  assert len({v.name for v in voices}) == len(voices) == 13
  # More identities than training voices: reused voices differ in pitch/rate.
  assert len({(v.espeak_voice, v.pitch, v.rate) for v in voices}) == 13


def test_landmarks_are_the_model_projection_of_the_stored_parameters(data):
  model = morphable.default_model()
  for clip in data:
    a = _arrays(clip)
    offset = np.asarray(data.identities[clip.identity].get(
        "landmark_offset", np.zeros((68, 2))), np.float32)
    expected = morphable.landmarks_2d(model, a["alpha"], a["expression"],
                                      a["pose"], a["K"]).astype(np.float32)
    np.testing.assert_array_equal(a["landmarks"], expected + offset,
                                  err_msg=clip.id)
    np.testing.assert_array_equal(a["alpha"], data.identities[clip.identity]
                                  ["alpha"])


def test_portrait_offset_is_the_small_residual_of_her_fitted_face():
  """Her rest (expression 0, rest pose) reproduces the hand-measured photo
  landmarks, with the parted inner lips met halfway."""
  plan = synthetic.plan_corpus(synthetic.make_config("tiny", size=256))
  her = plan.identities["astronaut"]
  rest = synthetic.clip_landmarks(her, np.zeros((1, 9), np.float32),
                                  her.rest_pose[None], plan.camera)[0]
  _, photo = render.portrait_renderer(256)
  assert morphable.mouth_opening(photo) > 0.07
  assert morphable.mouth_opening(rest) < 1e-6
  others = [i for i in range(68) if i not in range(61, 68) or i == 64]
  np.testing.assert_allclose(rest[others], photo[others], atol=1e-3)
  rms = np.sqrt(np.mean(np.sum(her.landmark_offset**2, -1)))
  assert rms < 3.0  # px at 256, about 2.4 mm on her face


def test_frames_are_renders_of_the_stored_landmarks(data):
  plan = synthetic.plan_corpus(synthetic.make_config("tiny"))
  for name in ("astronaut", "id01"):
    clip = [c for c in data if c.identity == name][0]
    renderer = synthetic.identity_renderer(plan.identities[name], 64,
                                           plan.camera)
    landmarks = np.asarray(clip.landmarks)
    assert clip.has("head_mask")
    for t in (0, clip.num_frames // 2):
      frame, mask = renderer.render_with_mask(landmarks[t])
      np.testing.assert_array_equal(frame, clip.frames[t])
      np.testing.assert_array_equal(mask, clip.head_mask[t])


def test_clip_generation_is_deterministic_per_seed(data):
  plan = synthetic.plan_corpus(synthetic.make_config("tiny"))
  spec = plan.clips[5]  # a painted identity's clip
  first = synthetic.generate_clip(plan, spec).arrays()
  second = synthetic.generate_clip(plan, spec).arrays()
  _assert_same_arrays(first, second)
  _assert_same_arrays(first, _arrays(data.clip(spec.id)))
  other_plan = synthetic.plan_corpus(synthetic.make_config("tiny", seed=1))
  other = synthetic.generate_clip(other_plan, other_plan.clips[5]).arrays()
  assert not np.array_equal(first["alpha"], other["alpha"])
  assert (first["audio"].shape != other["audio"].shape
          or not np.array_equal(first["audio"], other["audio"]))


def test_parallel_build_equals_serial(tmp_path, data):
  summary = synthetic.build_corpus(tmp_path / "parallel", "tiny", workers=2,
                                   verbose=False, **SMALL)
  assert summary["written"] == 2 and summary["workers"] == 2
  for clip in dataset_lib.Dataset(tmp_path / "parallel"):
    _assert_same_arrays(_arrays(clip), _arrays(data.clip(clip.id)))


def test_resume_makes_only_missing_clips(tmp_path, corpus, data):
  root = tmp_path / "resumed"
  shutil.copytree(corpus[0], root)
  # A crash before the manifest listed the last clips, one of them half done.
  (root / dataset_lib.MANIFEST_FILE).unlink()
  lost = data.clips()[-1].id
  shutil.rmtree(root / "clips" / lost)
  summary = synthetic.build_corpus(root, "tiny", workers=1, verbose=False)
  assert (summary["written"], summary["skipped"]) == (1, len(data) - 1)
  resumed = dataset_lib.Dataset(root)
  resumed.validate(full=True)
  assert resumed.identities == data.identities
  _assert_same_arrays(_arrays(resumed.clip(lost)), _arrays(data.clip(lost)))
  again = synthetic.build_corpus(root, "tiny", workers=1, verbose=False)
  assert (again["written"], again["skipped"]) == (0, len(data))


def test_a_crash_keeps_finished_clips(tmp_path, monkeypatch):
  root = tmp_path / "crashed"
  real = synthetic.generate_clip
  calls = []

  def failing(plan, spec, renderer=None):
    calls.append(spec.id)
    if len(calls) == 2:
      raise RuntimeError("simulated crash")
    return real(plan, spec, renderer)

  monkeypatch.setattr(synthetic, "generate_clip", failing)
  with pytest.raises(RuntimeError, match="simulated crash"):
    synthetic.build_corpus(root, "tiny", workers=1, verbose=False, **SMALL)
  assert [c.id for c in dataset_lib.Dataset(root)] == ["astronaut-0000"]
  monkeypatch.setattr(synthetic, "generate_clip", real)
  summary = synthetic.build_corpus(root, "tiny", workers=1, verbose=False,
                                   **SMALL)
  assert (summary["written"], summary["skipped"]) == (1, 1)


def _mouth_energy_correlation(data, shift):
  """Pearson r over all frames of mouth opening at t + shift and audio
  energy at t (per clip, so shifted frames never cross clips)."""
  mouth, energy = [], []
  for clip in data:
    m = morphable.mouth_opening(np.asarray(clip.landmarks))
    e = motion.energy_envelope(np.asarray(clip.audio), clip.num_frames)
    if shift > 0:
      m, e = m[shift:], e[:-shift]
    elif shift < 0:
      m, e = m[:shift], e[-shift:]
    mouth.append(m)
    energy.append(e)
  return np.corrcoef(np.concatenate(mouth), np.concatenate(energy))[0, 1]


def test_mouth_opening_follows_speech_energy(data):
  # Aligned: r = 0.59 on this corpus (0.56 on the demo preset); closures and
  # unvoiced consonants (energy with a closed mouth) keep it below ~0.7. A
  # misaligned pairing is uncorrelated (|r| < 0.1 at 3-6 frames), so 0.4
  # leaves a wide margin on both sides.
  aligned = _mouth_energy_correlation(data, 0)
  assert aligned > 0.4
  for shift in (3, 4, 5, -3, -4, -5):
    assert _mouth_energy_correlation(data, shift) < aligned - 0.3, shift


def test_clips_record_their_phoneme_timings_inside_the_audio(data):
  # Probes of audio features label frames with these timings: they must cover the speech and
  # end before the clip's (frame-padded) audio does.
  for clip in data.clips():
    phonemes = clip.record.phonemes
    assert phonemes and 0.0 <= phonemes[0][1] < 0.5, clip.id
    ends = np.array([end for _, _, end in phonemes])
    starts = np.array([start for _, start, _ in phonemes])
    np.testing.assert_allclose(starts[1:], ends[:-1], err_msg=clip.id)
    assert ends[-1] <= clip.num_samples / data.sample_rate + 1e-6, clip.id
    assert any(not symbol.startswith("_") for symbol, _, _ in phonemes), clip.id


@pytest.mark.parametrize("overrides,match", [
    (dict(size=8), "size"), (dict(identities=0), "identities"),
    (dict(minutes=-1.0), "minutes"), (dict(seed=-3), "seed"),
    (dict(colour="blue"), "colour"),
])
def test_bad_settings_are_named(overrides, match):
  with pytest.raises(ValueError, match=match):
    synthetic.make_config("tiny", **overrides)


def test_bad_preset_workers_and_mismatched_resume(tmp_path, corpus):
  with pytest.raises(ValueError, match="unknown preset 'huge'.*tiny"):
    synthetic.build_corpus(tmp_path / "x", "huge")
  with pytest.raises(ValueError, match="workers"):
    synthetic.build_corpus(tmp_path / "x", "tiny", workers=0)
  with pytest.raises(dataset_lib.DatasetError, match="generator"):
    synthetic.build_corpus(corpus[0], "tiny", workers=1, verbose=False,
                           seed=5)


def test_command_line_reports_bad_flags(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "data.synthetic", "--preset", "tiny", "--size",
       "8", "--out", str(tmp_path / "x")],
      capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode != 0
  assert "size=8" in result.stderr + result.stdout
  assert not (tmp_path / "x").exists()


def test_command_line_corpus_has_the_pipelines_mel_features(tmp_path):
  out = tmp_path / "cli"
  result = subprocess.run(
      [sys.executable, "-m", "data.synthetic", "--preset", "tiny", "--identities", "1",
       "--heldout_identities", "0", "--minutes", "0.1", "--workers", "1", "--out", str(out)],
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  dataset = dataset_lib.Dataset(out)
  assert len(dataset) > 0
  for config in (mel.WAV2LIP_MEL, mel.RADIO_MEL):
    assert pipelines_base.warn_missing_features(out, dataset.clips(), config) == 0
    clip = dataset.clips()[0]
    np.testing.assert_array_equal(
        np.load(pipelines_base.feature_path(out, clip.id, config)),
        mel.mel_spectrogram_time_major(np.asarray(clip.audio), config, clip_id=clip.id))
