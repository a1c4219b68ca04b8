r"""Benchmarks every registered stage's training step and every system's generation end to end in
one run, and writes one table of them.

  python -m experiments.bench_suite --variant=demo --out_dir=experiments/results/bench
  python -m experiments.bench_suite --variant=tiny --steps=2 --warmup=1 --out_dir=/tmp/bench  # CI
  python -m experiments.bench_suite --variant=paper --stages=wav2lip,dae --systems=dae_talker

Weights are random (`training.state_workdirs`): speed does not depend on their values. A stage
whose config needs another stage's workdir (`UPSTREAM`) gets a random one of that stage at the same
variant; speech2latent's DAE latents are random arrays of its latent width. Each generation entry
(`api.generators()`) loads random workdirs of the stages behind its weights (`GENERATOR_WEIGHTS`).

Data: the synthetic corpus of the variant (`CORPUS`), built under --work_dir, or a system's own
corpus where its main-job part declares one for the variant (RADIO's many identities); stage
configs are the main job's (`experiments.main.stage_config`) with the corpus's default identity,
each on a mesh of --num_devices (default one chip: the per-chip numbers the issue compares).

Per stage (`experiments.bench.benchmark`): compile time, median step time and its p90,
samples/s, FLOPs per step and MFU where the device's peak is known, the fraction of a training
loop's time spent waiting for data, compiled and peak memory, and the inference function's call.
Per generation entry: the speech of a held-out-voice clip (--audio_seconds) dubbed onto an
identity clip, run twice in one process: the first run's frames/s include jit compilation, the
second's are the steady state, with each part's share of its wall time (networks, face crops,
paste-back, and the mp4 encoding as the rest).

A stage or entry that fails (public weights missing at the paper variant, out of memory) gets
its error as its row, so the table still names everything. Writes
`<out_dir>/bench_<variant>.json` and `.md` with the machine, versions and command.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import traceback
from typing import Any, Callable, Mapping

import flax
import jax
import jaxlib
import ml_collections
import optax
import numpy as np
from absl import app, flags, logging

from data import synthetic
from experiments import bench
from experiments import generate
from experiments import main as main_job
from experiments.logs import quiet_library_logs
from talking_heads.audio import windows
from talking_heads.io import audio as audio_io
from talking_heads.io import dataset as dataset_lib
from talking_heads.io import video as video_io
from talking_heads.pipelines import base as pipelines_base
from talking_heads.systems import api
from talking_heads.training import state_workdirs

# Corpus preset (and overrides) per variant: the loaders resize frames to each config's size,
# so the paper variant runs on a small corpus drawn at 256 px.
CORPUS = {"tiny": ("tiny", {}), "demo": ("demo", {}), "paper": ("tiny", {"size": 256})}

# Config fields naming another stage's workdir -> that stage.
UPSTREAM = {
    "sync_expert.workdir": "syncnet",
    "sync_discriminator.workdir": "radio_sync",
    "triplane.workdir": "pir_triplane",
    "lip_expert.workdir": "fd2talk_lip_expert",
    "autoencoder.workdir": "fd2talk_autoencoder",
}

# Generation weights -> (stage, config overrides) of the workdir behind it; weights that are
# public files (`*_checkpoint`) are left empty.
GENERATOR_WEIGHTS: dict[str, tuple[str, Mapping[str, Any]]] = {
    "wav2lip_workdir": ("wav2lip", {}),
    "sovqae_workdir": ("sovqae", {}),
    "dae_workdir": ("dae", {}),
    "speech2latent_workdir": ("speech2latent", {}),
    "radio_workdir": ("radio", {}),
    "pir_audio2exp_workdir": ("pir_audio2exp", {}),
    "pir_triplane_workdir": ("pir_triplane", {}),
    "pir_renderer_workdir": ("pir_renderer", {}),
    "fd2talk_expression_workdir": ("fd2talk_motion", {"model.motion": "expression"}),
    "fd2talk_pose_workdir": ("fd2talk_motion", {"model.motion": "pose"}),
    "fd2talk_unet_workdir": ("fd2talk_unet", {}),
    "fd2talk_autoencoder_workdir": ("fd2talk_autoencoder", {}),
}

# Generation entries' own options that name their face: the identity clip (as an mp4, or as
# ROOT:CLIP_ID for entries that read a clip's morphable-model fit).
FACE_OPTIONS: dict[str, Callable[[str, str, str], dict[str, str]]] = {
    "radio": lambda video, root, clip: {"face": video},
    "fd2talk": lambda video, root, clip: {"face": video},
    "pir": lambda video, root, clip: {"target_clip": f"{root}:{clip}"},
}

RANDOM_LATENTS = "bench_random"


def define_flags() -> None:
  flags.DEFINE_enum("variant", "demo", sorted(CORPUS), "Config variant of every stage.")
  flags.DEFINE_list("stages", None, "Stages to time (default: every system's; empty: none).")
  flags.DEFINE_list("systems", None, "Generation entries to time (default: all; empty: none).")
  flags.DEFINE_integer("steps", 10, "Timed train steps (and inference calls) per stage.")
  flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.")
  flags.DEFINE_float("audio_seconds", 4.0, "Seconds of speech each generation entry dubs.")
  flags.DEFINE_integer("batch_size", 16, "Frames per network call in generation.")
  flags.DEFINE_integer("num_devices", 1, "Devices of each stage's mesh (0: all; the configs' "
                       "batches must divide).")
  flags.DEFINE_string("work_dir", "/tmp/talking_heads_bench", "Corpora, random workdirs, videos.")
  flags.DEFINE_string("out_dir", "experiments/results/bench", "Where bench_<variant>.json/md go.")


def set_field(config: ml_collections.ConfigDict, path: str, value: Any) -> None:
  """Sets the dotted field `path` (e.g. "model.dtype") of `config`."""
  *parents, key = path.split(".")
  node = config
  for p in parents:
    node = node[p]
  node[key] = value


def workdir_fields(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """Dotted paths of every `workdir` field of a config's sub-dicts (another stage's workdir)."""
  out = []
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      out += workdir_fields(value, f"{prefix}{key}.")
    elif key == "workdir" and prefix:
      out.append(prefix + key)
  return out


class Workspace:
  """Corpora and random-weight stage workdirs of one variant under `root`, made once each."""

  def __init__(self, root: str, variant: str, num_devices: int = 1):
    self.root, self.variant, self.num_devices = root, variant, num_devices
    self._corpora: dict[str, str] = {}
    self._workdirs: dict[tuple[str, str], str] = {}

  def corpus(self, stage: str) -> str:
    """The corpus of the system that owns `stage` (its main-job part's, else the variant's)."""
    owner = next((s for s in api.systems().values() if stage in s.stages), None)
    part = owner.main_part if owner else None
    settings = dict(part.corpus.get(self.variant, {})) if part else {}
    name = f"corpus_{owner.name}" if settings else "corpus"
    if name not in self._corpora:
      if settings:
        preset = settings.pop("preset")
      else:
        preset, settings = CORPUS[self.variant]
      root = os.path.join(self.root, name)
      synthetic.build_corpus(root, preset, **settings)
      self._corpora[name] = root
    return self._corpora[name]

  def config(self, stage: str, overrides: Mapping[str, Any] = ()) -> ml_collections.ConfigDict:
    """The main job's config of `stage` on its corpus, the corpus's default identity, random
    upstream workdirs and random DAE latents where it reads them."""
    root = self.corpus(stage)
    config = main_job.stage_config(stage, self.variant, root)
    for path, value in dict(overrides).items():
      set_field(config, path, value)
    config.progress_bar = False
    config.mesh.num_devices = self.num_devices
    identity = main_job.default_identity(root)
    if config.data.get("identities"):
      config.data.identities = identity
    for path in workdir_fields(config):
      if path not in UPSTREAM:
        raise KeyError(f"{stage}: config field {path} names a workdir of a stage "
                       f"experiments.bench_suite.UPSTREAM does not know")
      set_field(config, path, self.workdir(UPSTREAM[path]))
    if "latents" in config.data and config.data.latents:
      config.data.latents = self.random_latents(root, int(config.model.latent_dim))
    return config

  def workdir(self, stage: str, overrides: Mapping[str, Any] = ()) -> str:
    """A workdir of `stage` (with `overrides`) holding one checkpoint of random weights."""
    key = (stage, json.dumps(dict(overrides), sort_keys=True))
    if key not in self._workdirs:
      suffix = "_".join(f"{v}" for v in dict(overrides).values())
      path = os.path.join(self.root, "workdirs", stage + (f"_{suffix}" if suffix else ""))
      if not os.path.isdir(os.path.join(path, "checkpoints")):
        state_workdirs.write_state_workdir(path, self.config(stage, overrides))
      self._workdirs[key] = path
    return self._workdirs[key]

  def random_latents(self, root: str, width: int) -> str:
    """Random per-frame latents [T, width] of every clip, named `RANDOM_LATENTS`_<width>."""
    name = f"{RANDOM_LATENTS}_{width}"
    rng = np.random.default_rng(0)
    for clip in dataset_lib.Dataset(root).clips():
      path = pipelines_base.latents_path(root, name, clip.id)
      if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, rng.standard_normal((clip.num_frames, width)).astype(np.float32))
    return name


def bench_stage(space: Workspace, stage: str, steps: int, warmup: int) -> dict[str, Any]:
  start = time.perf_counter()
  try:
    result = bench.benchmark(space.config(stage), steps, warmup)
  except Exception as e:  # pylint: disable=broad-except
    logging.error("stage %s: %s", stage, traceback.format_exc())
    result = {"stage": stage, "error": f"{type(e).__name__}: {e}"}
  result["wall_s"] = time.perf_counter() - start
  return result


def generation_inputs(space: Workspace, stage: str, seconds: float) -> tuple[str, str, str, str]:
  """(speech wav, identity mp4, corpus root, identity clip id) from the corpus of `stage`: a
  held-out-voice clip's speech looped to `seconds`, the default identity's first test clip."""
  root = space.corpus(stage)
  data = dataset_lib.Dataset(root)
  identity = main_job.default_identity(root)
  voice = data.clips("heldout_voice")[0]
  clip = next(c for c in data.clips("test") if c.identity == identity)
  samples = int(seconds * windows.SAMPLE_RATE)
  speech = np.resize(np.asarray(voice.audio, np.float32), samples)
  folder = os.path.join(space.root, "media", os.path.basename(root))
  os.makedirs(folder, exist_ok=True)
  wav = os.fspath(audio_io.write_wav(os.path.join(folder, f"speech_{seconds:g}s.wav"), speech))
  video = os.path.join(folder, f"{clip.id}.mp4")
  if not os.path.exists(video):
    video_io.write_video(video, np.asarray(clip.frames))
  return wav, video, root, clip.id


def part_shares(summary: dict[str, Any]) -> dict[str, float]:
  """Each part's share of the generation wall time (load excluded): the entry's steps as
  `video_inference` times them, and the rest (mp4 encoding, Python) as "encode_and_other"."""
  seconds = summary["seconds"]
  total = seconds["generate"]
  parts = {k: v for k, v in seconds.items()
           if k not in ("load", "generate") and not k.endswith("_first_batch")}
  shares = {k: v / total for k, v in parts.items()}
  shares["encode_and_other"] = max(0.0, 1.0 - sum(shares.values()))
  return shares


def bench_generator(space: Workspace, entry: api.Generator, seconds: float,
                    batch_size: int) -> dict[str, Any]:
  start = time.perf_counter()
  try:
    weights, first_stage = {}, None
    for name in entry.weights:
      if name.endswith("_workdir"):
        if name not in GENERATOR_WEIGHTS:
          raise KeyError(f"{entry.name}: weight {name} has no stage in "
                         "experiments.bench_suite.GENERATOR_WEIGHTS")
        stage, overrides = GENERATOR_WEIGHTS[name]
        weights[name] = space.workdir(stage, overrides)
        first_stage = first_stage or stage
    wav, video, root, clip = generation_inputs(space, first_stage, seconds)
    options = FACE_OPTIONS.get(entry.name, lambda *_: {})(video, root, clip)
    runs = []
    for run in ("cold", "warm"):
      out = os.path.join(space.root, "media", f"{entry.name}_{run}.mp4")
      summary = generate.generate(generate.Request(
          entry.name, wav, video, out, weights=weights, system_options=options,
          options=generate.Options(box="full", batch_size=batch_size))).summary
      runs.append(summary)
    cold, warm = runs
    result = {"system": entry.name, "frames": warm["frames"], "size": warm["size"],
              "audio_seconds": warm["audio_seconds"],
              "frames_per_s_cold": cold["frames_per_second"]["end_to_end"],
              "frames_per_s": warm["frames_per_second"]["end_to_end"],
              "real_time_factor": warm["frames_per_second"]["end_to_end"] / warm["fps"],
              "load_s": warm["seconds"]["load"], "seconds": warm["seconds"],
              "shares": part_shares(warm)}
  except Exception as e:  # pylint: disable=broad-except
    logging.error("generation %s: %s", entry.name, traceback.format_exc())
    result = {"system": entry.name, "error": f"{type(e).__name__}: {e}"}
  result["wall_s"] = time.perf_counter() - start
  return result


def machine() -> dict[str, Any]:
  device = jax.devices()[0]
  return {"backend": jax.default_backend(), "device": device.device_kind,
          "devices": jax.device_count(), "host": platform.machine(),
          "cpu_count": os.cpu_count(), "python": platform.python_version(),
          "jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__,
          "optax": optax.__version__}


def _fmt(value: Any, digits: int = 3) -> str:
  if value is None:
    return "-"
  if isinstance(value, float):
    return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:,.0f}"
  return str(value)


def step_memory_mib(result: dict[str, Any]) -> float | None:
  """The device allocator's peak where reported (GPU/TPU), else XLA's compiled footprint of the
  train step (arguments + outputs + temporaries): the process RSS of a suite run only grows."""
  if "train_device_peak_mib" in result:
    return result["train_device_peak_mib"]
  parts = [result.get(f"train_compiled_{k}_mib") for k in ("argument", "output", "temp")]
  return sum(parts) if all(p is not None for p in parts) else None


def markdown(results: dict[str, Any]) -> str:
  m = results["machine"]
  lines = [f"# Benchmarks: {results['variant']} configs, random weights", "",
           f"Command: `{results['command']}`  ",
           f"Machine: {m['device']} ({m['backend']}, {m['devices']} device(s)), host {m['host']} "
           f"with {m['cpu_count']} CPUs; Python {m['python']}, jax {m['jax']}, flax {m['flax']}  ",
           f"Date: {results['date']}; {results['duration_s']:.0f} s", "",
           "## Training steps", "",
           "| stage | batch | compile (s) | step (ms, median / p90) | samples/s | GFLOPs/step | MFU "
           "| data wait | step memory (MiB) | inference call (ms) | items/s |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in results["stages"]:
    if "error" in r:
      lines.append(f"| {r['stage']} | error: {r['error'][:160]} |" + " |" * 9)
      continue
    flops = r.get("train_flops_per_device")
    lines.append(
        f"| {r['stage']} | {r['global_batch']} | {_fmt(r['train_compile_s'])} | "
        f"{_fmt(r['train_step_ms'])} / {_fmt(r['train_step_ms_p90'])} | "
        f"{_fmt(r['train_samples_per_s'])} | {_fmt(flops / 1e9 if flops else None)} | "
        f"{_fmt(r.get('train_mfu'))} | {100 * r['data_wait_fraction']:.1f}% | "
        f"{_fmt(step_memory_mib(r))} | {_fmt(r.get('inference_call_ms'))} | "
        f"{_fmt(r.get('inference_items_per_s'))} |")
  lines += ["", "## Training state per device under FSDP (parameters, optimiser moments, EMA)", "",
            "| stage | fsdp 1 (MiB) | fsdp 2 | fsdp 4 |", "|---|---|---|---|"]
  for r in results["stages"]:
    if "error" not in r:
      lines.append(f"| {r['stage']} | " + " | ".join(
          _fmt(r[f"state_mib_per_device_fsdp{f}"]) for f in (1, 2, 4)) + " |")
  lines += ["", "## Generation end to end (speech -> mp4)", "",
            "| system | frames | size | frames/s (steady) | x real time | frames/s (1st run, "
            "with compilation) | where the time goes (steady run) |", "|---|---|---|---|---|---|---|"]
  for r in results["systems"]:
    if "error" in r:
      lines.append(f"| {r['system']} | error: {r['error'][:160]} |" + " |" * 5)
      continue
    shares = ", ".join(f"{k} {100 * v:.0f}%" for k, v in
                       sorted(r["shares"].items(), key=lambda kv: -kv[1]) if v >= 0.005)
    lines.append(f"| {r['system']} | {r['frames']} | {r['size'][1]}x{r['size'][0]} | "
                 f"{_fmt(r['frames_per_s'])} | {_fmt(r['real_time_factor'])} | "
                 f"{_fmt(r['frames_per_s_cold'])} | {shares} |")
  lines += ["", "Data wait: the fraction of a training loop's wall time spent waiting for the "
                "input pipeline (`experiments.bench.data_wait`). MFU: '-' where the device's peak "
                "is unknown (CPUs). Step memory: the device's peak where reported, else XLA's "
                "compiled footprint of the step. x real time: steady frames/s over 25 frames/s."]
  return "\n".join(lines) + "\n"


def run(variant: str, stages: list[str] | None, systems: list[str] | None, *, steps: int,
        warmup: int, audio_seconds: float, batch_size: int, work_dir: str,
        out_dir: str, num_devices: int = 1, command: str = "") -> dict[str, Any]:
  """Benchmarks `stages` and generation entries `systems` (None: all) at `variant` on meshes of
  `num_devices` (0: all); writes and returns the results."""
  start = time.perf_counter()
  space = Workspace(os.path.join(work_dir, variant), variant, num_devices)
  # The system packages' stages (`registry.register` may add config-less ones, e.g. in tests).
  all_stages, all_systems = sorted(api.stage_paths()), sorted(api.generators())
  stages = all_stages if stages is None else stages
  systems = all_systems if systems is None else systems
  for name, known in (("stage", all_stages), ("system", all_systems)):
    chosen = stages if name == "stage" else systems
    if unknown := sorted(set(chosen) - set(known)):
      raise ValueError(f"unknown {name}(s) {unknown}; known: {known}")
  results = {"variant": variant, "command": command, "machine": machine(),
             "date": time.strftime("%Y-%m-%d"), "stages": [], "systems": [],
             "settings": {"steps": steps, "warmup": warmup, "audio_seconds": audio_seconds,
                          "batch_size": batch_size, "num_devices": num_devices}}
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, f"bench_{variant}")

  def write():
    results["duration_s"] = time.perf_counter() - start
    with open(path + ".json", "w") as f:
      json.dump(results, f, indent=2)
    with open(path + ".md", "w") as f:
      f.write(markdown(results))

  for stage in stages:
    logging.info("bench: stage %s", stage)
    results["stages"].append(bench_stage(space, stage, steps, warmup))
    write()
  entries = api.generators()
  for name in systems:
    logging.info("bench: generation %s", name)
    results["systems"].append(bench_generator(space, entries[name], audio_seconds, batch_size))
    write()
  write()
  return results


def main(argv):
  del argv
  quiet_library_logs()
  f = flags.FLAGS
  results = run(f.variant, f.stages, f.systems, steps=f.steps, warmup=f.warmup,
                audio_seconds=f.audio_seconds, batch_size=f.batch_size, work_dir=f.work_dir,
                out_dir=f.out_dir, num_devices=f.num_devices, command="python -m experiments.bench_suite " + " ".join(sys.argv[1:]))
  print(markdown(results))


if __name__ == "__main__":
  define_flags()
  app.run(main)
