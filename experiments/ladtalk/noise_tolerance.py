r"""Noise tolerance of a trained SOVQAE (LaDTalk Thm. 3.3): d_C, gamma, L_eps, radius, stability.

  python -m experiments.ladtalk.noise_tolerance --workdir=runs/sovqae_id01 --dataset=/tmp/demo_corpus \
      --identity=id01 --split=test --out=experiments/results/ladtalk/noise_tolerance

Restores the SOVQAE stage of `--workdir` (its EMA parameters when kept), takes `--frames` evenly
spaced frames of the identity's `--split` clips and `--train_frames` of its `--train_split` clips
(resized to the stage's image size) and runs `talking_heads.systems.ladtalk.noise_tolerance.analyse`:
d_C, gamma (largest training-latent distance to its code), an upper bound on the encoder's
Lipschitz constant (`talking_heads.analysis.lipschitz`, calibrated on the first `--calibration`
evaluated frames), the tolerance radius (d_C - 2 gamma) / (2 L_eps), and the fraction of code
indices unchanged under Gaussian blur (`--blur_sigmas`, pixels) and Gaussian noise
(`--noise_stds`, uint8 levels) of increasing strength, with ||N||_F of each perturbation.
`--dataset` and `--identity` default to the stage config's data.root and first identity.
Writes noise_tolerance.json and noise_tolerance.md (command, seed, machine, duration) to `--out`
(default <workdir>/noise_tolerance).
"""

from __future__ import annotations

import json
import os
import pathlib
import time
from typing import Any

from absl import app, flags, logging
import jax
import numpy as np

from experiments.logs import quiet_library_logs
from talking_heads.io import reports
from talking_heads.io.dataset import parse_identities
from talking_heads.pipelines import base
from talking_heads.systems.ladtalk import noise_tolerance
from talking_heads.systems.ladtalk.sovqae import SOVQAEStage
from talking_heads.training import restore

NAME = "noise_tolerance"


def define_flags() -> None:
  """Flags of the command line only: importing the module defines none (no clashes in tests)."""
  flags.DEFINE_string("workdir", None, "Workdir of a trained SOVQAE stage.")
  flags.DEFINE_string("dataset", None, "Dataset root (default: the stage's data.root).")
  flags.DEFINE_string("identity", None, "Identity (default: the stage's first identity).")
  flags.DEFINE_string("split", "test", "Split whose frames are degraded.")
  flags.DEFINE_string("train_split", "train", "Split whose frames give gamma.")
  flags.DEFINE_string("out", None, "Output folder (default: <workdir>/noise_tolerance).")
  flags.DEFINE_integer("frames", 32, "Evaluated frames (evenly spaced).")
  flags.DEFINE_integer("train_frames", 256, "Training frames for gamma (evenly spaced; 0: all).")
  flags.DEFINE_integer("calibration", 8, "Calibration frames of the Lipschitz bound.")
  flags.DEFINE_list("blur_sigmas", ["0", "0.5", "1", "2", "4", "8"], "Blur sigmas, pixels.")
  flags.DEFINE_list("noise_stds", ["0", "1", "2", "5", "10", "20", "50"],
                    "Noise standard deviations, uint8 levels.")
  flags.DEFINE_integer("power_iters", 100, "Power iterations per convolution (0: skip the check).")
  flags.DEFINE_integer("batch_size", 16, "Frames per encoder call.")
  flags.DEFINE_integer("seed", 0, "Seed of the noise fields and power iterations.")
  flags.mark_flags_as_required(["workdir"])


def load_sovqae(workdir: str) -> tuple[SOVQAEStage, Any, int]:
  """(stage, evaluation parameters on the host, step) of a SOVQAE workdir."""
  stage, state, step = restore.restore_stage(workdir)
  if not isinstance(stage, SOVQAEStage):
    raise ValueError(f"{workdir}: stage {stage.config.stage!r} is not a SOVQAE stage")
  # Host copies: replicated device arrays would make every local device run the whole model.
  return stage, jax.device_get(state.eval_params), step


