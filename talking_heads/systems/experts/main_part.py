"""The experts' part of the main job: train the two lip-sync experts, check the LSE evaluator
with each.

The colour expert (SyncNet_color, stage `syncnet`) is what Wav2Lip trains against; the
independent expert (syncnet_python's S architecture, stage `syncnet_eval`, its own seed, data order
and inputs) scores LSE in the systems' evaluations, so that no generator is scored by the judge it
trained against. Publishes `syncnet_workdir` and `sync_eval_workdir`. The face regressor trains in
the parts that use it (its cost belongs to their tables).
"""

from __future__ import annotations

import os
from typing import Any

from talking_heads.io import reports
from talking_heads.metrics import sync_experts
from talking_heads.systems import main_part
from talking_heads.systems.api import MainContext, PartReport
from talking_heads.systems.experts import sync_evaluation
from talking_heads.systems.experts import sync_expert

SPLITS = ("test", "heldout_identity", "heldout_voice")
# (file stem, what the expert is): the colour expert's check keeps its historical name.
CHECKS = {"colour": ("sync_eval", "SyncNet_color trained by this job, the expert Wav2Lip trains "
                                  "against (not comparable with papers)"),
          "independent": ("sync_eval_independent", "syncnet_python's S architecture trained by "
                          "this job, independent of the generators (not comparable with papers)")}


def _check(ctx: MainContext, out: str, name: str, expert: sync_experts.SyncExpert,
           progress: float) -> dict[str, Any]:
  """The planted-offset / foreign-audio check of one expert (cached by its source)."""
  stem, text = CHECKS[name]
  path = os.path.join(out, f"{stem}.json")
  sources = {name: expert.source}
  results = main_part.load_cached(path, sources)
  if results is None:
    ctx.progress(progress, f"LSE evaluator check ({name} expert)")
    results = sync_evaluation.run(expert, text, ctx.corpus_root, list(SPLITS), max_shift=6,
                                  max_clips=0 if ctx.variant == "demo" else 2)
    main_part.save_cached(path, results, sources)
    with open(os.path.join(out, f"{stem}.md"), "w") as f:
      f.write(sync_evaluation.markdown(reports.to_json(results)))
  return {split: {"clips": r["num_clips"],
                  "shift_exact_percent": round(r["shift_exact_percent"], 1),
                  "lse_c_in_sync": round(r["in_sync"]["lse_c"], 3),
                  "lse_c_mismatched": round(r["mismatched"]["lse_c"], 3),
                  "lse_c_ratio": round(r["lse_c_ratio"], 2),
                  "frames_per_second": round(r["frames_per_second"], 1)}
          for split, r in results["splits"].items()}


def run(ctx: MainContext) -> PartReport:
  out = ctx.system_dir("experts")
  syncnet_workdir = os.path.join(out, "syncnet")
  sync_eval_workdir = os.path.join(out, "syncnet_eval")
  trainings = [
      main_part.train(ctx, "lip-sync training expert (SyncNet_color)", ctx.config("syncnet"),
                      syncnet_workdir, span=(0.0, 0.6)),
      main_part.train(ctx, "independent LSE expert (syncnet_python S architecture)",
                      ctx.config("syncnet_eval"), sync_eval_workdir, span=(0.6, 0.8))]
  summary = {
      "colour": _check(ctx, out, "colour", sync_expert.lse_expert(syncnet_workdir), 0.8),
      "independent": _check(ctx, out, "independent",
                            sync_expert.independent_expert(sync_eval_workdir), 0.9)}
  return PartReport(markdown=_markdown(trainings, summary), summary=summary,
                    artefacts={"syncnet_workdir": syncnet_workdir,
                               "sync_eval_workdir": sync_eval_workdir},
                    trainings=trainings)


def _markdown(trainings: list[dict[str, Any]], summary: dict[str, Any]) -> str:
  lines = main_part.training_table(trainings)
  for name, title in (("colour", "the colour expert (Wav2Lip trains against it; details in "
                                 "experts/sync_eval.md)"),
                      ("independent", "the independent expert (it scores LSE; details in "
                                      "experts/sync_eval_independent.md)")):
    lines += ["", f"Lip-sync evaluation with {title}, planted shifts -6..6 frames:", "",
              "| split | clips | shifts recovered exactly (%) | LSE-C in sync | LSE-C other audio | "
              "ratio | frames/s |", "|---|---|---|---|---|---|---|"]
    for split, r in summary[name].items():
      lines.append(f"| {split} | {r['clips']} | {r['shift_exact_percent']} | {r['lse_c_in_sync']} "
                   f"| {r['lse_c_mismatched']} | {r['lse_c_ratio']} | {r['frames_per_second']} |")
  return "\n".join(lines) + "\n"
