"""RADIO's evaluation: the mouth-copy index tells a generator that copies the reference's mouth
from one that follows the truth (fake generators, synthetic frames); MS-SSIM's resize; the paper
rows. With trained tiny stages (`slow`): the main-job part runs end to end on its own tiny radio
corpus (built through the launcher's `part_context`), and its workdirs give finite Table 1-3 rows
and the robustness study on references rendered by the corpus renderer."""

import json
import os
import types

import numpy as np
import pytest

from talking_heads.face import morphable
from talking_heads.metrics import image as image_lib
from talking_heads.systems import api
from talking_heads.systems.radio import evaluation

SIZE, FRAMES = 16, 12
CODE_SCALE = 1000.0   # a fake frame's pixel value is its mouth opening x 1000


def landmarks_with_opening(openings):
  """[T] mouth openings -> [T, 68, 2] landmarks whose `morphable.mouth_opening` is exactly them."""
  base = np.asarray(morphable.landmarks_2d(morphable.default_model(), None, None,
                                           morphable.default_pose(),
                                           morphable.default_camera(64)), np.float64)
  out = np.repeat(base[None], len(openings), axis=0)
  eyes = np.linalg.norm(base[36] - base[45])
  for upper, lower in morphable.INNER_LIP_PAIRS:
    out[:, lower] = out[:, upper] + np.stack([np.zeros(len(openings)),
                                              np.asarray(openings) * eyes], -1)
  return out


def frames_with_opening(openings):
  """Fake frames [T, S, S, 3] carrying each opening as their pixel value."""
  codes = np.rint(np.asarray(openings) * CODE_SCALE).astype(np.uint8)
  return np.broadcast_to(codes[:, None, None, None], (len(codes), SIZE, SIZE, 3)).copy()


def read_landmarks(frames):
  """The fake frames' 'landmark detector': their code back as landmarks."""
  return landmarks_with_opening(frames[:, 0, 0, 0] / CODE_SCALE)


def fake_clips(rng, count=3):
  clips = []
  for i in range(count):
    openings = np.round(rng.uniform(0.0, 0.2, FRAMES), 3)
    clips.append(types.SimpleNamespace(
        id=f"heldout00-{i:04d}", identity="heldout00", frames=frames_with_opening(openings),
        audio=np.zeros(FRAMES * 640, np.float32), landmarks=landmarks_with_opening(openings)))
  return clips


def references(levels):
  return {"heldout00": [evaluation.ControlledReference(
      "mouth_opening", level, frames_with_opening([level])[0], level) for level in levels]}


def test_landmark_helpers_round_trip():
  openings = np.array([0.0, 0.05, 0.123, 0.2])
  np.testing.assert_allclose(morphable.mouth_opening(landmarks_with_opening(openings)), openings,
                             atol=1e-9)
  np.testing.assert_allclose(morphable.mouth_opening(read_landmarks(frames_with_opening(openings))),
                             openings, atol=1e-9)


def test_mouth_copy_index_separates_reference_copiers_from_truth_followers():
  rng = np.random.default_rng(0)
  clips, refs = fake_clips(rng), references([0.0, 0.05, 0.1, 0.15, 0.2])
  judges = evaluation.Judges(landmarks=read_landmarks)

  def copy_reference(frames, audio, reference, clip_id):
    del audio, clip_id
    return np.broadcast_to(reference, frames.shape).copy()

  def copy_truth(frames, audio, reference, clip_id):
    del audio, reference, clip_id
    return frames.copy()

  def blend(frames, audio, reference, clip_id):   # half the reference's mouth, half the truth's
    del audio, clip_id
    mixed = 0.5 * frames.astype(np.float64) + 0.5 * reference.astype(np.float64)
    return np.rint(mixed).astype(np.uint8)

  copier = evaluation.reference_robustness(copy_reference, clips, refs, judges)
  follower = evaluation.reference_robustness(copy_truth, clips, refs, judges)
  blended = evaluation.reference_robustness(blend, clips, refs, judges)
  pairs = len(clips) * 5 * FRAMES
  assert copier["mouth_copy"]["pairs"] == follower["mouth_copy"]["pairs"] == pairs
  assert copier["mouth_copy"]["mouth_copy_index"] == pytest.approx(1.0, abs=1e-6)
  assert abs(copier["mouth_copy"]["truth_following"]) < 0.2
  # Every clip meets every reference: the true openings are uncorrelated with the references'.
  assert follower["mouth_copy"]["mouth_copy_index"] == pytest.approx(0.0, abs=1e-6)
  assert follower["mouth_copy"]["truth_following"] == pytest.approx(1.0, abs=1e-6)
  assert 0.4 < blended["mouth_copy"]["mouth_copy_index"] < 0.95
  assert 0.4 < blended["mouth_copy"]["truth_following"] < 0.95
  # Per factor level: the copier's PSNR against the truth, the follower's perfect match.
  levels = copier["factors"]["mouth_opening"]
  assert [r["level"] for r in levels] == [0.0, 0.05, 0.1, 0.15, 0.2]
  assert all(r["clips"] == len(clips) and np.isfinite(r["psnr"]) for r in levels)
  assert all(r["psnr"] > 100 or np.isinf(r["psnr"])
             for r in follower["factors"]["mouth_opening"])
  text = evaluation.robustness_markdown({**copier, "system": "copier"})
  assert "| mouth_opening | clips | psnr |" in text and "Mouth-copy index" in text


