"""Wav2Lip's curves score every kept checkpoint: the last row is the newest checkpoint's videos
scored directly, the true clips are the reference row, and the trainer's sync curve is read."""

import numpy as np

from experiments.ladtalk import wav2lip_curves
from talking_heads.metrics import suite
from talking_heads.systems.experts import sync_expert
from talking_heads.systems.ladtalk import inference
from talking_heads.training import loop
from tests.systems.ladtalk.wav2lip_test import dataset, expert_workdir, tiny_config  # noqa: F401  pylint: disable=unused-import


def test_every_checkpoint_is_scored(dataset, expert_workdir, tmp_path):  # noqa: F811
  workdir = str(tmp_path / "w2l")
  config = tiny_config(dataset, expert_workdir, total_steps=4, eval_every=2, image_every=0,
                       checkpoint_every=2, log_every=1)
  loop.train_and_evaluate(config, workdir)
  expert = sync_expert.lse_expert(expert_workdir)
  results = wav2lip_curves.curves(workdir, dataset, "id0", ["val"], 1, expert)["val"]
  assert [r["step"] for r in results["steps"]] == [2, 4]
  clip = wav2lip_curves.split_clips(dataset, "id0", "val", 1)
  scorer = suite.VideoScorer(("psnr", "psnr_lower_half", "lse"), expert=expert, sliding=True)
  newest = wav2lip_curves.score_clips(scorer, clip, inference.load_wav2lip(workdir))
  for key in wav2lip_curves.METRICS:
    np.testing.assert_allclose(results["steps"][-1][key], newest[key], rtol=1e-6)
  assert results["steps"][0]["psnr"] != results["steps"][1]["psnr"]   # two different networks
  assert results["ground_truth"]["psnr"] == np.inf                    # the true clip itself
  trainer = wav2lip_curves.trainer_sync_curve(workdir)
  assert [r["step"] for r in trainer] == [2, 4]
  assert all(np.isfinite(r["sync_loss"]) and np.isfinite(r["sync_loss_truth"]) for r in trainer)
  out = tmp_path / "curves.json"
  report = {"wav2lip_workdir": workdir, "identity": "id0", "lse_expert": "colour",
            "splits": {"val": results}, "trainer_eval": trainer, "command": "c", "machine": "m",
            "duration_s": 0.0}
  assert "| val (1 clips) | 4 |" in wav2lip_curves.markdown(report)
  wav2lip_curves.plot(report, out.with_suffix(".png"))
  assert out.with_suffix(".png").stat().st_size > 0
