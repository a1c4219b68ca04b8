"""The person-agnostic ("radio") corpus preset and controlled reference frames
(data/synthetic.py with align / pose_spread / expression_spread, data/references.py).

One small aligned corpus (2 training identities, 1 held out, a few short clips
at 96 px) is built once per module, in-process.
"""

import numpy as np
import pytest

from data import references
from data import synthetic
from talking_heads.face import align
from talking_heads.face import morphable
from talking_heads.io import dataset as dataset_lib
from talking_heads.pipelines import radio

SMALL = dict(identities=2, heldout_identities=1, minutes=0.05,
             heldout_minutes=0.05, heldout_voice_clips=1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  root = tmp_path_factory.mktemp("radio") / "corpus"
  synthetic.build_corpus(root, "radio", workers=1, verbose=False, **SMALL)
  return root


@pytest.fixture(scope="module")
def plan(corpus):
  return references.corpus_plan(corpus)


def test_preset_has_many_identities_and_the_standard_held_out_splits():
  plan = synthetic.plan_corpus(synthetic.make_config("radio"))
  config = plan.config
  assert (config.size, config.align, config.portrait) == (96, True, False)
  assert config.clip_seconds[1] <= 2.0  # short, LRW-like clips
  train = {c.identity for c in plan.clips if c.split == "train"}
  heldout = {c.identity for c in plan.clips if c.split == "heldout_identity"}
  assert len(train) >= 50 and len(heldout) == 10
  assert not train & heldout
  assert {c.identity for c in plan.clips if c.split != "heldout_identity"} == train
  voices = {c.voice.name for c in plan.clips if c.split == "heldout_voice"}
  assert voices and voices <= set(synthetic.speech.HELD_OUT_VOICES)
  assert not voices & {c.voice.name for c in plan.clips
                       if c.split in ("train", "val", "test")}
  assert {"train", "val", "test", "heldout_voice", "heldout_identity"} == {
      c.split for c in plan.clips}


def test_later_settings_stay_out_of_old_generator_records():
  """Corpora written before align/pose_spread/expression_spread still resume."""
  assert "align" not in synthetic.make_config("tiny").to_json()
  radio = synthetic.make_config("radio").to_json()
  assert radio["align"] and radio["pose_spread"] == [10.0, 8.0, 0.0]


@pytest.mark.parametrize("overrides, match", [
    (dict(portrait=True), "align"),
    (dict(pose_spread=(10.0, 40.0, 0.0)), "pose_spread"),
    (dict(pose_spread=(10.0,)), "pose_spread"),
    (dict(expression_spread=2.0), "expression_spread"),
])
def test_bad_radio_settings_are_named(overrides, match):
  with pytest.raises(ValueError, match=match):
    synthetic.make_config("radio", **overrides)


def test_clips_are_aligned_views_of_their_stored_parameters(corpus, plan):
  data = dataset_lib.Dataset(corpus)
  model = morphable.default_model()
  assert data.image_size == 96
  for clip in data:
    k, landmarks = np.asarray(clip.K), np.asarray(clip.landmarks)
    np.testing.assert_array_equal(
        landmarks, morphable.landmarks_2d(model, clip.alpha, clip.expression, clip.pose,
                                          k).astype(np.float32), err_msg=clip.id)
    # The FFHQ alignment of the clip's mean landmarks is (close to) the identity map.
    np.testing.assert_allclose(align.ffhq_matrix(landmarks.mean(0), 96),
                               [[1, 0, 0], [0, 1, 0]], atol=2e-4, err_msg=clip.id)
    assert k[0, 1] == k[1, 0] == 0 and k[0, 0] == k[1, 1]
  clip = data.clips("heldout_identity")[0]
  renderer = synthetic.identity_renderer(plan.identities[clip.identity], 96, plan.camera,
                                         aligned=True)
  t = clip.num_frames // 2
  np.testing.assert_array_equal(renderer.render(np.asarray(clip.landmarks[t])), clip.frames[t])


def test_each_clip_gets_its_own_rotation_and_resting_expression():
  plan = synthetic.plan_corpus(synthetic.make_config("radio"))
  col = {name: i for i, name in enumerate(morphable.EXPRESSION_NAMES)}
  zeros_e, zeros_p = np.zeros((4, len(col)), np.float32), np.zeros((4, 6), np.float32)
  offsets = []
  for spec in plan.clips[:40]:
    expression, pose = synthetic.vary_clip(plan.config, spec, zeros_e, zeros_p)
    assert (pose == pose[0]).all() and (expression == expression[0]).all()  # per clip
    offsets.append([*np.rad2deg(pose[0, :3]), expression[0, col["smile"]],
                    expression[0, col["brow_raise"]]])
    again = synthetic.vary_clip(plan.config, spec, zeros_e, zeros_p)
    np.testing.assert_array_equal(again[1], pose)
  yaw, pitch, roll, smile, brow = np.asarray(offsets).T
  assert np.abs(yaw).max() <= 10 and np.ptp(yaw) > 12
  assert np.abs(pitch).max() <= 8 and np.ptp(pitch) > 8 and not roll.any()
  for value in (smile, brow):
    assert value.min() >= 0 and value.max() <= 0.5 and np.ptp(value) > 0.3
  untouched = zeros_e.copy()
  untouched[:, col["jaw_open"]] = 0.7
  assert (synthetic.vary_clip(plan.config, plan.clips[0], untouched, zeros_p)[0][:, 0] == 0.7).all()


def test_the_plan_is_read_back_from_the_corpus(corpus, plan):
  data = dataset_lib.Dataset(corpus)
  assert plan.config == synthetic.make_config("radio", **SMALL)
  np.testing.assert_array_equal(np.asarray(data.identities["heldout00"]["alpha"], np.float32),
                                plan.identities["heldout00"].alpha)
  with pytest.raises(ValueError, match="unknown identity 'nobody'"):
    references.render_reference(plan, "nobody", references.ReferenceFactors())


@pytest.fixture(scope="module")
def renderer(plan):
  return synthetic.identity_renderer(plan.identities["heldout00"], 96, plan.camera, True)


def _render(plan, renderer, **factors):
  return references.render_reference(plan, "heldout00", references.ReferenceFactors(**factors),
                                     renderer)


def test_mouth_opening_follows_the_set_value(plan, renderer):
  lower_half = []
  for value in (0.0, 0.05, 0.1, 0.2):
    for extra in (dict(yaw=15.0, pitch=-8.0, expression={"smile": 0.6}), dict()):
      ref = _render(plan, renderer, mouth_opening=value, **extra)
      assert float(morphable.mouth_opening(ref.landmarks)) == pytest.approx(value, abs=1e-4)
    lower_half.append(ref.frame[48:].astype(int))
  # The rendered lower half moves away from the closed mouth as the opening grows.
  change = [np.abs(f - lower_half[0]).mean() for f in lower_half[1:]]
  assert change[0] > 0.5 and np.all(np.diff(change) > 0)


def _eyes(landmarks):
  return 0.5 * (landmarks[36:42].mean(0) + landmarks[42:48].mean(0))


def test_yaw_pitch_and_expression_change_the_face_as_set(plan, renderer):
  # Positive yaw turns the nose towards the image left.
  nose = [(r.landmarks[30] - _eyes(r.landmarks))[0]
          for r in (_render(plan, renderer, yaw=y) for y in (-20.0, 0.0, 20.0))]
  assert nose[0] > 2.0 and abs(nose[1]) < 1e-3 and nose[2] < -2.0
  # Positive pitch tilts the face down: the nose tip drops towards the mouth.
  def nose_drop(ref):
    eyes, mouth = _eyes(ref.landmarks), 0.5 * (ref.landmarks[48] + ref.landmarks[54])
    return (ref.landmarks[30, 1] - eyes[1]) / (mouth[1] - eyes[1])
  drops = [nose_drop(_render(plan, renderer, pitch=p)) for p in (-15.0, 0.0, 15.0)]
  assert drops[0] + 0.05 < drops[1] < drops[2] - 0.05
  # A smile widens the mouth, a brow raise lifts the brows (relative to the eye corners).
  neutral = _render(plan, renderer)
  smile = _render(plan, renderer, expression={"smile": 1.0})
  brows = _render(plan, renderer, expression={"brow_raise": 1.0})
  width = lambda r: np.linalg.norm(r.landmarks[54] - r.landmarks[48]) / morphable.face_scale(
      r.landmarks)
  lift = lambda r: (_eyes(r.landmarks)[1] - r.landmarks[17:27, 1].mean()) / morphable.face_scale(
      r.landmarks)
  assert width(smile) > 1.15 * width(neutral)
  assert lift(brows) > 1.15 * lift(neutral)
  assert np.abs(smile.frame.astype(int) - neutral.frame).mean() > 0.5
  assert neutral.frame.shape == (96, 96, 3) and neutral.frame.dtype == np.uint8


@pytest.mark.parametrize("factors, match", [
    (dict(mouth_opening=0.9), "widest opening"),
    (dict(expression={"jaw_open": 0.5}), "jaw_open"),
    (dict(expression={"smile": 1.5}), r"\[0, 1\]"),
    (dict(yaw=40.0), "30 degrees"),
])
def test_bad_factors_are_named(plan, renderer, factors, match):
  with pytest.raises(ValueError, match=match):
    _render(plan, renderer, **factors)


def test_the_radio_pipeline_reads_the_corpus(corpus):
  """Short clips still give windows with references and an off-sync mel; held-out identities
  come only through their own split."""
  it = radio.make_radio_iterator(corpus, batch_size=2, shard_index=0, shard_count=1, seed=0,
                                 num_workers=0)
  batch = next(it)
  it.close()
  assert batch["frames"].shape == batch["reference"].shape == (2, 5, 96, 96, 3)
  assert batch["mel"].shape == batch["mel_offsync"].shape == (2, 80, 20)
  data = dataset_lib.Dataset(corpus)
  train = data.clips("train")
  assert {train[c].identity for c in batch["clip"]} <= {"id00", "id01"}
  clip = train[batch["clip"][0]]
  np.testing.assert_array_equal(batch["reference_landmarks"][0],
                                clip.landmarks[batch["reference_frames"][0]])
