r"""The independent expert's quality against training step: per-window vs whole-clip evidence.

  python -m experiments.experts.lse_check_by_step --sync_eval_workdir=runs/main/experts/syncnet_eval \
      --dataset=runs/main/corpus --out=experiments/results/syncnet_eval_demo/lse_check_by_step.json

For every checkpoint a `syncnet_eval` workdir keeps: the stage's held-out per-window offset
accuracy (its eval, read from metrics.jsonl) beside the LSE evaluator check of that checkpoint
(`sync_evaluation.run`: planted shifts -6..6 recovered on whole clips, LSE-C in sync over LSE-C
with foreign audio) on test, held-out identity and held-out voice. This is the evidence behind
`sync_expert.MIN_OFFSET_ACCURACY_OVER_CHANCE`, the bar an independent expert must pass to score.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

from absl import app, flags

from talking_heads.io import html_report
from talking_heads.io import reports
from talking_heads.systems.experts import sync_evaluation
from talking_heads.systems.experts import sync_expert
from talking_heads.training import restore

FLAGS = flags.FLAGS
SPLITS = ["test", "heldout_identity", "heldout_voice"]


def rows_by_step(workdir: str, dataset: str, splits: list[str] = SPLITS, max_shift: int = 6,
                 max_clips: int = 0) -> list[dict[str, Any]]:
  """One row per kept checkpoint: its eval accuracy (and over chance) and its check per split."""
  _, evaluation = html_report.read_metrics(str(pathlib.Path(workdir) / "metrics.jsonl"))
  accuracy = {r["step"]: r["eval/offset_accuracy"] for r in evaluation
              if "eval/offset_accuracy" in r}
  folder = pathlib.Path(workdir) / "checkpoints"
  steps = sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []
  if not steps:
    raise FileNotFoundError(f"{workdir}: no checkpoints")
  chance = 1.0 / (2 * int(restore.load_config(workdir).data.max_offset) + 1)
  rows = []
  for step in steps:
    expert = sync_expert.independent_expert(workdir, step=step)
    check = sync_evaluation.run(expert, expert.name, dataset, splits, max_shift, max_clips)
    rows.append({"step": step, "eval_offset_accuracy": accuracy.get(step),
                 "over_chance": accuracy[step] / chance if step in accuracy else None,
                 **{f"{split}_shift_exact_percent": r["shift_exact_percent"]
                    for split, r in check["splits"].items()},
                 **{f"{split}_lse_c_ratio": r["lse_c_ratio"] for split, r in check["splits"].items()}})
  return rows


def markdown(results: dict[str, Any]) -> str:
  splits = [k[:-len("_lse_c_ratio")] for k in results["rows"][0] if k.endswith("_lse_c_ratio")]
  lines = [f"Command: `{results['command']}`  ", f"Machine: {results['machine']}  ",
           f"Duration: {results['duration_s']} s", "",
           "| step | held-out offset accuracy (x chance) | "
           + " | ".join(f"{s}: shifts recovered (%) / LSE-C ratio" for s in splits) + " |",
           "|---|---|" + "---|" * len(splits)]
  for r in results["rows"]:
    accuracy = ("-" if r["eval_offset_accuracy"] is None else
                f"{r['eval_offset_accuracy']:.3f} ({r['over_chance']:.1f}x)")
    cells = [f"{r[f'{s}_shift_exact_percent']:.1f} / {r[f'{s}_lse_c_ratio']:.2f}" for s in splits]
    lines.append(f"| {r['step']} | {accuracy} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def define_flags() -> None:
  flags.DEFINE_string("sync_eval_workdir", None, "A `syncnet_eval` workdir.")
  flags.DEFINE_string("dataset", None, "The dataset (corpus) root.")
  flags.DEFINE_integer("max_clips", 0, "Clips per split (0: all).")
  flags.DEFINE_string("out", None, "Output JSON (a markdown table is written beside it).")


def main(argv):
  del argv
  start = time.time()
  rows = rows_by_step(FLAGS.sync_eval_workdir, FLAGS.dataset, max_clips=FLAGS.max_clips)
  results = {"workdir": FLAGS.sync_eval_workdir, "rows": rows, "command": reports.command_line(),
             "machine": reports.machine_description(), "duration_s": round(time.time() - start, 1)}
  reports.write_results(FLAGS.out, results, markdown(results))
  print(markdown(results))


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["sync_eval_workdir", "dataset", "out"])
  app.run(main)
