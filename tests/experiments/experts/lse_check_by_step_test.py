"""The check by step scores every kept checkpoint with the LSE evaluator check and pairs it with
that step's held-out offset accuracy."""

import pytest

from experiments.configs.experts import syncnet_eval as syncnet_eval_config
from experiments.experts import lse_check_by_step
from talking_heads.io import dataset as dataset_lib
from talking_heads.systems.experts import sync_evaluation
from talking_heads.systems.experts import sync_expert
from talking_heads.training import loop
from tests.systems.experts.syncnet_eval_test import dataset  # noqa: F401  pylint: disable=unused-import


def test_rows_pair_each_checkpoint_with_its_accuracy(dataset, tmp_path):  # noqa: F811
  config = syncnet_eval_config.get_config(
      "tiny,total_steps=4,eval_every=2,checkpoint_every=2,image_every=0")
  config.data.root, config.progress_bar = dataset, False
  result = loop.train_and_evaluate(config, str(tmp_path))
  rows = lse_check_by_step.rows_by_step(str(tmp_path), dataset, ["val"], max_shift=2)
  assert [r["step"] for r in rows] == [2, 4]
  assert [r["eval_offset_accuracy"] for r in rows] == pytest.approx(
      [e["offset_accuracy"] for e in result.eval_history])
  assert rows[1]["over_chance"] == pytest.approx(rows[1]["eval_offset_accuracy"] * 7)   # 7 offsets
  clips = dataset_lib.Dataset(dataset).clips("val")
  newest = sync_evaluation.evaluate_split(sync_expert.independent_expert(str(tmp_path)), clips, 2)
  assert rows[1]["val_shift_exact_percent"] == newest["shift_exact_percent"]
  table = lse_check_by_step.markdown({"rows": rows, "command": "c", "machine": "m", "duration_s": 1})
  assert "| 4 |" in table and "val: shifts recovered" in table
