"""The numeric tables of the five reimplemented papers as data, and our measurements set beside them.

`<paper>.json` in this folder holds every numeric result table of one paper (ladtalk, fd2talk, dae_talker, pir,
radio), transcribed from the plain-text papers in `shared/papers/` and checked against the transcriptions in
`shared/reference/systems/`; where the two disagreed the paper won (see each table's `notes`). A paper table
with several datasets side by side is stored as one entry per dataset (`table_1_hdtf`, `table_1_vox`, ...).
`side_by_side` renders a paper table with the rows we measured and the rows or columns we cannot produce.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from typing import Any, Sequence

_DIR = pathlib.Path(__file__).resolve().parent
BETTER = ("higher", "lower", "none")
_ARROWS = {"higher": " ↑", "lower": " ↓", "none": ""}
MISSING = "—"


@dataclasses.dataclass(frozen=True)
class Column:
  name: str
  unit: str
  better: str  # one of BETTER


@dataclasses.dataclass(frozen=True)
class Row:
  method: str
  values: dict[str, float]  # column name -> value; a cell the paper leaves empty is absent
  ours_in_paper: bool  # the paper's own method or one of its ablation variants


@dataclasses.dataclass(frozen=True)
class PaperTable:
  paper: str
  id: str
  caption: str
  dataset: str
  columns: tuple[Column, ...]
  rows: tuple[Row, ...]
  notes: str

  @property
  def column_names(self) -> list[str]:
    return [c.name for c in self.columns]


@dataclasses.dataclass(frozen=True)
class MeasuredRow:
  """One row we measured, in the paper table's column names."""
  method: str
  values: dict[str, float]
  label: str  # scale, data, steps and machine, e.g. "demo: 64 px synthetic corpus id01, 8.6k steps, CPU 2 cores"
  source: str  # the result file or command the values come from


@dataclasses.dataclass(frozen=True)
class Unavailable:
  """A paper row or column we cannot produce, and why."""
  method_or_column: str
  reason: str


def papers() -> list[str]:
  """The papers with a table file, sorted."""
  return sorted(p.stem for p in _DIR.glob("*.json"))


def _table(paper: str, data: dict[str, Any]) -> PaperTable:
  columns = tuple(Column(c["name"], c["unit"], c["better"]) for c in data["columns"])
  names = {c.name for c in columns}
  for column in columns:
    if column.better not in BETTER:
      raise ValueError(f"{paper} {data['id']}: column {column.name!r} has better={column.better!r}, not one of {BETTER}")
  rows = []
  for r in data["rows"]:
    for name, value in r["values"].items():
      if name not in names:
        raise ValueError(f"{paper} {data['id']}: row {r['method']!r} has a value for undeclared column {name!r}")
      if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{paper} {data['id']}: row {r['method']!r} column {name!r} is not a finite number: {value!r}")
    rows.append(Row(r["method"], dict(r["values"]), r["ours_in_paper"]))
  return PaperTable(paper, data["id"], data["caption"], data["dataset"], columns, tuple(rows), data["notes"])


def load(paper: str) -> list[PaperTable]:
  """All tables of `paper`, in the paper's order."""
  if paper not in papers():
    raise ValueError(f"unknown paper {paper!r}; known papers: {', '.join(papers())}")
  data = json.loads((_DIR / f"{paper}.json").read_text())
  tables = [_table(paper, t) for t in data["tables"]]
  ids = [t.id for t in tables]
  if len(set(ids)) != len(ids):
    raise ValueError(f"{paper}: duplicate table ids in {ids}")
  return tables


def get(paper: str, table_id: str) -> PaperTable:
  """One table of `paper` by id (e.g. "table_1_hdtf")."""
  tables = {t.id: t for t in load(paper)}
  if table_id not in tables:
    raise KeyError(f"{paper} has no table {table_id!r}; its tables: {', '.join(tables)}")
  return tables[table_id]


def _check_measured(table: PaperTable, measured: Sequence[MeasuredRow]) -> None:
  names = set(table.column_names)
  for row in measured:
    for name, value in row.values.items():
      if name not in names:
        raise ValueError(f"measured row {row.method!r} has column {name!r}, which {table.paper} {table.id} lacks; "
                         f"its columns: {', '.join(table.column_names)}")
      if not math.isfinite(value):
        raise ValueError(f"measured row {row.method!r} column {name!r} is not finite: {value!r}")


def _cell(text: str) -> str:
  return text.replace("|", "\\|").replace("\n", " ")


def _number(value: float) -> str:
  return str(value) if isinstance(value, int) else f"{value:.6g}"


def side_by_side(table: PaperTable, measured: Sequence[MeasuredRow], unavailable: Sequence[Unavailable] = ()) -> str:
  """A markdown section: the paper's rows, then ours, in the paper's columns; then what we cannot produce."""
  _check_measured(table, measured)
  headers = [f"{c.name} ({c.unit}){_ARROWS[c.better]}" if c.unit else f"{c.name}{_ARROWS[c.better]}"
             for c in table.columns]
  lines = [f"### {table.paper} {table.id}: {table.caption}", "", f"Dataset: {table.dataset}", "",
           "| source | method | " + " | ".join(_cell(h) for h in headers) + " |",
           "|---|---|" + "---|" * len(headers)]
  body = [("paper", r.method, r.values) for r in table.rows]
  body += [(f"ours: {r.label}", r.method, r.values) for r in measured]
  for source, method, values in body:
    cells = [_number(values[n]) if n in values else MISSING for n in table.column_names]
    lines.append(f"| {_cell(source)} | {_cell(method)} | " + " | ".join(cells) + " |")
  if table.notes:
    lines += ["", f"Paper notes: {table.notes}"]
  if unavailable:
    lines += ["", "Not reproduced:"] + [f"- {u.method_or_column}: {u.reason}" for u in unavailable]
  return "\n".join(lines) + "\n"


def to_json(table: PaperTable, measured: Sequence[MeasuredRow], unavailable: Sequence[Unavailable] = ()) -> dict:
  """The content of `side_by_side` as JSON-serialisable data."""
  _check_measured(table, measured)
  return {
      "paper": table.paper,
      "table_id": table.id,
      "caption": table.caption,
      "dataset": table.dataset,
      "notes": table.notes,
      "columns": [dataclasses.asdict(c) for c in table.columns],
      "paper_rows": [dataclasses.asdict(r) for r in table.rows],
      "measured_rows": [{**dataclasses.asdict(r), "values": {k: float(v) for k, v in r.values.items()}}
                        for r in measured],
      "unavailable": [dataclasses.asdict(u) for u in unavailable],
  }
