"""Helpers every system's main-job part uses: train a stage with progress, keep finished results,
show videos beside the true clips.

A part (`api.MainPart.run`) trains its stages with `train` (resuming from the workdir, the
stage's own progress bar off: the job shows one display), and keeps videos and tables it already
made with `cached_tables` (`load_cached` / `save_cached`), keyed by the checkpoints that produced
them. Its videos reach the visual report (report.html) as `html_report.VideoPair`s whose true
clip comes from `truth_video`; `report_section` turns a finished part's report.json entry into
the page's section.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Mapping

import ml_collections

from talking_heads.io import dataset as dataset_lib
from talking_heads.io import html_report
from talking_heads.io import reports
from talking_heads.io import video as video_io
from talking_heads.systems.api import MainContext
from talking_heads.training import loop


def read_metrics(workdir: str) -> tuple[dict[str, float], dict[str, float]]:
  """Last training and last eval record of a run's metrics.jsonl."""
  train, evaluation = html_report.read_metrics(os.path.join(workdir, "metrics.jsonl"))
  return (train[-1] if train else {}), (evaluation[-1] if evaluation else {})


def train(ctx: MainContext, title: str, config: ml_collections.ConfigDict, workdir: str,
          span: tuple[float, float] = (0.0, 1.0)) -> dict[str, Any]:
  """Trains (or resumes) `config` in `workdir`, reporting progress in `span` of the part.

  Returns the record the report shows: stage, variant, steps, seconds, last train and eval
  metrics, the run's metrics.jsonl and newest image grid (both relative to the main workdir).
  """
  start = time.perf_counter()
  config.progress_bar = False
  low, high = span
  total = max(int(config.total_steps), 1)

  def hook(step: int, state: Any, metrics: Any) -> None:
    del state, metrics
    ctx.progress(low + (high - low) * step / total, f"{title}: step {step}/{total}")

  result = loop.train_and_evaluate(config, workdir, hooks=[hook])
  ctx.progress(high, f"{title}: done")
  last_train, last_eval = read_metrics(workdir)
  images_dir = os.path.join(workdir, "images")
  images = sorted(p for p in os.listdir(images_dir) if p.endswith(".png")) if os.path.isdir(
      images_dir) else []
  return {"part": title, "stage": config.stage, "variant": config.get("variant", ""),
          "steps": result.step, "seconds": round(time.perf_counter() - start, 1),
          "train": last_train, "eval": last_eval,
          "metrics": os.path.relpath(os.path.join(workdir, "metrics.jsonl"), ctx.workdir),
          "image": os.path.relpath(os.path.join(images_dir, images[-1]), ctx.workdir)
          if images else None}


def with_steps(config: ml_collections.ConfigDict, steps: int | None) -> ml_collections.ConfigDict:
  """`config` trained for `steps` (None: its own), evaluated, imaged and checkpointed at the end
  at the latest: a main-job budget shorter than the config's demo schedule."""
  if steps is not None:
    config.total_steps = steps
    config.checkpoint_every = min(config.checkpoint_every, steps)
    config.eval_every = min(config.eval_every, steps)
    config.image_every = min(config.image_every, steps)
  return config


def cached_tables(ctx: MainContext, path: str, sources: Mapping[str, str], *,
                  video: tuple[float, str, Callable[[], Any]],
                  tables: tuple[float, str, Callable[[], dict[str, Any]]],
                  markdown: Callable[[dict[str, Any]], str], function: str,
                  video_key: str = "video") -> dict[str, Any]:
  """A part's video(s) and tables, kept at `path` (JSON; `markdown` of it beside, .md) with the
  checkpoints they came from (`sources`). Made before from the same `sources`: read back as they
  are. Else `video` = (progress, label, make): `make()` writes the video(s) and returns their
  facts (kept under `video_key`); then `tables` = (progress, label, compute): `compute()` timed
  and stamped with the main job and the evaluation `function` it ran, machine and duration."""
  cached = load_cached(path, sources)
  if cached is not None:
    return cached
  at, label, make = video
  ctx.progress(at, label)
  made = make()
  at, label, compute = tables
  ctx.progress(at, label)
  start = time.perf_counter()
  results = compute()
  results.update(command=f"experiments.main ({function})", machine=reports.machine_description(),
                 duration_s=round(time.perf_counter() - start, 1), **{video_key: made})
  save_cached(path, results, sources)
  with open(os.path.splitext(path)[0] + ".md", "w") as f:
    f.write(markdown(reports.from_json(reports.to_json(results))))   # as read back from the cache
  return results