def default_identity(stage: SOVQAEStage, identity: str | None) -> str:
  if identity:
    return identity
  names = parse_identities(stage.config.data.identities)
  if not names:
    raise ValueError("--identity is required: the stage config names no identity")
  return names[0]


def identity_frames(root: str, split: str, identity: str, image_size: int,
                    max_frames: int) -> tuple[np.ndarray, list[str]]:
  """Up to `max_frames` (0: all) evenly spaced frames of the identity's clips in `split`, resized.

  Returns uint8 [F, S, S, 3] and each frame's "clip:frame" name.
  """
  _, clips = base.open_split(root, split, [identity])
  clips = sorted(clips, key=lambda c: c.id)
  refs = [(clip, t) for clip in clips for t in range(clip.num_frames)]
  if not refs:
    raise ValueError(f"dataset {root}: identity {identity!r} has no frames in split {split!r}")
  count = len(refs) if max_frames <= 0 else min(max_frames, len(refs))
  chosen = [refs[int(i)] for i in np.linspace(0, len(refs) - 1, count).round().astype(int)]
  images, loaded, frames = [], None, None
  for clip, t in chosen:                                 # grouped by clip: one clip in memory
    if clip.id != loaded:
      loaded, frames = clip.id, np.asarray(clip.frames)
    images.append(frames[t])
  return base.resize_frames(np.stack(images), image_size), [f"{c.id}:{t}" for c, t in chosen]


def write_report(out: pathlib.Path, name: str, results: dict[str, Any], markdown: str) -> None:
  out.mkdir(parents=True, exist_ok=True)
  (out / f"{name}.json").write_text(json.dumps(reports.to_json(results), indent=2))
  (out / f"{name}.md").write_text(markdown)
  logging.info("wrote %s/%s.{json,md}", out, name)


def run(workdir: str, dataset: str | None, identity: str | None, split: str, train_split: str,
        frames: int, train_frames: int, calibration: int, blur_sigmas: list[float],
        noise_stds: list[float], power_iters: int, batch_size: int, seed: int) -> dict[str, Any]:
  """The whole analysis as a JSON-ready dict (module docstring)."""
  start = time.time()
  stage, params, step = load_sovqae(workdir)
  root = dataset or stage.config.data.root
  if not root:
    raise ValueError("--dataset is required: the stage config has no data.root")
  identity = default_identity(stage, identity)
  size = stage.config.data.image_size
  eval_images, eval_refs = identity_frames(root, split, identity, size, frames)
  train_images, _ = identity_frames(root, train_split, identity, size, train_frames)
  logging.info("noise_tolerance: %d %s frames, %d %s frames of %s at %d px", len(eval_images),
               split, len(train_images), train_split, identity, size)
  report = noise_tolerance.analyse(
      stage.model, params, train_images, eval_images, blur_sigmas=blur_sigmas,
      noise_stds=noise_stds, seed=seed, num_calibration=calibration, num_iters=power_iters,
      batch_size=batch_size)
  return {
      "command": reports.command_line(), "machine": reports.machine_description(), "seed": seed,
      "workdir": workdir, "step": step, "dataset": root, "identity": identity, "split": split,
      "train_split": train_split, "image_size": size, "num_codes": stage.config.model.num_codes,
      "code_dim": stage.config.model.code_dim, "eval_frames": eval_refs,
      **report.to_dict(), "duration_s": round(time.time() - start, 2),
  }


def _radius_note(radius: float) -> str:
  if radius > 0:
    return (f"perturbations of a training frame with ||N||_F < {radius:.3g} keep every code index "
            "(Theorem 3.3)")
  return ("negative: gamma > d_C / 2, some training latent lies farther from its code than half "
          "the closest code spacing, so Theorem 3.3 certifies no perturbation however small; the "
          "measured stability below is what the codebook actually tolerates")


