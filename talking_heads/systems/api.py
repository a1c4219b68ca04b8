"""What a system package declares, and how the launchers find every system.

A system is a package under `talking_heads.systems` (or under a package named in
`$TALKING_HEADS_SYSTEMS` / `add_package`, for systems that live outside the library) whose
`__init__.py` defines `SYSTEM = System(...)`: its training stages, its inference entries, its
part of the main job and the paper tables it reproduces. `experiments.train`, `generate`,
`main` and `reproduce` iterate over `systems()`; adding a system touches none of them.

Declarations name their code as "module:attribute" strings so that discovering every system
imports no network, no dataset code and no training stack.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import pkgutil
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Protocol, Sequence, \
    runtime_checkable

import numpy as np

if TYPE_CHECKING:   # discovering systems imports no video code
  from talking_heads.io.html_report import VideoPair

ENV_PACKAGES = "TALKING_HEADS_SYSTEMS"
_PACKAGES: list[str] = ["talking_heads.systems"]


def resolve(path: str) -> Any:
  """The object named by "package.module:attribute"."""
  module, _, attr = path.partition(":")
  if not attr:
    raise ValueError(f"expected 'module:attribute', got {path!r}")
  return getattr(importlib.import_module(module), attr)


# ------------------------------------------------------------------------------ inference


class GeneratedVideo(Protocol):
  """What a generator may return, in memory: frames [T, H, W, 3] uint8, audio [N] at 16 kHz,
  fps, and the wall seconds of its steps (each network's "<name>" and "<name>_first_batch")."""
  frames: np.ndarray
  audio: np.ndarray
  fps: int
  seconds: dict[str, float]


@runtime_checkable
class StreamedVideo(Protocol):
  """What a generator may return to stream (memory bounded by a chunk, not the video): audio
  [N] at 16 kHz, fps, the frame count T, `frame_chunks()` giving the frames in order as uint8
  [t, H, W, 3] chunks (consuming them does the work), and the wall seconds of its steps
  (complete once the chunks are consumed)."""
  audio: np.ndarray
  fps: int
  num_frames: int
  seconds: dict[str, float]

  def frame_chunks(self) -> Iterator[np.ndarray]:
    ...


def frame_chunks(video: GeneratedVideo | StreamedVideo) -> Iterator[np.ndarray]:
  """The frames of what a generator returned, in chunks: a stream's own, or an in-memory
  video's frames as one chunk."""
  if isinstance(video, StreamedVideo):
    return video.frame_chunks()
  return iter((video.frames,))


@dataclasses.dataclass(frozen=True)
class LoadedGenerator:
  """A generator's networks, ready to run.

  Attributes:
    generate: (audio path, face-source video path or None, video_inference.Options) -> a
      `StreamedVideo` (bounded memory; its chunk size is the options' `chunk_frames`) or a
      `GeneratedVideo` (in memory).
    sources: where each network's weights come from.
    batch_size: frames per network call when the generator sets its own (None: the video
      options'), for the per-network speeds.
  """
  generate: Callable[[str, str | None, Any], StreamedVideo | GeneratedVideo]
  sources: Mapping[str, str]
  batch_size: int | None = None


@dataclasses.dataclass(frozen=True)
class Generator:
  """An inference entry of a system: audio (+ a face source) -> frames.

  Attributes:
    name: the `--system` value of `experiments.generate`.
    description: one line for `--help`.
    weights: argument name -> help: the trained workdirs or public files it loads (each becomes
      a flag; the same name in two generators means the same thing).
    options: argument name -> (default, help): its own settings (strings, parsed by `load`).
    needs_video: whether it edits a face video (False: the identity is in its weights).
    load: "module:function" (weights: dict[str, str | None], options: dict[str, str]) ->
      `LoadedGenerator`; it raises FileNotFoundError / ValueError / MissingWeightsError naming
      what is missing.
    check: optional "module:function" (audio path, video path or None, options: dict[str,
      str]) -> None, run by the launchers before `load` (before any network loads): it raises
      FileNotFoundError / ValueError naming a bad input of the entry's own (an option, a file
      an option needs) and may log warnings. The launchers check the files every entry takes
      and the output path themselves.
  """
  name: str
  description: str
  weights: Mapping[str, str]
  load: str
  options: Mapping[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
  needs_video: bool = True
  check: str | None = None

  def loader(self) -> Callable[[dict[str, str | None], dict[str, str]], LoadedGenerator]:
    return resolve(self.load)

  def checker(self) -> Callable[[str, str | None, dict[str, str]], None]:
    """The entry's input checks (a no-op when it declares none)."""
    return resolve(self.check) if self.check else lambda audio, video, options: None


# ------------------------------------------------------------------------------ main job


@dataclasses.dataclass
class MainContext:
  """What a main-job part gets.

  Attributes:
    workdir: the main job's folder; a part writes under `workdir/<system name>/`.
    variant: "tiny" or "demo" (the config variant of every stage).
    corpus_root: the synthetic corpus.
    identity: the identity per-identity systems train on.
    artefacts: what earlier parts published (e.g. "syncnet_workdir"), read-only by convention.
    config: stage name -> its config of this variant with `data.root` = the corpus (the
      launcher owns the config files: `experiments/configs/<system>/<stage>.py`).
    progress: reports the part's progress in [0, 1] with a short status (one display for the job).
  """
  workdir: str
  variant: str
  corpus_root: str
  identity: str
  artefacts: dict[str, Any]
  config: Callable[[str], Any]
  progress: Callable[[float, str], None] = lambda fraction, status: None

  def system_dir(self, system: str) -> str:
    path = os.path.join(self.workdir, system)
    os.makedirs(path, exist_ok=True)
    return path


@dataclasses.dataclass
class PartReport:
  """What a main-job part returns.

  Attributes:
    markdown: its section of the report (links relative to the main workdir).
    summary: JSON-able results for report.json.
    artefacts: what later parts may use (merged into `MainContext.artefacts`).
    trainings: one record per trained stage (`systems.main_part.train`); the visual report
      plots each one's curves.
    videos: the videos it made, each with the true clip beside it, for the visual report
      (report.html; paths relative to the main workdir, see `systems.main_part.truth_video`).
  """
  markdown: str
  summary: dict[str, Any] = dataclasses.field(default_factory=dict)
  artefacts: dict[str, Any] = dataclasses.field(default_factory=dict)
  trainings: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  videos: list[VideoPair] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class MainPart:
  """A system's part of the main job.

  Attributes:
    title: shown in the progress display and the report.
    run: "module:function" (MainContext) -> PartReport; reruns keep finished work.
    after: systems whose parts must run first (their artefacts are needed).
    minutes: expected minutes per variant on 2 CPU cores (the progress display's ETA).
    corpus: variant -> the synthetic corpus the part needs when the job's does not serve: a
      `data.synthetic` preset and its settings ({"preset": "radio", "identities": 3, ...}). The
      launcher builds (or resumes) it under <workdir>/corpus_<system> and runs the part with a
      context on it (`corpus_root`, `identity` and `config` point there). Variants not named
      use the job's corpus.
  """
  title: str
  run: str
  after: tuple[str, ...] = ()
  minutes: Mapping[str, float] = dataclasses.field(default_factory=dict)
  corpus: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)


# ------------------------------------------------------------------------------ the system


@dataclasses.dataclass(frozen=True)
class System:
  """One package's declaration.

  Attributes:
    name: the package name (e.g. "ladtalk").
    title: what it is, for reports.
    paper: the key of its paper's tables (`experiments/paper_tables/<paper>.json`), or None for
      shared experts.
    stages: training stage name -> "module:Class" (a `training.stage.Stage` subclass).
    configs: stage name -> "module:get_config" for stages whose config does not sit at the
      launchers' `experiments/configs/<system>/<stage>.py` (systems outside the library).
    generators: its inference entries.
    main_part: its part of the main job, if any.
    reproduce: "module:function" (results folder) -> list of measured tables
      (`{"table": id, "measured": [...], "unavailable": [...]}`, see `experiments.reproduce`).
  """
  name: str
  title: str
  paper: str | None = None
  stages: Mapping[str, str] = dataclasses.field(default_factory=dict)
  configs: Mapping[str, str] = dataclasses.field(default_factory=dict)
  generators: Sequence[Generator] = ()
  main_part: MainPart | None = None
  reproduce: str | None = None


# ------------------------------------------------------------------------------ discovery


def add_package(name: str) -> None:
  """Also discovers the systems under package `name` (each subpackage defining SYSTEM)."""
  if name not in _PACKAGES:
    _PACKAGES.append(name)


def _packages() -> list[str]:
  extra = [p.strip() for p in os.environ.get(ENV_PACKAGES, "").split(",") if p.strip()]
  return _PACKAGES + [p for p in extra if p not in _PACKAGES]


def systems() -> dict[str, System]:
  """Every discovered system by name, in discovery order (library first)."""
  found: dict[str, System] = {}
  for package_name in _packages():
    package = importlib.import_module(package_name)
    for info in pkgutil.iter_modules(package.__path__, package_name + "."):
      if not info.ispkg:
        continue
      system = getattr(importlib.import_module(info.name), "SYSTEM", None)
      if system is None:
        continue
      if system.name in found:
        raise ValueError(f"two systems are named {system.name!r} ({info.name} and another)")
      found[system.name] = system
  return found


def get(name: str) -> System:
  found = systems()
  if name not in found:
    raise KeyError(f"unknown system {name!r}; known systems: {', '.join(sorted(found))}")
  return found[name]


def stage_paths() -> dict[str, str]:
  """Stage name -> "module:Class" over every system (the training registry's source)."""
  paths: dict[str, str] = {}
  for system in systems().values():
    for stage, path in system.stages.items():
      if stage in paths and paths[stage] != path:
        raise ValueError(f"stage {stage!r} is declared twice ({paths[stage]} and {path})")
      paths[stage] = path
  return paths


def generators() -> dict[str, Generator]:
  """Every inference entry by name."""
  found: dict[str, Generator] = {}
  for system in systems().values():
    for generator in system.generators:
      if generator.name in found:
        raise ValueError(f"two generators are named {generator.name!r}")
      found[generator.name] = generator
  return found


def main_parts() -> list[tuple[System, MainPart]]:
  """(system, part) of every system with a main-job part, each after those it names in `after`."""
  pending = {s.name: s for s in systems().values() if s.main_part is not None}
  ordered: list[tuple[System, MainPart]] = []
  while pending:
    ready = [s for s in pending.values()
             if all(a not in pending for a in s.main_part.after)]
    if not ready:
      raise ValueError(f"main-job parts wait on each other: {sorted(pending)}")
    for s in ready:
      ordered.append((s, s.main_part))
      del pending[s.name]
  return ordered
