"""The experts' part of the main job: train the lip-sync expert, check the LSE evaluator with it.

Publishes `syncnet_workdir` for the systems trained against it or scored with it. The face
regressor trains in the parts that use it (its cost belongs to their tables).
"""

from __future__ import annotations

import os
from typing import Any

from talking_heads.io import reports
from talking_heads.systems import main_part
from talking_heads.systems.api import MainContext, PartReport
from talking_heads.systems.experts import sync_evaluation
from talking_heads.systems.experts import sync_expert

SPLITS = ("test", "heldout_identity", "heldout_voice")


def run(ctx: MainContext) -> PartReport:
  out = ctx.system_dir("experts")
  syncnet_workdir = os.path.join(out, "syncnet")
  training = main_part.train(ctx, "lip-sync expert (SyncNet_color)", ctx.config("syncnet"),
                             syncnet_workdir, span=(0.0, 0.9))
  expert = sync_expert.lse_expert(syncnet_workdir)
  path = os.path.join(out, "sync_eval.json")
  sources = {"syncnet": expert.source}
  results = main_part.load_cached(path, sources)
  if results is None:
    ctx.progress(0.9, "LSE evaluator check")
    results = sync_evaluation.run(
        expert, "SyncNet_color trained by this job (not comparable with papers)", ctx.corpus_root,
        list(SPLITS), max_shift=6, max_clips=0 if ctx.variant == "demo" else 2)
    main_part.save_cached(path, results, sources)
    with open(os.path.join(out, "sync_eval.md"), "w") as f:
      f.write(sync_evaluation.markdown(reports.to_json(results)))
  summary = {split: {"clips": r["num_clips"],
                     "shift_exact_percent": round(r["shift_exact_percent"], 1),
                     "lse_c_in_sync": round(r["in_sync"]["lse_c"], 3),
                     "lse_c_mismatched": round(r["mismatched"]["lse_c"], 3),
                     "lse_c_ratio": round(r["lse_c_ratio"], 2),
                     "frames_per_second": round(r["frames_per_second"], 1)}
             for split, r in results["splits"].items()}
  return PartReport(markdown=_markdown(training, summary), summary=summary,
                    artefacts={"syncnet_workdir": syncnet_workdir}, trainings=[training])


def _markdown(training: dict[str, Any], summary: dict[str, Any]) -> str:
  lines = main_part.training_table([training])
  lines += ["", "Lip-sync evaluation with the trained expert (planted shifts -6..6 frames; details "
            "in experts/sync_eval.md):", "",
            "| split | clips | shifts recovered exactly (%) | LSE-C in sync | LSE-C other audio | "
            "ratio | frames/s |", "|---|---|---|---|---|---|---|"]
  for split, r in summary.items():
    lines.append(f"| {split} | {r['clips']} | {r['shift_exact_percent']} | {r['lse_c_in_sync']} | "
                 f"{r['lse_c_mismatched']} | {r['lse_c_ratio']} | {r['frames_per_second']} |")
  return "\n".join(lines) + "\n"
