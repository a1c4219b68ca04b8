r"""LaDTalk Fig. 2: a trained SOVQAE removes Gaussian blur and Gaussian noise from a face region.

  python -m experiments.ladtalk.denoise_regions --workdir=runs/sovqae_id01 --dataset=/tmp/demo_corpus \
      --identity=id01 --split=test --out=experiments/results/ladtalk/denoise_regions

LaDTalk (Sec. 3, Fig. 2) degrades a random 192 x 192 region of each 256 px frame with Gaussian
blur or Gaussian noise and reports the PSNR of the degraded frames (30.26 dB blur, 16.08 dB noise)
and of the SOVQAE outputs (35.78 dB, 30.36 dB) against the clean frames. Here: `--frames` evenly
spaced frames of the identity's `--split` clips at the stage's image size S; per frame one square
region of side round(192 / 256 S) at a seeded random position (the same region for every
degradation of that frame) and one seeded noise field (scaled by the std); the degradation is
`talking_heads.pipelines.frames.apply_degradation` (blur or noise of the whole frame, kept inside
the region, rounded to uint8). Reported, as means over frames (per-frame values in the JSON):
  degraded   PSNR(degraded, clean), whole frame and inside the region;
  output     PSNR(SOVQAE(degraded), clean), the same two ways; gain = output - degraded;
  ceiling    PSNR(SOVQAE(clean), clean): the reconstruction limit;
  codes      % of code indices of the degraded frame equal to the clean frame's.
PSNR: `talking_heads.metrics.image.psnr` on [0, 1] images (the SOVQAE output clipped to [0, 1],
not rounded). `--blur_sigma` / `--noise_std` "auto" picks the strength whose mean degraded
whole-frame PSNR matches the paper's (bisection to 0.01 dB); a sweep over `--sweep_blur` and
`--sweep_noise` is reported beside it. Writes denoise_regions.json, denoise_regions.md (command,
seed, machine, duration) and denoise_regions.png (rows: blurred, output, clean, output, noised)
to `--out` (default <workdir>/denoise_regions).
"""

from __future__ import annotations

import os
import pathlib
import time
from typing import Any, Callable

from absl import app, flags, logging
import cv2
import jax
import jax.numpy as jnp
import numpy as np

from experiments.ladtalk import noise_tolerance as nt_command
from experiments.logs import quiet_library_logs
from talking_heads.io import reports
from talking_heads.metrics import image as image_metrics
from talking_heads.pipelines import frames as frames_pipeline

NAME = "denoise_regions"
PAPER_DEGRADED_PSNR = {"blur": 30.26, "noise": 16.08}
PAPER_OUTPUT_PSNR = {"blur": 35.78, "noise": 30.36}
REGION_FRACTION = 192 / 256
# Bisection brackets: blur sigma in pixels, noise std in uint8 levels.
_BRACKETS = {"blur": (0.05, 40.0), "noise": (0.1, 255.0)}


def define_flags() -> None:
  """Flags of the command line only: importing the module defines none (no clashes in tests)."""
  flags.DEFINE_string("workdir", None, "Workdir of a trained SOVQAE stage.")
  flags.DEFINE_string("dataset", None, "Dataset root (default: the stage's data.root).")
  flags.DEFINE_string("identity", None, "Identity (default: the stage's first identity).")
  flags.DEFINE_string("split", "test", "Held-out split of the identity.")
  flags.DEFINE_string("out", None, "Output folder (default: <workdir>/denoise_regions).")
  flags.DEFINE_integer("frames", 48, "Frames (evenly spaced; 0: all).")
  flags.DEFINE_string("blur_sigma", "auto", "Blur sigma in pixels, or 'auto' (paper's PSNR).")
  flags.DEFINE_string("noise_std", "auto", "Noise std in uint8 levels, or 'auto' (paper's PSNR).")
  flags.DEFINE_list("sweep_blur", ["0.5", "1", "2", "4"], "Blur sigmas of the sweep.")
  flags.DEFINE_list("sweep_noise", ["10", "20", "40", "60"], "Noise stds of the sweep.")
  flags.DEFINE_integer("batch_size", 16, "Frames per SOVQAE call.")
  flags.DEFINE_integer("seed", 0, "Seed of the regions and noise fields.")
  flags.mark_flags_as_required(["workdir"])