def markdown(r: dict[str, Any]) -> str:
  """The report: summary, per-layer Lipschitz factors and the stability table."""
  lip = r["lipschitz"]
  lines = [
      "# SOVQAE noise tolerance (LaDTalk Theorem 3.3)", "",
      f"- command: `{r['command']}`",
      f"- workdir: {r['workdir']} (step {r['step']}); dataset {r['dataset']}, identity "
      f"{r['identity']}, {r['num_eval_frames']} {r['split']} frames, {r['num_train_frames']} "
      f"{r['train_split']} frames for gamma, {r['image_size']} px; N = {r['num_codes']}, "
      f"c = {r['code_dim']}",
      f"- seed: {r['seed']}; machine: {r['machine']}; duration: {r['duration_s']:.1f} s", "",
      "| quantity | value |", "|---|---|",
      f"| d_C (minimal code distance, codes {r['closest_pair'][0]}, {r['closest_pair'][1]}) | "
      f"{r['d_c']:.4g} |",
      f"| gamma (max training-latent distance to its code; mean {r['gamma_train_mean']:.4g}) | "
      f"{r['gamma_train']:.4g} |",
      f"| gamma over the evaluated frames | {r['gamma_eval']:.4g} |",
      f"| L_eps upper bound, local ({lip['num_calibration']} calibration frames) | "
      f"{lip['bound']:.4g} |",
      f"| L_eps upper bound, loose (GroupNorm any input, attention sqrt(n)) | "
      f"{lip['bound_loose']:.4g} |",
      f"| radius (d_C - 2 gamma) / (2 L_eps), local | {r['radius']:.4g} |",
      f"| radius, loose | {r['radius_loose']:.4g} |", "",
      f"Radius: {_radius_note(r['radius'])}. ||N||_F is in the encoder's input units (images in "
      "[-1, 1]); the largest measured ||E(x+N) - E(x)||_F / ||N||_F below is a lower bound on the "
      "local Lipschitz constant, to set against the upper bound.", "",
      "## Index stability", "",
      "| degradation | strength | ||N||_F mean (min - max) | indices unchanged % | "
      "frames all unchanged % | latent shift mean | max shift / ||N||_F | covered (changed) |",
      "|---|---|---|---|---|---|---|---|",
  ]
  unit = {"blur": "sigma {:g} px", "noise": "std {:g}"}
  for row in r["rows"]:
    lines.append(
        f"| {row['kind']} | {unit[row['kind']].format(row['strength'])} | "
        f"{row['noise_norm_mean']:.3g} ({row['noise_norm_min']:.3g} - {row['noise_norm_max']:.3g})"
        f" | {100 * row['unchanged_fraction']:.1f} | "
        f"{100 * row['frames_unchanged_fraction']:.1f} | "
        f"{row['latent_shift_mean']:.3g} | {row['max_ratio']:.3g} | {row['covered_frames']} "
        f"({row['covered_changed']}) |")
  lines += ["", "## Lipschitz factors (product = the bound)", "",
            "| layer | kind | local | loose | conv: power estimate / certified |",
            "|---|---|---|---|---|"]
  for layer in lip["layers"]:
    d = layer["detail"]
    conv = ""
    if layer["kind"] == "conv":
      estimate = "-" if d["estimate"] is None else f"{d['estimate']:.4g}"
      conv = f"{estimate} / {d['upper']:.4g} on {d['input_hw'][0]}x{d['input_hw'][1]}"
    lines.append(f"| {layer['name']} | {layer['kind']} | {layer['local']:.4g} | "
                 f"{layer['loose']:.4g} | {conv} |")
  return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  quiet_library_logs()
  f = flags.FLAGS
  results = run(f.workdir, f.dataset, f.identity, f.split, f.train_split, f.frames, f.train_frames,
                f.calibration, [float(s) for s in f.blur_sigmas],
                [float(s) for s in f.noise_stds], f.power_iters, f.batch_size, f.seed)
  report = markdown(results)
  print(report)
  write_report(pathlib.Path(f.out or os.path.join(f.workdir, NAME)), NAME, results, report)


if __name__ == "__main__":
  define_flags()
  app.run(main)
