r"""Table 3's reconstruction under two DDIM timestep spacings: does the choice matter?

  python -m experiments.dae_talker.spacing_comparison --dataset=runs/main/corpus --identity=id01 \
      --dae_workdir=runs/main/dae_talker/dae --steps=25,100 \
      --out=experiments/results/dae_talker_demo/spacing_comparison.json

The DAE configs' tiny/demo variants sample at "linspace" timesteps (999, 989, ..., 0 for 100 steps)
and the paper variant at diffae's "ddim" ones (990, 980, ..., 0): the first step starts from
t = 999 (where x_T is pure noise) or from t = 990 (where a little signal is assumed). This scores
the same autoencoder, frames and seeds under both, at each step count: reconstruction PSNR/SSIM
from the frame's latent with a random x_T, and with the x_T found by DDIM inversion under that
spacing (`evaluation.reconstruction_table`, Table 3's two rows). Writes JSON and a markdown table.
"""

from __future__ import annotations

import types

from absl import app, flags
import numpy as np

from talking_heads.io import dataset as dataset_lib
from talking_heads.io import reports
from talking_heads.pipelines import base as pipelines_base
from talking_heads.systems.dae_talker import dae as dae_system
from talking_heads.systems.dae_talker import evaluation
from talking_heads.training import restore

FLAGS = flags.FLAGS
SPACINGS = ("linspace", "ddim")


def define_flags() -> None:
  flags.DEFINE_string("dataset", None, "Corpus root.")
  flags.DEFINE_string("identity", "id01", "Identity whose test frames are reconstructed.")
  flags.DEFINE_string("dae_workdir", None, "Trained 'dae' workdir (newest checkpoint, EMA).")
  flags.DEFINE_list("steps", ["25", "100"], "DDIM step counts.")
  flags.DEFINE_integer("stride", 16, "Every stride-th frame of the identity's test clips.")
  flags.DEFINE_integer("batch_size", 16, "Frames per call.")
  flags.DEFINE_integer("seed", 0, "Seed of the random x_T.")
  flags.DEFINE_string("out", None, "JSON output path (a .md beside it).")
  flags.mark_flags_as_required(["dataset", "dae_workdir", "out"])


def compare(dataset: str, identity: str, dae_workdir: str, steps: list[int], stride: int,
            batch_size: int, seed: int) -> dict:
  """{spacing: {steps: Table 3 rows}} for one autoencoder."""
  stage, state, step = restore.restore_stage(dae_workdir, expected_stage="dae")
  variables = stage.variables(state)
  size = int(stage.config.data.image_size)
  clips = dataset_lib.Dataset(dataset).identity_clips("test", identity)
  frames = np.concatenate([pipelines_base.resize_frames(np.asarray(c.frames[::stride]), size)
                           for c in clips])                           # [N, H, W, 3] uint8
  results = {"dae": f"{dae_workdir} step {step}", "trained_spacing":
             stage.config.diffusion.spacing, "frames": int(frames.shape[0]), "spacings": {}}
  for spacing in SPACINGS:
    config = stage.config.copy_and_resolve_references()
    config.diffusion.spacing = spacing
    model = types.SimpleNamespace(dae=dae_system.DAEStage(config), dae_variables=variables)
    results["spacings"][spacing] = {
        str(n): {"first_timesteps": [int(t) for t in model.dae.timesteps(n)[:2]],
                 **evaluation.reconstruction_table(model, frames, n, seed, batch_size, None)}
        for n in steps}
  return results


def markdown(results: dict) -> str:
  lines = [f"# DDIM spacing: Table 3's reconstruction ({results['dae']}, {results['frames']} test "
           f"frames; trained config's spacing: {results['trained_spacing']})", "",
           f"Command: `{results['command']}`  ", f"Machine: {results['machine']}  ",
           f"Duration: {results['duration_s']} s", "",
           "| spacing | steps | first timesteps | x_T | PSNR | SSIM | seconds |",
           "|---|---|---|---|---|---|---|"]
  for spacing, by_steps in results["spacings"].items():
    for n, rows in by_steps.items():
      for name, row in rows.items():
        if name == "first_timesteps":
          continue
        lines.append(f"| {spacing} | {n} | {rows['first_timesteps']} | {name} | "
                     f"{row['psnr']:.2f} | {row['ssim']:.3f} | {row['seconds']:.1f} |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  reports.timed_results(FLAGS.out, lambda: compare(
      FLAGS.dataset, FLAGS.identity, FLAGS.dae_workdir, [int(s) for s in FLAGS.steps],
      FLAGS.stride, FLAGS.batch_size, FLAGS.seed), markdown)

if __name__ == "__main__":
  define_flags()
  app.run(main)
