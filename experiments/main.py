r"""The main job: every system, end to end, on the built-in default data.

  bash experiments/main.sh                       # sets up .venv, then runs this with defaults
  python -m experiments.main --workdir=runs/main --variant=demo [--systems=ladtalk,dae_talker]

Parts: first the synthetic talking-face corpus (`data.synthetic`, preset = the variant) in
<workdir>/corpus with its mel features; then the main-job part of every system package
(`talking_heads.systems.api`: `SYSTEM.main_part`), each after the parts it needs (LaDTalk,
DAE-Talker and FD2Talk after the experts' lip-sync expert); a part that declares a corpus of its own
(`MainPart.corpus`, e.g. RADIO's many-identity preset) runs on that one, built in
<workdir>/corpus_<system>. `--systems` picks a subset (the parts they need
run too). Every part resumes from what an earlier launch finished (checkpoints, videos and
tables made from the same checkpoints), writes under <workdir>/<system>/, and the report
(<workdir>/report.md + report.json, with each paper's tables beside ours from
`experiments.reproduce`, and report.html: the videos beside the true clips, mouth crops, training
curves and the same tables; see `talking_heads.io.html_report`) is rewritten after every finished
part. One progress line shows the
parts done, the current part's status and its ETA. The job holds <workdir>/.lock while it runs: a
second launch on the same workdir fails at once, naming the first.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
import time
from typing import Any, Callable, Iterator

from absl import app, flags, logging

from data import synthetic
from experiments import reproduce
from experiments.logs import quiet_library_logs
from talking_heads import compilation_cache
from talking_heads.io import dataset as dataset_lib
from talking_heads.io import html_report
from talking_heads.io import reports
from talking_heads.systems import api
from talking_heads.systems import main_part
from talking_heads.training import loop, workdir_lock

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags (only when run as a program: tests import the module)."""
  flags.DEFINE_string("workdir", "runs/main", "Where every part writes its outputs.")
  flags.DEFINE_enum("variant", "demo", ["tiny", "demo"], "Config variant of every part.")
  flags.DEFINE_list("systems", [], "Systems whose parts run (default: all).")
  flags.DEFINE_integer("workers", 2, "Processes that render corpus clips.")


class JobProgress:
  """One progress line for the whole job: parts done, the current part's status and ETA.

  On a terminal the line is rewritten in place; in a log it is printed at most every
  `log_seconds`. The ETA extrapolates the part's elapsed time from its progress, or uses the
  part's declared minutes before there is any.
  """

  def __init__(self, total_parts: int, stream: Any = sys.stderr, log_seconds: float = 60.0):
    self.total, self.done, self.stream = total_parts, 0, stream
    self.tty = hasattr(stream, "isatty") and stream.isatty()
    self.log_seconds = log_seconds
    self.title, self.minutes, self.start, self.last_print = "", 0.0, 0.0, 0.0

  def start_part(self, title: str, minutes: float) -> None:
    self.title, self.minutes, self.start = title, minutes, time.perf_counter()
    self.update(0.0, "starting", force=True)

  def eta_minutes(self, fraction: float) -> float:
    elapsed = (time.perf_counter() - self.start) / 60
    if fraction > 0.02:
      return elapsed / fraction - elapsed
    return max(self.minutes - elapsed, 0.0)

  def update(self, fraction: float, status: str, force: bool = False) -> None:
    now = time.perf_counter()
    if not (self.tty or force or now - self.last_print >= self.log_seconds):
      return
    self.last_print = now
    line = (f"[main job: {self.done}/{self.total} parts done] {self.title}: {status} "
            f"({100 * fraction:.0f}%, ETA {self.eta_minutes(fraction):.0f} min)")
    self.stream.write(("\r\x1b[2K" + line) if self.tty else line + "\n")
    self.stream.flush()

  def finish_part(self) -> None:
    self.done += 1
    self.update(1.0, f"done in {(time.perf_counter() - self.start) / 60:.1f} min", force=True)
    if self.tty:
      self.stream.write("\n")


def corpus_part(workdir: str, preset: str, workers: int) -> tuple[str, dict[str, Any]]:
  root = os.path.join(workdir, "corpus")
  start = time.perf_counter()
  summary = synthetic.build_corpus(root, preset, workers=workers)   # writes the mel features too
  return root, {"clips": summary["clips"], "frames": summary["frames"],
                "audio_minutes": round(summary["audio_seconds"] / 60, 1),
                "splits": summary["splits"], "identities": summary["identities"],
                "feature_files_written": summary["features_written"],
                "seconds": round(time.perf_counter() - start, 1)}


