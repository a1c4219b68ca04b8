r"""Checks the LSE evaluator on a dataset (`talking_heads.systems.experts.sync_evaluation`).

  python -m experiments.experts.sync_eval --syncnet-workdir=runs/syncnet_demo \
      --dataset=/tmp/demo_corpus --split=test --out=runs/syncnet_demo/sync_eval.json

The expert is the official S when `--weights-dir` has syncnet_v2.model, else the independent
expert of `--sync-eval-workdir` (stage syncnet_eval), else the SyncNet_color trained in
`--syncnet-workdir`. Writes JSON (`--out`, default sync_eval.json) and a markdown table beside
it (same stem, .md) with the command, machine and duration.
"""

from __future__ import annotations

import json
import pathlib

from absl import app, flags

from experiments import evaluate
from talking_heads.io import reports
from talking_heads.systems.experts import sync_evaluation

DEFAULT_OUT = "sync_eval.json"

_DATASET = flags.DEFINE_string("dataset", None, "Dataset root (the dataset format).")
_SPLIT = flags.DEFINE_string("split", "test", "Main split to evaluate.")
_HELDOUT = flags.DEFINE_list("heldout-splits", ["heldout_identity", "heldout_voice"],
                             "Further splits, reported separately (skipped when absent).")
_MAX_SHIFT = flags.DEFINE_integer("max-shift", 6, "Shifts k = -max_shift .. max_shift frames.")
_MAX_CLIPS = flags.DEFINE_integer("max-clips", 0, "Clips per split (0: all).")



def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _DATASET.value:
    raise app.UsageError("--dataset is required")
  expert, expert_text = evaluate.load_sync_expert(evaluate.WEIGHTS_DIR.value,
                                                  evaluate.SYNCNET_WORKDIR.value,
                                                  evaluate.SYNC_EVAL_WORKDIR.value)
  if expert is None:
    raise app.UsageError(expert_text)
  splits = [_SPLIT.value] + [s for s in _HELDOUT.value if s and s != _SPLIT.value]
  results = reports.to_json(sync_evaluation.run(expert, expert_text, _DATASET.value, splits, _MAX_SHIFT.value,
                                 _MAX_CLIPS.value))
  report = sync_evaluation.markdown(results)
  print(report)
  # --out is shared with experiments.evaluate, whose default names its own file.
  out = evaluate.OUT.value if flags.FLAGS["out"].present else DEFAULT_OUT
  if out:
    path = pathlib.Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    path.with_suffix(".md").write_text(report)
    print(f"wrote {path} and {path.with_suffix('.md')}")


if __name__ == "__main__":
  app.run(main)
