r"""LaDTalk Table 3 at small scale: the codebook regulariser's object and bound.

  python -m experiments.ladtalk.regulariser_ablation --dataset=runs/main/corpus \
      --base=experiments/configs/ladtalk/sovqae.py:demo,data.image_size=64,total_steps=600 \
      --wav2lip_workdir=runs/main/wav2lip --syncnet_workdir=runs/main/syncnet \
      --workdir=runs/regulariser_ablation --out=experiments/results/ladtalk_demo/regulariser_ablation.json

Trains one SOVQAE per variant from the same seed on the same identity (the base config's
`data.identities`), each in `<workdir>/<variant>` (relaunching resumes and skips finished runs):
  off                 no regulariser
  average, theta=2    |mean pairwise codebook distance - 2|
  average, theta=1    |mean pairwise codebook distance - 1|
  minimal, theta=2    |d_C - 2|
  minimal, theta=1    |d_C - 1|  (the paper's SOVQAE)
and reports for each: held-out reconstruction PSNR of the identity's test frames, d_C, codebook
usage / perplexity / dead codes, the Fig. 2 region experiment (blur and noise calibrated to the
paper's degraded PSNR: PSNR gain and % of code indices unchanged; `experiments.ladtalk.denoise_regions`)
and, with `--wav2lip_workdir`, LaDTalk's PSNR and LSE-C/D on held-out-voice clips through that
SOVQAE (`experiments.ladtalk.tables`; LSE with the SyncNet trained here). JSON + markdown table.
"""

from __future__ import annotations

import os
import time
from typing import Any

from absl import app, flags, logging

from experiments.configs.ladtalk import sovqae as sovqae_config
from experiments.ladtalk import denoise_regions
from experiments.logs import quiet_library_logs
from talking_heads.io import reports
from talking_heads.io.dataset import parse_identities
from talking_heads.systems.ladtalk import evaluation as ladtalk_eval
from talking_heads.training import loop