def test_robustness_names_what_is_missing():
  clips = fake_clips(np.random.default_rng(1), 1)
  out = evaluation.reference_robustness(lambda f, a, r, c: f, clips, references([0.1]),
                                        evaluation.Judges())
  assert out["mouth_copy"].startswith("unavailable: no landmark function")
  with pytest.raises(ValueError, match="no controlled references of identity 'heldout00'"):
    evaluation.reference_robustness(lambda f, a, r, c: f, clips, {}, evaluation.Judges())


def test_ms_ssim_upsamples_small_frames_both_alike():
  rng = np.random.default_rng(2)
  truth = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
  assert evaluation.MS_SSIM_SIDE == image_lib.min_ms_ssim_side() == 161
  assert evaluation.ms_ssim(truth, truth) == pytest.approx(1.0, abs=1e-5)
  noisy = np.clip(truth.astype(int) + rng.integers(-40, 40, truth.shape), 0, 255).astype(np.uint8)
  assert 0.0 < evaluation.ms_ssim(noisy, truth) < 0.99


def test_entry_dubber_passes_the_clip_through_files_to_a_declared_entry(monkeypatch):
  from talking_heads.io import audio as audio_io  # pylint: disable=g-import-not-at-top
  from talking_heads.io import video as video_io  # pylint: disable=g-import-not-at-top
  seen = {}

  def load(weights, options):
    seen.update(weights=weights, options=options)

    def generate(audio_path, video_path, video_options):
      seen["box"] = video_options.box
      return types.SimpleNamespace(frames=video_io.read_video(video_path)[0],
                                   audio=audio_io.load_audio(audio_path), fps=25, seconds={})
    return api.LoadedGenerator(generate, {})

  echo = types.SimpleNamespace(loader=lambda: load, options={"gain": ("1.0", "help")})
  monkeypatch.setattr(api, "generators", lambda: {"echo": echo})
  dub = evaluation.entry_dubber("echo", {"echo_workdir": "w"})
  assert seen == {"weights": {"echo_workdir": "w"}, "options": {"gain": "1.0"}}
  truth = np.full((8, 32, 32, 3), 120, np.uint8)
  out = dub(truth, np.random.default_rng(0).normal(0, 0.1, 8 * 640).astype(np.float32), None,
            "clip0")
  assert seen["box"] == "full" and out.shape == truth.shape
  assert np.abs(out.astype(int) - 120).max() <= 3          # H.264 of a flat frame
  with pytest.raises(ValueError, match="echo: the inference entry takes no controlled reference"):
    dub(truth, np.zeros(8 * 640, np.float32), truth[0], "clip0")


def test_tables_command_parses_named_workdirs_and_baselines():
  from absl import app  # pylint: disable=g-import-not-at-top
  from experiments.radio import tables  # pylint: disable=g-import-not-at-top
  assert tables.named_workdirs(["ViT(1,2)=runs/a", "A=b=c"], "table_3") == [
      ("ViT(1,2)", "runs/a"), ("A", "b=c")]
  with pytest.raises(app.UsageError, match="expected NAME=WORKDIR"):
    tables.named_workdirs(["runs/a"], "table_2")
  assert tables.baselines("w", "s") == {
      "wav2lip": {"wav2lip_workdir": "w"},
      "ladtalk": {"wav2lip_workdir": "w", "sovqae_workdir": "s"}}
  with pytest.raises(app.UsageError, match="needs --wav2lip_workdir"):
    tables.baselines("", "s")


def test_paper_rows_without_results_name_the_commands(tmp_path):
  rows = {t["table"]: t for t in evaluation.paper_rows(str(tmp_path))}
  assert set(rows) == {"table_1_hdtf", "table_1_voxceleb2", "table_2", "table_3"}
  assert all(not t["measured"] for t in rows.values())
  assert "experiments.radio.tables" in rows["table_2"]["unavailable"][0]["reason"]


def test_radio_declares_its_main_part_with_its_own_corpus():
  part = api.get("radio").main_part
  assert part.after == ("experts",) and set(part.minutes) == {"tiny", "demo"}
  assert part.corpus["demo"] == {"preset": "radio"} and part.corpus["tiny"]["preset"] == "radio"


# ------------------------------------------------------------------------------ trained (slow)


