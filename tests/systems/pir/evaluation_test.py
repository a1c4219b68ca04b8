"""PIR's supplementary table and ablations with numbers, and the main-job part, on the tiny
components of conftest (random-weight experts: the values mean nothing, their rows and
finiteness do). Slow: they render through EG3D's volume renderer, whose compilation takes minutes
on 2 shared cores when the compilation cache is cold."""

import json
import math
import os

import numpy as np
import pytest

from experiments import reproduce
from experiments.configs.pir import audio2exp as audio2exp_config
from experiments.configs.pir import renderer as renderer_config
from experiments.configs.pir import triplane as triplane_config
from experiments.pir import tables
from talking_heads.io import dataset as dataset_lib
from talking_heads.systems import api
from talking_heads.systems.pir import evaluation, main_part
from talking_heads.training import loop

SHORT = dict(total_steps=2, log_every=1, checkpoint_every=100, eval_every=0, image_every=0)
FRAMES = 12


def _finite(x):
  return isinstance(x, float) and math.isfinite(x)


@pytest.fixture(scope="module")
def ablation_workdirs(dataset64, tiny, workdirs, tmp_path_factory):
  """A with k = 4 (6 steps), C trained with s = 0 against conftest's B, and B trained on the
  whole frame (2 steps each)."""
  root = tmp_path_factory.mktemp("pir_ablations")
  a4 = tiny(audio2exp_config, dataset64, **{**SHORT, "total_steps": 6})
  a4.data.window = 4
  loop.train_and_evaluate(a4, str(root / "a4"))
  c0 = tiny(renderer_config, dataset64, **SHORT)
  c0.triplane.workdir, c0.jitter.strength = workdirs["pir_triplane_workdir"], 0.0
  loop.train_and_evaluate(c0, str(root / "c0"))
  frame = tiny(triplane_config, dataset64, **SHORT)
  frame.loss.region = "frame"
  loop.train_and_evaluate(frame, str(root / "b_frame"))
  return {"a4": str(root / "a4"), "c0": str(root / "c0"), "b_frame": str(root / "b_frame")}


@pytest.mark.slow
def test_context_table_gives_each_k_its_row(dataset64, workdirs, ablation_workdirs, experts,
                                            tmp_path):
  a8 = workdirs["pir_audio2exp_workdir"]
  context = evaluation.context_table(
      dataset64, "id0", [(8, a8), (4, ablation_workdirs["a4"])],
      workdirs["pir_renderer_workdir"], syncnet_workdir=experts["syncnet"],
      regressor_workdir=experts["regressor"], max_frames=FRAMES, batch_size=4)
  assert [r["k"] for r in context["rows"]] == [8, 4] and context["frames"] == FRAMES
  for row in context["rows"]:
    for key in ("lmd", "lse_c", "lse_d", "expression_mse", "expression_lmd"):
      assert _finite(row[key]), (row["k"], key)
  assert _finite(context["ground_truth"]["lse_c"])
  # Each row is its own A: the two expression errors differ.
  assert context["rows"][0]["expression_mse"] != context["rows"][1]["expression_mse"]
  with pytest.raises(ValueError, match="trained component A with k = 8.*listed as k = 1"):
    evaluation.context_table(dataset64, "id0", [(1, a8)], workdirs["pir_renderer_workdir"],
                             syncnet_workdir=experts["syncnet"], max_frames=FRAMES)
  # As supplementary Table 1's rows beside the paper's; the k values not swept are named.
  (tmp_path / "tables.json").write_text(json.dumps({"identity": "id0", "context_length": context}))
  supp = {t["table"]: t for t in evaluation.paper_rows(str(tmp_path))}["supp_table_1"]
  rows = {r["method"]: r["values"] for r in supp["measured"]}
  assert set(rows) == {"PIR, k = 8", "PIR, k = 4", "Ground truth (not in the paper)"}
  assert set(rows["PIR, k = 4"]) == {"k", "LMD", "AVConf"} and rows["PIR, k = 4"]["k"] == 4
  assert {u["method_or_column"] for u in supp["unavailable"]} == {
      f"PIR, k = {k}" for k in (1, 10, 50, 100, 200)}
  assert "Supplementary Table 1" in evaluation.markdown({"identity": "id0", "context_length": context})
  assert tables.parse_contexts(["1:/a", "100:/b"]) == [(1, "/a"), (100, "/b")]