def part_context(ctx: api.MainContext, system: api.System, part: api.MainPart,
                 workers: int) -> api.MainContext:
  """The context a part runs with: the job's, or, when the part declares its own corpus for the
  variant (`MainPart.corpus`), one on that corpus, built (or resumed) under
  <workdir>/corpus_<system>."""
  settings = dict(part.corpus.get(ctx.variant, {}))
  if not settings:
    return ctx
  preset = settings.pop("preset")
  root = os.path.join(ctx.workdir, f"corpus_{system.name}")
  ctx.progress(0.0, f"{system.name}: synthetic corpus {preset!r}")
  synthetic.build_corpus(root, preset, workers=workers, **settings)
  return dataclasses.replace(ctx, corpus_root=root, identity=default_identity(root),
                             config=lambda stage: stage_config(stage, ctx.variant, root))


def default_identity(corpus_root: str) -> str:
  """id01 when the corpus has it (the demo's), else its first painted training identity."""
  identities = sorted({c.identity for c in dataset_lib.Dataset(corpus_root).clips("train")})
  painted = [i for i in identities if i != "astronaut"] or identities
  return "id01" if "id01" in identities else painted[0]


def stage_config(stage: str, variant: str, corpus_root: str):
  """The stage's config of `variant` on the corpus: its system's declared `configs` entry, else
  `experiments/configs/<system>/<stage>.py`, the same without the stage's "<system>_" prefix
  (`configs/pir/audio2exp.py` for `pir_audio2exp`), or `configs/<stage>.py`."""
  owner = next((s for s in api.systems().values() if stage in s.stages), None)
  if owner is not None and stage in owner.configs:
    config = api.resolve(owner.configs[stage])(variant)
    config.data.root = corpus_root
    return config
  candidates = [f"experiments.configs.{owner.name}.{stage}"] if owner else []
  if owner and stage.startswith(f"{owner.name}_"):
    candidates.append(f"experiments.configs.{owner.name}.{stage[len(owner.name) + 1:]}")
  candidates.append(f"experiments.configs.{stage}")
  for name in candidates:
    try:
      module = importlib.import_module(name)
    except ModuleNotFoundError as e:
      if e.name is None or not (name == e.name or name.startswith(e.name + ".")):
        raise   # a missing import inside an existing config file
      continue
    config = module.get_config(variant)
    config.data.root = corpus_root
    return config
  raise FileNotFoundError(f"no config file for stage {stage!r}: expected one of "
                          + ", ".join(n.replace(".", "/") + ".py" for n in candidates))


def selected_parts(names: list[str]) -> list[tuple[api.System, api.MainPart]]:
  """The parts of `names` (all when empty) and of the systems they run after, in order."""
  parts = api.main_parts()
  if not names:
    return parts
  known = {s.name for s, _ in parts}
  unknown = sorted(set(names) - known)
  if unknown:
    raise app.UsageError(f"--systems: no main-job part for {unknown}; known: {sorted(known)}")
  wanted = set(names)
  for system, part in reversed(parts):
    if system.name in wanted:
      wanted.update(part.after)
  return [(s, p) for s, p in parts if s.name in wanted]