def checkpoint_stamp(source: str) -> str:
  """`source` ("WORKDIR" or "WORKDIR step N") with the modification time of the checkpoint it
  names (step N, else the workdir's latest): a run trained again into the same workdir to the
  same step is another checkpoint. Sources without checkpoints stay as they are."""
  workdir, _, step = source.rpartition(" step ")
  if not workdir or not step.isdigit():
    workdir, step = source, ""
  checkpoints = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(checkpoints):
    return source
  steps = [d for d in os.listdir(checkpoints) if d.isdigit()]
  step = step or max(steps, key=int, default="")
  if step not in steps:
    return source
  return f"{source} @ {os.stat(os.path.join(checkpoints, step)).st_mtime_ns}"


def _stamped(sources: Mapping[str, str]) -> dict[str, str]:
  return {name: checkpoint_stamp(source) for name, source in sources.items()}


def load_cached(path: str, sources: Mapping[str, str]) -> dict[str, Any] | None:
  """The results at `path` when they were made from the same checkpoints (`sources`, stamped
  with `checkpoint_stamp`)."""
  if not os.path.exists(path):
    return None
  cached = reports.read_json(path)
  return cached if cached.get("sources") == _stamped(sources) else None


def save_cached(path: str, results: Mapping[str, Any], sources: Mapping[str, str]) -> None:
  """Writes `results` with the `sources` they came from, stamped (atomically: a kill leaves no
  half file)."""
  reports.write_json(path, {**results, "sources": _stamped(sources)})


def training_table(trainings: list[dict[str, Any]]) -> list[str]:
  """Markdown rows of the trained stages (for a part's report section)."""
  lines = ["| stage | variant | steps | time (s) | final train loss | eval metrics |",
           "|---|---|---|---|---|---|"]
  for t in trainings:
    ev = ", ".join(f"{k[5:]}={v:.4g}" for k, v in t["eval"].items() if k.startswith("eval/"))
    lines.append(f"| {t['part']} ({t['stage']}) | {t['variant']} | {t['steps']} | {t['seconds']} | "
                 f"{t['train'].get('loss', float('nan')):.4g} | {ev} |")
  return lines


def truth_video(ctx: MainContext, clip: dataset_lib.Clip) -> str:
  """The corpus clip's video with its audio, relative to the main workdir: its preview mp4 when
  the corpus wrote one, else an mp4 written once to <workdir>/truth/<clip id>.mp4."""
  if clip.preview_path is not None:
    return os.path.relpath(clip.preview_path, ctx.workdir)
  path = os.path.join(ctx.workdir, "truth", f"{clip.id}.mp4")
  if not os.path.exists(path):
    data = dataset_lib.Dataset(ctx.corpus_root)
    video_io.write_video_with_audio(path, clip.frames, clip.audio, fps=data.fps,
                                    sample_rate=data.sample_rate)
  return os.path.relpath(path, ctx.workdir)


def report_section(section: Mapping[str, Any]) -> html_report.Section:
  """A finished part's entry of report.json as a section of report.html: its videos beside the
  true clips, its text and tables, each training's curves and newest image grid, the paper's
  tables beside ours."""
  curves = [html_report.Curves(f"{t['part']} ({t['stage']})", t["metrics"], t.get("image"))
            for t in section["trainings"] if t.get("metrics")]
  return html_report.Section(
      title=section["title"], markdown=section["markdown"],
      videos=[html_report.VideoPair(**v) for v in section.get("videos", [])], curves=curves,
      paper=section.get("paper"), paper_tables=section.get("paper_tables", ()))