@pytest.mark.slow
def test_ablations_and_geometric_checks_give_numbers(dataset64, workdirs, ablation_workdirs,
                                                     experts):
  results = evaluation.run_ablations(
      dataset64, "id0", workdirs["pir_audio2exp_workdir"], workdirs["pir_renderer_workdir"],
      no_jitter_renderer_workdir=ablation_workdirs["c0"],
      frame_triplane_workdir=ablation_workdirs["b_frame"], regressor_workdir=experts["regressor"],
      pose_offset=(20.0, 0.0, 0.0), max_frames=FRAMES, batch_size=4)
  rendering = results["without_rendering"]["summary"]
  assert set(rendering) == {"pir_written", "pir_rendered", "without_rendering"}
  assert all(_finite(v) for s in rendering.values() for v in s.values())
  # Outside the inpaint mask the written frame is the target's own: better than C's or B's
  # whole frames outside the head.
  assert rendering["pir_written"]["psnr_outside_head"] > max(
      rendering["pir_rendered"]["psnr_outside_head"],
      rendering["without_rendering"]["psnr_outside_head"])
  jitter = results["without_jitter"]
  # The tiny variant's s = 3 pixels of a 512 px frame, and the ablation's 0.
  assert [r["jitter_s"] for r in jitter["rows"]] == pytest.approx([3.0, 0.0])
  for row in jitter["rows"]:
    for condition in ("fitted", "perturbed"):
      assert all(_finite(row[condition][k]) for k in ("psnr", "psnr_inpainted",
                                                       "landmark_error"))
    # The perturbed K moves I_F, so C's frames change.
    assert row["perturbed"]["psnr"] != row["fitted"]["psnr"]
  assert _finite(jitter["true_frames_landmark_error"])
  geometry = results["geometry"]["summary"]
  assert set(geometry) == {"natural", "offset", "true_frames"}
  assert all(_finite(s["landmark_error"]) for s in geometry.values())
  # The pose does not reach A: the same expressions under both poses.
  assert geometry["natural"]["expression_mse"] == geometry["offset"]["expression_mse"]
  text = evaluation.markdown({"identity": "id0", "ablations": results})
  assert "Without rendering" in text and "Without jitter" in text and "Geometric" in text


def test_projected_landmarks_match_the_corpus(dataset64):
  """The geometric checks' ground truth: the morphable model's projection of a clip's own
  parameters is where the dataset put its landmarks."""
  clip = dataset_lib.Dataset(dataset64).clip("clip004")
  projected = evaluation.projected_landmarks(clip.alpha, clip.expression, clip.pose, clip.K)
  np.testing.assert_allclose(projected, clip.landmarks, atol=0.05)


@pytest.mark.slow
def test_main_part_trains_makes_the_video_and_tables(dataset64, tiny, experts, tmp_path):
  modules = {"pir_audio2exp": audio2exp_config, "pir_triplane": triplane_config,
             "pir_renderer": renderer_config}
  steps = dict(total_steps=3, log_every=1, checkpoint_every=3, eval_every=3, image_every=3)
  ctx = api.MainContext(
      workdir=str(tmp_path), variant="tiny", corpus_root=dataset64, identity="id0",
      artefacts={"syncnet_workdir": experts["syncnet"],
                 "face_regressor_workdir": experts["regressor"]},
      config=lambda stage: tiny(modules[stage], dataset64, **steps))
  assert api.get("pir").main_part.run == "talking_heads.systems.pir.main_part:run"
  report = main_part.run(ctx)
  assert [t["stage"] for t in report.trainings] == list(modules)
  assert all(t["steps"] == 3 for t in report.trainings)
  made = report.summary["video"]
  assert made["audio_clip"] == "clip006" and made["frames"] == 14
  assert os.path.getsize(tmp_path / made["video"]) > 0
  assert set(report.summary["tables"]) == {"test", "heldout_voice"}
  assert _finite(report.summary["tables"]["test"]["pir"]["lmd"])
  [pair] = report.videos
  assert pair.generated == made["video"] and os.path.isfile(tmp_path / pair.truth)
  # Tables 1/2 reach experiments.reproduce from the part's folder.
  markdown, data = reproduce.reproduce("pir", str(tmp_path / "pir"))
  measured = {t["table_id"]: t["measured_rows"] for t in data["tables"]}
  assert {r["method"] for r in measured["table_1_hdtf"]} == {"Ground Truth", "PIR (Ours)"}
  # A rerun keeps the finished trainings and tables.
  again = main_part.run(ctx)
  assert again.summary == report.summary
