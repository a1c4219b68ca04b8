"""FD2Talk's tables on the tiny trained workdirs: every Table 1 column and stage 1's checks are
finite numbers for the ground truth and the model (an ablation row from its own workdir too),
FID is reported unavailable without Inception weights, and `experiments.reproduce` sets the rows
beside the paper's."""

import numpy as np
import pytest

from experiments import reproduce
from experiments.configs.experts import syncnet as syncnet_config
from talking_heads.systems import main_part
from talking_heads.systems.fd2talk import evaluation
from talking_heads.training import state_workdirs as workdirs


def test_tables_are_finite_and_reach_the_paper_tables(dataset, motion_workdirs, unet_runs,
                                                      tmp_path):
  full = evaluation.Workdirs(motion_workdirs["expression"], motion_workdirs["pose"], unet_runs[3])
  results = evaluation.run(
      dataset, full, syncnet_workdir=workdirs.write_state_workdir(tmp_path / "syncnet",
                                                               syncnet_config.get_config("tiny")),
      no_sync_expression_workdir=motion_workdirs["expression"], sets=("test",), clips=1,
      frames=8, ddim_steps=2, seeds=2, batch_size=8)
  rows = results["sets"]["test"]["rows"]
  assert set(rows) == {"Ground truth", "FD2Talk", "w/o L_sync", evaluation.TRUE_EXPRESSION_ROW,
                       evaluation.AUTOENCODER_ROW}
  # Stage 2 alone: the same UNet and seed on the true expression makes other frames, and has no
  # stage-1 checks.
  alone = rows[evaluation.TRUE_EXPRESSION_ROW]
  assert np.isfinite(alone["psnr"]) and alone["psnr"] != rows["FD2Talk"]["psnr"]
  assert "expression_mse" not in alone
  # Stage 2a alone: the autoencoder's reconstructions of the true frames, closer to them than a
  # 2-step UNet sample.
  reconstruction = rows[evaluation.AUTOENCODER_ROW]
  assert reconstruction["psnr"] > rows["FD2Talk"]["psnr"] and np.isfinite(reconstruction["lse_c"])
  assert set(results["not_run"]) == {"Single Diffusion Transformer",
                                     "Concatenate UNet Conditions", "w/o alignment mask"}
  for key in ("lse_c", "lse_d", "diversity"):
    assert np.isfinite(rows["Ground truth"][key]), key
  for name in ("FD2Talk", "w/o L_sync"):
    for key in ("lse_c", "lse_d", "psnr", "ssim_wang", "diversity", "expression_mse",
                "mouth_opening_corr", "pose_seed_std"):
      assert np.isfinite(rows[name][key]), (name, key)
    assert rows[name]["fid"].startswith("unavailable: no Inception weights")
    assert rows[name]["pose_seed_std"] > 0          # two seeds, two head motions
    assert -1 <= rows[name]["mouth_opening_corr"] <= 1
  # The same networks and seed make the same row (the ablation row reuses the full DiT here).
  assert rows["w/o L_sync"]["psnr"] == rows["FD2Talk"]["psnr"]
  beat = rows["FD2Talk"]["beat_align"]
  assert (isinstance(beat, float) and 0 <= beat <= 1) or beat.startswith("unavailable")
  assert "| test (1 clips) | FD2Talk |" in evaluation.markdown(results)

  # As the main job keeps them: keyed by the checkpoints they came from.
  results["machine"] = "test"
  main_part.save_cached(str(tmp_path / "fd2talk_tables.json"), results, {"fd2talk_unet": "x"})
  tables = {t["table"]: t for t in evaluation.paper_rows(str(tmp_path))}
  assert "the heldout_voice set was not evaluated" in str(tables["table_1_hdtf"]["unavailable"])
  table_3 = {r["method"]: r["values"] for r in tables["table_3"]["measured"]}
  assert set(table_3) == {"w/o L_sync", "Full (FD2Talk)"}
  assert set(table_3["Full (FD2Talk)"]) == {"LSE-C"}
  missing = {u["method_or_column"] for u in tables["table_2"]["unavailable"]}
  assert {"Single Diffusion Transformer", "Concatenate UNet Conditions"} <= missing
  table_2 = {r["method"]: r["values"] for r in tables["table_2"]["measured"]}
  assert set(table_2["Full (FD2Talk)"]) >= {"LSE-C", "Diversity", "PSNR", "SSIM"}
  markdown, data = reproduce.reproduce("fd2talk", str(tmp_path))
  assert data["system"] == "fd2talk" and "Full (FD2Talk)" in markdown


def test_a_missing_set_is_named(dataset):
  with pytest.raises(ValueError, match="no clips in split 'heldout_voice'"):
    evaluation.load_clips(dataset, "heldout_voice", 1, 8, 32)