# (name, regulariser mode, theta), in Table 3's order with "off" first.
VARIANTS = (("off", "off", 1.0), ("average_theta2", "average", 2.0),
            ("average_theta1", "average", 1.0), ("minimal_theta2", "minimal", 2.0),
            ("minimal_theta1", "minimal", 1.0))

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags (only when run as a program: the module is also imported)."""
  flags.DEFINE_string("dataset", None, "Dataset root.")
  flags.DEFINE_string("base", "demo,data.image_size=64,total_steps=600",
      "Argument of experiments/configs/ladtalk/sovqae.py for every variant.")
  flags.DEFINE_string("workdir", "runs/regulariser_ablation", "Parent of the variants' workdirs.")
  flags.DEFINE_string("wav2lip_workdir", "", "Trained wav2lip workdir (LaDTalk LSE); optional.")
  flags.DEFINE_string("syncnet_workdir", "", "Trained syncnet workdir (LSE when no independent "
                      "expert is given; the second expert otherwise).")
  flags.DEFINE_string("sync_eval_workdir", "", "Trained syncnet_eval workdir: the independent "
                      "expert that scores LSE.")
  flags.DEFINE_integer("lse_clips", 2, "Held-out-voice clips per variant for LSE.")
  flags.DEFINE_integer("frames", 24, "Held-out frames in the region experiment.")
  flags.DEFINE_string("out", "regulariser_ablation.json", "JSON output; markdown beside it.")


def variant_config(base: str, mode: str, theta: float, root: str):
  config = sovqae_config.get_config(base)
  config.regulariser.mode, config.regulariser.theta = mode, theta
  config.data.root = root
  config.progress_bar = False
  return config


def run_variant(name: str, mode: str, theta: float, base: str, root: str, workdir: str,
                wav2lip_workdir: str, syncnet_workdir: str, lse_clips: int, frames: int,
                sync_eval_workdir: str = "") -> dict[str, Any]:
  config = variant_config(base, mode, theta, root)
  start = time.perf_counter()
  result = loop.train_and_evaluate(config, workdir)
  train_seconds = time.perf_counter() - start
  final_eval = result.eval_history[-1] if result.eval_history else {}
  regions = denoise_regions.run(workdir, root, None, "test", frames, None, None, [], [],
                                batch_size=16, seed=0)
  row = {"variant": name, "mode": mode, "theta": theta, "steps": result.step,
         "train_seconds": round(train_seconds, 1), "eval": final_eval,
         "blur": {k: regions["blur"][k] for k in ("strength", "degraded_psnr", "output_psnr",
                                                   "gain_db", "codes_unchanged_percent")},
         "noise": {k: regions["noise"][k] for k in ("strength", "degraded_psnr", "output_psnr",
                                                     "gain_db", "codes_unchanged_percent")},
         "ceiling_psnr": regions["ceiling_psnr"]}
  if wav2lip_workdir:
    identity = parse_identities(config.data.identities)[0]
    lad = ladtalk_eval.run(root, identity, ["heldout_voice"], wav2lip_workdir, workdir,
                           syncnet_workdir, max_clips=lse_clips,
                           sync_eval_workdir=sync_eval_workdir)
    summary = lad["splits"]["heldout_voice"]["summary"]
    row["ladtalk_heldout_voice"] = summary["ladtalk"]
    row["ground_truth_heldout_voice"] = summary["ground_truth"]
    row["lse_expert"] = lad["lse_expert"]
  return row


def _cell(row: dict[str, Any], *path: str, fmt: str = "{:.2f}") -> str:
  value: Any = row
  for key in path:
    if not isinstance(value, dict) or key not in value:
      return "-"
    value = value[key]
  return fmt.format(value) if isinstance(value, (int, float)) else str(value)


def markdown(results: dict[str, Any]) -> str:
  lines = ["# LaDTalk Table 3 at small scale: codebook regulariser ablation", "",
           f"Command: `{results['command']}`  ", f"Machine: {results['machine']}  ",
           f"Duration: {results['duration_s']} s; base config `{results['base']}`; seed "
           f"{results['seed']} for every variant", "",
           "| reg. object | theta | held-out PSNR | d_C | usage | perplexity | dead codes | "
           "blur gain (dB) | blur codes kept % | noise gain (dB) | noise codes kept % | "
           "LaDTalk PSNR | LSE-C | LSE-D | train s |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in results["variants"]:
    lines.append(
        f"| {r['mode']} | {r['theta'] if r['mode'] != 'off' else '-'} | {_cell(r, 'eval', 'psnr')} | "
        f"{_cell(r, 'eval', 'd_C', fmt='{:.4f}')} | {_cell(r, 'eval', 'usage', fmt='{:.3f}')} | "
        f"{_cell(r, 'eval', 'perplexity', fmt='{:.1f}')} | {_cell(r, 'eval', 'dead_codes', fmt='{:.0f}')} | "
        f"{_cell(r, 'blur', 'gain_db')} | {_cell(r, 'blur', 'codes_unchanged_percent', fmt='{:.1f}')} | "
        f"{_cell(r, 'noise', 'gain_db')} | {_cell(r, 'noise', 'codes_unchanged_percent', fmt='{:.1f}')} | "
        f"{_cell(r, 'ladtalk_heldout_voice', 'psnr')} | {_cell(r, 'ladtalk_heldout_voice', 'lse_c', fmt='{:.3f}')} | "
        f"{_cell(r, 'ladtalk_heldout_voice', 'lse_d', fmt='{:.3f}')} | {r['train_seconds']} |")
  lines += ["", "Paper (Usual dataset, 256 px, 8.5 GPU hours each): PSNR 31.21 / 34.18 / 34.56 / 38.97 for "
            "average theta=2 / average theta=1 / minimal theta=2 / minimal theta=1."]
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  quiet_library_logs()
  start = time.time()
  parent = os.path.abspath(FLAGS.workdir)
  rows = []
  for name, mode, theta in VARIANTS:
    logging.info("regulariser ablation: %s", name)
    rows.append(run_variant(name, mode, theta, FLAGS.base, FLAGS.dataset,
                            os.path.join(parent, name), FLAGS.wav2lip_workdir, FLAGS.syncnet_workdir,
                            FLAGS.lse_clips, FLAGS.frames, FLAGS.sync_eval_workdir))
  results = {"command": reports.command_line(), "machine": reports.machine_description(),
             "base": FLAGS.base, "seed": sovqae_config.get_config(FLAGS.base).seed,
             "variants": rows, "duration_s": round(time.time() - start, 1)}
  reports.write_results(FLAGS.out, results, markdown(results))
  print(markdown(results))


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["dataset"])
  app.run(main)