@pytest.fixture(scope="module")
def part_run(tmp_path_factory):
  """The main-job part on tiny, in a context the launcher makes for it (its own radio corpus)."""
  from experiments import main as main_lib  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path_factory.mktemp("main"))
  system = api.get("radio")

  def config(stage):
    c = main_lib.stage_config(stage, "tiny", ctx.corpus_root)
    c.mesh.num_devices = 1   # 8 fake devices on 2 cores only slow the run down
    return c

  job = api.MainContext(workdir=workdir, variant="tiny", corpus_root="unused",
                        identity="unused", artefacts={}, config=lambda stage: None)
  ctx = main_lib.part_context(job, system, system.main_part, workers=1)
  ctx.config = config
  return ctx, api.resolve(system.main_part.run)(ctx)


@pytest.mark.slow
def test_main_part_runs_end_to_end_on_tiny(part_run):
  ctx, report = part_run
  assert ctx.corpus_root == os.path.join(ctx.workdir, "corpus_radio")
  assert [t["stage"] for t in report.trainings] == ["radio_sync", "radio"]
  made = report.summary["video"]
  assert made["identity"].startswith("heldout") and made["frames"] > 0
  assert os.path.getsize(os.path.join(ctx.workdir, made["video"])) > 0
  table = report.summary["table_1"]
  assert set(table) == {"radio", "ground_truth"}
  for key in ("psnr", "ms_ssim", "lse_c", "lse_d"):
    assert np.isfinite(table["radio"][key]), key
  assert table["radio"]["lpips"].startswith("unavailable") and "lmd" in table["radio"]
  # No experts' part ran: LSE falls back to RADIO's own sync discriminator, named as such.
  assert "RADIO grayscale sync discriminator" in report.summary["lse_expert"]
  assert "not independent" in report.summary["lse_expert"]
  assert "| radio |" in report.markdown and report.videos
  rows = {t["table"]: t for t in evaluation.paper_rows(os.path.join(ctx.workdir, "radio"))}
  assert [r["method"] for r in rows["table_1_hdtf"]["measured"]] == ["RADIO (Ours)", "GT"]
  assert {"PSNR", "MS-SSIM", "Sync-C", "Sync-D"} <= set(
      rows["table_1_hdtf"]["measured"][0]["values"])


@pytest.mark.slow
def test_tables_score_ablation_workdirs(part_run, tmp_path):
  ctx, _ = part_run
  radio_workdir = os.path.join(ctx.workdir, "radio", "radio")
  results = evaluation.run(ctx.corpus_root, radio_workdir, max_clips=1, max_frames=12,
                           ablations={"table_2": [("B", radio_workdir), ("D", radio_workdir)],
                                      "table_3": [("ViT(2,2)", radio_workdir)]})
  assert list(results["table_2"]) == ["B", "D"] and list(results["table_3"]) == ["ViT(2,2)"]
  for row in (*results["table_2"].values(), *results["table_3"].values()):
    assert np.isfinite(row["psnr"]) and 0.0 <= row["sync"] <= 1.0
    assert row["lpips"].startswith("unavailable")
  assert results["table_2"]["B"]["psnr"] == results["table_2"]["D"]["psnr"]   # same workdir
  (tmp_path / "tables.json").write_text(json.dumps(results))
  rows = {t["table"]: t for t in evaluation.paper_rows(str(tmp_path))}
  assert [r["method"] for r in rows["table_2"]["measured"]] == [
      "B: + Style modulation", "D: + Fidelity mapping w/ ViT"]
  assert set(rows["table_2"]["measured"][0]["values"]) == {"PSNR", "Sync"}
  assert rows["table_2"]["unavailable"][0]["method_or_column"] == "LPIPS"
  # An ablation row names its own workdir and step, not Table 1's RADIO steps.
  label = rows["table_2"]["measured"][0]["label"]
  assert label.endswith(results["table_2"]["B"]["source"]) and " steps;" not in label
  assert "table_2" in evaluation.markdown(results)


@pytest.mark.slow
def test_robustness_study_on_rendered_references(part_run):
  from experiments.radio import robustness  # pylint: disable=g-import-not-at-top
  ctx, _ = part_run
  radio_workdir = os.path.join(ctx.workdir, "radio", "radio")
  judges = evaluation.Judges(landmarks=lambda frames: np.asarray(
      [landmarks_with_opening([0.05])[0]] * len(frames)))   # a constant 'detector'
  out = robustness.study(ctx.corpus_root, [("D", radio_workdir)],
                         {"yaw": [-10.0, 10.0], "mouth_opening": [0.0, 0.15]}, judges,
                         max_clips=1, max_frames=10)
  result = out["systems"]["D"]
  assert set(result["factors"]) == {"yaw", "mouth_opening"}
  for levels in result["factors"].values():
    assert len(levels) == 2 and all(np.isfinite(r["psnr"]) for r in levels)
  assert result["mouth_copy"]["pairs"] == 4 * 10
  refs = robustness.controlled_references(ctx.corpus_root, out["identities"],
                                          {"mouth_opening": [0.0, 0.15]})
  opened = [r.mouth_opening for r in refs[out["identities"][0]]]
  assert opened == pytest.approx([0.0, 0.15], abs=1e-4)