def write_report(workdir: str, corpus: dict[str, Any], sections: list[dict[str, Any]],
                 pending: list[str]) -> str:
  """report.md, report.json and report.html from the finished parts (rewritten after each)."""
  overview = [f"Corpus: {corpus['clips']} clips, {corpus['frames']} frames, "
              f"{corpus['audio_minutes']} min of speech, {corpus['identities']} identities; "
              f"splits {corpus['splits']} ({corpus['seconds']} s this run).", "",
              "| part | time (min) |", "|---|---|"]
  overview += [f"| {s['title']} | {s['minutes']:.1f} |" for s in sections]
  overview += [f"| {title} | pending |" for title in pending]
  lines = ["# talking_heads main job report", ""] + overview
  for s in sections:
    lines += ["", f"## {s['title']}", "", s["markdown"]]
    if s.get("paper_markdown"):
      lines += [f"### {s['paper']}: the paper's tables beside ours", "", s["paper_markdown"]]
    for t in s["trainings"]:
      if t.get("image"):
        lines += [f"![{t['part']}]({t['image']})", ""]
  path = os.path.join(workdir, "report.md")
  with open(path + ".tmp", "w") as f:
    f.write("\n".join(lines) + "\n")
  os.replace(path + ".tmp", path)
  with open(os.path.join(workdir, "report.json.tmp"), "w") as f:
    json.dump(reports.to_json({"corpus": corpus, "parts": sections, "pending": pending}), f,
              indent=2)
  os.replace(os.path.join(workdir, "report.json.tmp"), os.path.join(workdir, "report.json"))
  start = time.perf_counter()
  links = "Markdown: [report.md](report.md), data: [report.json](report.json)."
  html_report.write_page(os.path.join(workdir, "report.html"), "talking_heads main job report",
                         [main_part.report_section(s) for s in sections], workdir,
                         intro_markdown="\n".join(overview + ["", links]))
  logging.info("report.html written in %.2f s", time.perf_counter() - start)
  return path


def main(argv):
  del argv
  quiet_library_logs()
  compilation_cache.enable()
  workdir = os.path.abspath(FLAGS.workdir)
  os.makedirs(workdir, exist_ok=True)
  try:
    with loop.signals_interrupt(), workdir_lock.hold(workdir):
      run_job(workdir, FLAGS.variant, FLAGS.systems, FLAGS.workers)
  except workdir_lock.WorkdirLockedError as e:
    sys.exit(f"main: {e}")


def job_context(workdir: str, variant: str, corpus_root: str,
                progress: Callable[[float, str], None] | None = None) -> api.MainContext:
  """What every part of a job on `corpus_root` is given (the variant's configs on that corpus)."""
  extra = {"progress": progress} if progress is not None else {}
  return api.MainContext(workdir=workdir, variant=variant, corpus_root=corpus_root,
                         identity=default_identity(corpus_root), artefacts={},
                         config=lambda stage: stage_config(stage, variant, corpus_root), **extra)


def run_part(ctx: api.MainContext, system: api.System, part: api.MainPart,
             workers: int) -> api.PartReport:
  """One part, on its own corpus when it declares one; its artefacts join `ctx` for later parts."""
  result = api.resolve(part.run)(part_context(ctx, system, part, workers))
  ctx.artefacts.update(result.artefacts)
  return result


def run_parts(ctx: api.MainContext, systems: list[str], workers: int = 2
              ) -> Iterator[tuple[api.MainPart, api.PartReport]]:
  """The main job's parts without its report (for notebooks): each part of `systems` and of the
  parts they need, in order, on `ctx` (`job_context` of a corpus from `corpus_part`)."""
  for system, part in selected_parts(systems):
    yield part, run_part(ctx, system, part, workers)


def run_job(workdir: str, variant: str, systems: list[str], workers: int) -> None:
  """Every part of `systems` (all when empty) and the report, in `workdir`."""
  parts = selected_parts(systems)
  progress = JobProgress(len(parts) + 1)
  progress.start_part("synthetic corpus", 2.0 if variant == "demo" else 0.2)
  corpus_root, corpus = corpus_part(workdir, variant, workers)
  progress.finish_part()
  ctx = job_context(workdir, variant, corpus_root, progress.update)
  sections: list[dict[str, Any]] = []
  path = write_report(workdir, corpus, sections, [p.title for _, p in parts])
  for i, (system, part) in enumerate(parts):
    progress.start_part(part.title, part.minutes.get(variant, 0.0))
    start = time.perf_counter()
    result = run_part(ctx, system, part, workers)
    section = {"system": system.name, "title": part.title, "markdown": result.markdown,
               "summary": result.summary, "trainings": result.trainings,
               "videos": [dataclasses.asdict(v) for v in result.videos],
               "minutes": (time.perf_counter() - start) / 60, "paper": system.paper}
    if system.paper:
      section["paper_markdown"], tables = reproduce.reproduce(system.paper,
                                                              os.path.join(workdir, system.name))
      section["paper_tables"] = tables["tables"]
    sections.append(section)
    progress.finish_part()
    path = write_report(workdir, corpus, sections, [p.title for _, p in parts[i + 1:]])
    logging.info("Report rewritten after %s: %s", part.title, path)
  print(open(path).read())


if __name__ == "__main__":
  define_flags()
  app.run(main)