def sample_regions(num_frames: int, size: int, seed: int
                   ) -> tuple[list[tuple[int, int, int, int]], list[int]]:
  """Per frame a square (top, left, side, side), side = round(192 / 256 size), and a noise seed."""
  side = max(1, round(REGION_FRACTION * size))
  rng = np.random.default_rng(seed)
  corners = rng.integers(0, size - side + 1, size=(num_frames, 2))
  seeds = rng.integers(2**63, size=num_frames)
  return [(int(t), int(l), side, side) for t, l in corners], [int(s) for s in seeds]


def degrade_regions(images: np.ndarray, kind: str, strength: float,
                    regions: list[tuple[int, int, int, int]], seeds: list[int]) -> np.ndarray:
  """uint8 [F, S, S, 3] with each frame's region blurred (sigma) or noised (std), as uint8."""
  if kind not in ("blur", "noise"):
    raise ValueError(f"kind must be 'blur' or 'noise', got {kind!r}")
  if not strength > 0:
    raise ValueError(f"{kind} strength must be positive, got {strength}")
  out = []
  for image, region, seed in zip(images, regions, seeds):
    params = frames_pipeline.DegradationParams(
        blur_sigma=strength if kind == "blur" else None, rescale_factor=None,
        noise_std=strength if kind == "noise" else None, region=region, noise_seed=seed)
    out.append(frames_pipeline.apply_degradation(image, params))
  return np.stack(out)


