r"""A paper's tables with our measured rows beside the paper's, and what we cannot reproduce.

  python -m experiments.reproduce --paper=ladtalk
  python -m experiments.reproduce --paper=dae_talker --results=experiments/results/dae_talker_demo \
      --out=/tmp/reproduce

The system whose `SYSTEM.paper` is `--paper` (`talking_heads.systems.api`) turns the results in
`--results` (default: `runs/main/<system>` when the main job wrote it, else the committed
`experiments/results/<system>_demo`) into rows of the paper's tables (`System.reproduce`, see
`talking_heads.systems.reproduction`). Every table of the paper (`experiments.paper_tables`) is
printed with the paper's rows, ours (labelled with scale, data, steps and machine, and the file
they come from) and the rows or columns we cannot produce with the reason; a paper without a
system lists every table as not implemented yet. Writes `reproduce_<paper>.md`, `.json` and
`.html` to `--out` (default: `runs/reproduce`, so the committed results stay as they were
measured). The HTML page (`talking_heads.io.html_report`, links relative to `--out`) sets the tables
beside the results' videos, mouth crops and training curves: those of the main job's part when
`--results` is a main-job folder (its report.json beside it), else the mp4s, PNGs and
metrics.jsonl-style logs found in `--results`. `reproduce(paper, results_dir)` returns the
markdown and JSON (for `experiments.main`).
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any

from absl import app, flags

from experiments import paper_tables
from talking_heads.io import html_report
from talking_heads.io import reports
from talking_heads.systems import api
from talking_heads.systems import main_part

FLAGS = flags.FLAGS

NOT_IMPLEMENTED = "not implemented yet (no system in talking_heads.systems declares this paper)"


def system_for(paper: str) -> api.System | None:
  """The system reproducing `paper`, or None."""
  return next((s for s in api.systems().values() if s.paper == paper), None)


def default_results(paper: str) -> str | None:
  """`runs/main/<system>` when it exists, else `experiments/results/<system>_demo`; None without a
  system."""
  system = system_for(paper)
  if system is None:
    return None
  main = os.path.join("runs", "main", system.name)
  return main if os.path.isdir(main) else os.path.join("experiments", "results",
                                                        f"{system.name}_demo")


Rows = tuple[list[paper_tables.MeasuredRow], list[paper_tables.Unavailable]]


def _measured(system: api.System, results_dir: str) -> dict[str, Rows]:
  """Table id -> (our rows, what we cannot produce), from the system's `reproduce` function."""
  by_table: dict[str, Rows] = {}
  for entry in api.resolve(system.reproduce)(results_dir):
    rows, missing = by_table.setdefault(entry["table"], ([], []))
    rows += [paper_tables.MeasuredRow(**r) for r in entry["measured"]]
    missing += [paper_tables.Unavailable(**u) for u in entry["unavailable"]]
  return by_table


def reproduce(paper: str, results_dir: str | None = None) -> tuple[str, dict[str, Any]]:
  """(markdown, JSON) of every table of `paper` with our rows from `results_dir` (default:
  `default_results`)."""
  tables = paper_tables.load(paper)
  system = system_for(paper)
  if system is None or system.reproduce is None:
    by_table, fallback, name = {}, NOT_IMPLEMENTED, None
  else:
    results_dir = results_dir or default_results(paper)
    by_table = _measured(system, results_dir)
    fallback, name = f"not reported by {system.reproduce}", system.name
    unknown = set(by_table) - {t.id for t in tables}
    if unknown:
      raise ValueError(f"{system.reproduce} returned tables {sorted(unknown)} that {paper} lacks")
  lines = [f"# {paper}: paper tables and our measurements", "",
           f"System: {name or 'none'}; results: {results_dir}", "",
           "| table | our rows | not reproduced |", "|---|---|---|"]
  sections, data = [], []
  for table in tables:
    rows, missing = by_table.get(table.id, ([], []))
    if not rows and not missing:
      missing = [paper_tables.Unavailable("whole table", fallback)]
    lines.append(f"| {table.id} | {len(rows)} | "
                 + "; ".join(u.method_or_column for u in missing).replace("|", "\\|") + " |")
    sections.append(paper_tables.side_by_side(table, rows, missing))
    data.append(paper_tables.to_json(table, rows, missing))
  markdown = "\n".join(lines + [""] + sections)
  return markdown, {"paper": paper, "system": name, "results_dir": results_dir, "tables": data}


def html_sections(data: dict[str, Any]) -> tuple[list[html_report.Section], str]:
  """(sections, the folder their paths are relative to) of the page for `reproduce`'s `data`."""
  paper, results_dir, tables = data["paper"], data["results_dir"], data["tables"]
  if results_dir is None:
    return [html_report.Section(f"{paper}: the paper's tables", paper=paper,
                                paper_tables=tables)], "."
  main_report = os.path.join(os.path.dirname(os.path.abspath(results_dir)), "report.json")
  if os.path.isfile(main_report):
    part = next((p for p in reports.read_json(main_report)["parts"]
                 if p["system"] == data["system"]), None)
    if part is not None:
      section = main_part.report_section({**part, "paper_tables": tables})
      return [section], os.path.dirname(main_report)
  found = lambda pattern: sorted(os.path.relpath(p, results_dir)
                                 for p in glob.glob(os.path.join(results_dir, pattern)))
  logs = [p for p in found("*.jsonl") if _has_steps(os.path.join(results_dir, p))]
  return [html_report.Section(
      f"{paper}: results in {results_dir}",
      markdown="\n\n".join(f"![{p}]({p})" for p in found("*.png")),
      videos=[html_report.VideoPair(p, p) for p in found("*.mp4")],
      curves=[html_report.Curves(os.path.splitext(p)[0], p) for p in logs],
      paper=paper, paper_tables=tables)], results_dir


def _has_steps(path: str) -> bool:
  """Whether a .jsonl file is a training log (records with a step)."""
  with open(path) as f:
    first = f.readline()
  try:
    return "step" in json.loads(first)
  except json.JSONDecodeError:
    return False


def define_flags() -> None:
  """The command's flags (only when run as a program: `experiments.main` imports the module)."""
  flags.DEFINE_enum("paper", None, paper_tables.papers(), "The paper whose tables to show.")
  flags.DEFINE_string("results", None, "Results folder (default: see the module doc).")
  flags.DEFINE_string("out", None, "Output folder (default: runs/reproduce).")
  flags.mark_flags_as_required(["paper"])


def main(argv):
  del argv
  paper = FLAGS.paper
  markdown, data = reproduce(paper, FLAGS.results)
  out = FLAGS.out or os.path.join("runs", "reproduce")
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, f"reproduce_{paper}.md"), "w") as f:
    f.write(markdown)
  with open(os.path.join(out, f"reproduce_{paper}.json"), "w") as f:
    json.dump(data, f, indent=2, ensure_ascii=False)
  sections, root = html_sections(data)
  html_report.write_page(os.path.join(out, f"reproduce_{paper}.html"),
                         f"{paper}: the paper's tables beside ours", sections, root,
                         intro_markdown=f"Markdown: [reproduce_{paper}.md]"
                                        f"({os.path.relpath(out, root)}/reproduce_{paper}.md)")
  print(markdown)


if __name__ == "__main__":
  define_flags()
  app.run(main)
