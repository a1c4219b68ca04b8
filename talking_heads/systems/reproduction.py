"""Helpers of the systems' `paper_rows` (`System.reproduce`): our results as paper-table rows.

A system's `paper_rows(results_dir)` returns one dict per paper table (`table`), each with the rows
we measured in the paper's column names (`measured`) and what we cannot produce and why
(`unavailable`); `python -m experiments.reproduce --paper=<paper>` sets them beside the paper's
rows. Plain dicts: the library does not import `experiments`.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

WHOLE_TABLE = "whole table"


def row(method: str, values: dict[str, Any], label: str, source: str) -> dict[str, Any]:
  """A measured row; values that are not finite numbers (e.g. "unavailable: ..." strings) are dropped."""
  kept = {k: float(v) for k, v in values.items()
          if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
  return {"method": method, "values": kept, "label": label, "source": source}


def unavailable(method_or_column: str, reason: str) -> dict[str, str]:
  return {"method_or_column": method_or_column, "reason": reason}


def table(table_id: str, measured: list[dict[str, Any]],
          missing: list[dict[str, str]]) -> dict[str, Any]:
  return {"table": table_id, "measured": measured, "unavailable": missing}


def not_produced(table_id: str, reason: str) -> dict[str, Any]:
  """A paper table without any row of ours."""
  return table(table_id, [], [unavailable(WHOLE_TABLE, reason)])


def read_json(results_dir: str, *names: str) -> tuple[str, dict[str, Any]] | None:
  """(path, content) of the first of `names` present in `results_dir`, or None."""
  for name in names:
    path = os.path.join(results_dir, name)
    if os.path.isfile(path):
      with open(path) as f:
        return path, json.load(f)
  return None


def _last_step(path: str) -> int | None:
  steps = []
  with open(path) as f:
    for line in f:
      if line.strip():
        steps.append(json.loads(line).get("step", 0))
  return max(steps) if steps else None


def stage_config(results_dir: str, stage: str, workdir: str = "") -> dict[str, Any] | None:
  """The config a stage trained with, its `steps` set to the last step it logged.

  Read from the stage's workdir (`config.json`, `metrics.jsonl`) when it is there, else from the
  copies in `results_dir` (`config_<stage>.json`, `eval_history_<stage>.jsonl` or
  `metrics_<stage>.jsonl`); `steps` falls back to the config's `total_steps`. None without config.
  """
  candidates = [(os.path.join(workdir, "config.json"), [os.path.join(workdir, "metrics.jsonl")])] \
      if workdir else []
  candidates.append((os.path.join(results_dir, f"config_{stage}.json"),
                     [os.path.join(results_dir, f"{kind}_{stage}.jsonl")
                      for kind in ("eval_history", "metrics")]))
  for config_path, logs in candidates:
    if os.path.isfile(config_path):
      with open(config_path) as f:
        config = json.load(f)
      logged = [s for s in (_last_step(p) for p in logs if os.path.isfile(p)) if s is not None]
      return {**config, "steps": logged[0] if logged else config.get("total_steps")}
  return None