def region_crops(images: np.ndarray, regions: list[tuple[int, int, int, int]]) -> np.ndarray:
  """[F, side, side, C] crops of each frame's region."""
  return np.stack([im[t:t + h, l:l + w] for im, (t, l, h, w) in zip(images, regions)])


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Per-image PSNR in dB of [0, 1] float images [F, H, W, 3]."""
  return np.asarray(image_metrics.psnr(jnp.asarray(a), jnp.asarray(b), data_range=1.0))


def unit(images: np.ndarray) -> np.ndarray:
  return np.asarray(images, np.float32) / 255.0


def calibrate(images: np.ndarray, kind: str, target_db: float,
              regions: list[tuple[int, int, int, int]], seeds: list[int]) -> tuple[float, float]:
  """(strength, mean degraded PSNR): the strength whose mean whole-frame PSNR is `target_db`.

  Bisection on the strength (PSNR falls as it grows) to 0.01 dB, or the bracket's end when the
  target lies outside the bracket.
  """
  clean = unit(images)
  measure = lambda s: float(np.mean(psnr(unit(degrade_regions(images, kind, s, regions, seeds)),
                                         clean)))
  low, high = _BRACKETS[kind]
  value_low, value_high = measure(low), measure(high)
  if target_db >= value_low:
    return low, value_low
  if target_db <= value_high:
    return high, value_high
  strength, value = low, value_low
  for _ in range(60):
    strength = 0.5 * (low + high)
    value = measure(strength)
    if abs(value - target_db) < 0.01:
      break
    low, high = (strength, high) if value > target_db else (low, strength)
  return strength, value


def reconstruct_frames(reconstruct: Callable[[np.ndarray], tuple[Any, Any]], images: np.ndarray,
                       batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """(SOVQAE outputs in [0, 1] [F, S, S, 3], code indices [F, h, w]) of uint8 frames."""
  outs, codes = [], []
  for i in range(0, len(images), batch_size):
    recon, indices = reconstruct(images[i:i + batch_size])
    outs.append(np.asarray(recon))
    codes.append(np.asarray(indices))
  return np.concatenate(outs), np.concatenate(codes)


def evaluate_condition(reconstruct: Callable[[np.ndarray], tuple[Any, Any]], images: np.ndarray,
                       clean_codes: np.ndarray, kind: str, strength: float,
                       regions: list[tuple[int, int, int, int]], seeds: list[int],
                       batch_size: int) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
  """Metrics of one degradation, the degraded frames and the SOVQAE outputs."""
  clean = unit(images)
  degraded = degrade_regions(images, kind, strength, regions, seeds)
  output, codes = reconstruct_frames(reconstruct, degraded, batch_size)
  frame_in, frame_out = psnr(unit(degraded), clean), psnr(output, clean)
  crop = lambda x: region_crops(x, regions)
  region_in = psnr(crop(unit(degraded)), crop(clean))
  region_out = psnr(crop(output), crop(clean))
  result = {
      "kind": kind, "strength": float(strength),
      "degraded_psnr": float(frame_in.mean()), "output_psnr": float(frame_out.mean()),
      "gain_db": float((frame_out - frame_in).mean()),
      "region_degraded_psnr": float(region_in.mean()),
      "region_output_psnr": float(region_out.mean()),
      "region_gain_db": float((region_out - region_in).mean()),
      "codes_unchanged_percent": 100.0 * float(np.mean(codes == clean_codes)),
      "per_frame": {"degraded_psnr": frame_in.tolist(), "output_psnr": frame_out.tolist(),
                    "region_degraded_psnr": region_in.tolist(),
                    "region_output_psnr": region_out.tolist()},
  }
  return result, degraded, output


def _figure(clean: np.ndarray, rows: list[np.ndarray], count: int) -> np.ndarray:
  """uint8 grid: rows of `count` frames (blurred, output, clean, output, noised)."""
  to_uint8 = lambda x: x if x.dtype == np.uint8 else np.clip(np.rint(x * 255), 0, 255).astype(
      np.uint8)
  grid = [np.concatenate(list(to_uint8(r[:count])), axis=1) for r in rows[:2]]
  grid.append(np.concatenate(list(clean[:count]), axis=1))
  grid += [np.concatenate(list(to_uint8(r[:count])), axis=1) for r in rows[2:]]
  return np.concatenate(grid, axis=0)


def parse_strength(name: str, value: str) -> float | None:
  """A --blur_sigma / --noise_std value: None for "auto", else a positive number."""
  if value == "auto":
    return None
  try:
    strength = float(value)
  except ValueError:
    strength = 0.0
  if not strength > 0:
    raise ValueError(f"--{name} must be 'auto' or a positive number, got {value!r}")
  return strength


def run(workdir: str, dataset: str | None, identity: str | None, split: str, frames: int,
        blur_sigma: float | None, noise_std: float | None, sweep_blur: list[float],
        sweep_noise: list[float], batch_size: int, seed: int,
        out: pathlib.Path | None = None) -> dict[str, Any]:
  """The experiment as a dict (module docstring); writes the figure under `out`.

  `blur_sigma` / `noise_std` None: calibrated to the paper's degraded PSNR.
  """
  start = time.time()
  stage, params, step = nt_command.load_sovqae(workdir)
  root = dataset or stage.config.data.root
  if not root:
    raise ValueError("--dataset is required: the stage config has no data.root")
  identity = nt_command.default_identity(stage, identity)
  size = stage.config.data.image_size
  images, refs = nt_command.identity_frames(root, split, identity, size, frames)
  regions, seeds = sample_regions(len(images), size, seed)
  fn = jax.jit(stage.reconstruct)
  reconstruct = lambda x: fn(params, jnp.asarray(x))
  ceiling_out, clean_codes = reconstruct_frames(reconstruct, images, batch_size)
  ceiling = psnr(ceiling_out, unit(images))
  main_rows, figure_rows = {}, {}
  for kind, value in (("blur", blur_sigma), ("noise", noise_std)):
    strength = value
    if value is None:
      strength, _ = calibrate(images, kind, PAPER_DEGRADED_PSNR[kind], regions, seeds)
    result, degraded, output = evaluate_condition(reconstruct, images, clean_codes, kind, strength,
                                                  regions, seeds, batch_size)
    result.update(calibrated=value is None, paper_degraded_psnr=PAPER_DEGRADED_PSNR[kind],
                  paper_output_psnr=PAPER_OUTPUT_PSNR[kind])
    main_rows[kind] = result
    figure_rows[kind] = (degraded, output)
    logging.info("denoise_regions: %s %.3g: %.2f -> %.2f dB", kind, strength,
                 result["degraded_psnr"], result["output_psnr"])
  sweep = [evaluate_condition(reconstruct, images, clean_codes, kind, s, regions, seeds,
                              batch_size)[0]
           for kind, strengths in (("blur", sweep_blur), ("noise", sweep_noise))
           for s in strengths]
  if out is not None:
    out.mkdir(parents=True, exist_ok=True)
    figure = _figure(images, [*figure_rows["blur"], *reversed(figure_rows["noise"])],
                     count=min(6, len(images)))
    cv2.imwrite(str(out / f"{NAME}.png"), cv2.cvtColor(figure, cv2.COLOR_RGB2BGR))
  return {
      "command": reports.command_line(), "machine": reports.machine_description(),
      "seed": seed, "workdir": workdir, "step": step, "dataset": root, "identity": identity,
      "split": split, "image_size": size, "region_side": regions[0][2], "frames": refs,
      "ceiling_psnr": float(ceiling.mean()), "ceiling_per_frame": ceiling.tolist(),
      "blur": main_rows["blur"], "noise": main_rows["noise"], "sweep": sweep,
      "duration_s": round(time.time() - start, 2),
  }


_HEADER = ("| degradation | strength | degraded | output | gain | region degraded | "
           "region output | region gain | codes unchanged % |")
_RULE = "|---|---|---|---|---|---|---|---|---|---|"


def markdown(r: dict[str, Any]) -> str:
  """Fig. 2 table (calibrated rows beside the paper's) and the sweep."""
  lines = [
      "# SOVQAE region denoising (LaDTalk Fig. 2)", "",
      f"- command: `{r['command']}`",
      f"- workdir: {r['workdir']} (step {r['step']}); dataset {r['dataset']}, identity "
      f"{r['identity']}, {len(r['frames'])} {r['split']} frames at {r['image_size']} px, one "
      f"{r['region_side']} x {r['region_side']} region per frame",
      f"- seed: {r['seed']}; machine: {r['machine']}; duration: {r['duration_s']:.1f} s",
      f"- reconstruction ceiling PSNR(SOVQAE(clean), clean): {r['ceiling_psnr']:.2f} dB", "",
      "PSNR in dB, means over frames; 'region' = inside the degraded square only.", "",
      _HEADER + " paper degraded -> output |", _RULE,
  ]
  unit_text = {"blur": "sigma {:.3g} px", "noise": "std {:.3g}"}

  def row(x: dict[str, Any], paper: str) -> str:
    return (f"| {x['kind']} | {unit_text[x['kind']].format(x['strength'])} | "
            f"{x['degraded_psnr']:.2f} | {x['output_psnr']:.2f} | {x['gain_db']:+.2f} | "
            f"{x['region_degraded_psnr']:.2f} | {x['region_output_psnr']:.2f} | "
            f"{x['region_gain_db']:+.2f} | {x['codes_unchanged_percent']:.1f} | {paper} |")

  for kind in ("blur", "noise"):
    x = r[kind]
    note = " (calibrated)" if x["calibrated"] else ""
    lines.append(row(x, f"{x['paper_degraded_psnr']:.2f} -> {x['paper_output_psnr']:.2f}{note}"))
  lines += ["", "## Sweep", "", _HEADER + " |", _RULE]
  lines += [row(x, "") for x in r["sweep"]]
  return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  quiet_library_logs()
  f = flags.FLAGS
  try:
    blur_sigma = parse_strength("blur_sigma", f.blur_sigma)
    noise_std = parse_strength("noise_std", f.noise_std)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  out = pathlib.Path(f.out or os.path.join(f.workdir, NAME))
  results = run(f.workdir, f.dataset, f.identity, f.split, f.frames, blur_sigma, noise_std,
                [float(s) for s in f.sweep_blur], [float(s) for s in f.sweep_noise],
                f.batch_size, f.seed, out)
  report = markdown(results)
  print(report)
  nt_command.write_report(out, NAME, results, report)


if __name__ == "__main__":
  define_flags()
  app.run(main)
