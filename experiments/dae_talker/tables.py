r"""DAE-Talker's Tables 1-4 at small scale (`talking_heads.systems.dae_talker.evaluation`).

  python -m experiments.dae_talker.tables --dataset=/tmp/demo_corpus --identity=id01 \
      --dae_workdir=runs/dae_demo --speech2latent_workdir=runs/speech2latent_demo \
      --fixed_segments_workdir=runs/speech2latent_fixed_demo --syncnet_workdir=runs/syncnet_demo \
      --regressor_workdir=runs/face_regressor_demo \
      --out=experiments/results/dae_talker_demo/tables.json
"""

from __future__ import annotations


from absl import app, flags

from talking_heads.io import reports
from talking_heads.systems.dae_talker import evaluation

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags (only when run as a program: the module is also imported)."""
  flags.DEFINE_string("dataset", None, "Corpus root.")
  flags.DEFINE_string("identity", "id01", "The identity the autoencoder was trained on.")
  flags.DEFINE_string("dae_workdir", None, "Trained diffusion autoencoder.")
  flags.DEFINE_string("speech2latent_workdir", None, "speech2latent (pseudo-sentences).")
  flags.DEFINE_string("fixed_segments_workdir", "", "speech2latent trained on fixed segments.")
  flags.DEFINE_string("syncnet_workdir", None, "The colour SyncNet expert (training expert; LSE "
                      "only when no independent one is given).")
  flags.DEFINE_string("sync_eval_workdir", "", "The independent expert (`syncnet_eval`) for LSE.")
  flags.DEFINE_string("regressor_workdir", None, "Trained face regressor (landmarks, pose).")
  flags.DEFINE_string("weights_dir", "", "Folder with the public LPIPS files (optional).")
  flags.DEFINE_list("tables", ["1", "2", "3", "4"], "Tables to compute.")
  flags.DEFINE_list("rows", list(evaluation.ROWS),
                    "Rows of Tables 1/2 to compute (the true video always).")
  flags.DEFINE_integer("clips", 2, "Clips per test set.")
  flags.DEFINE_integer("frames", 50, "Frames per clip.")
  flags.DEFINE_integer("recon_stride", 8, "Table 3: every n-th test frame.")
  flags.DEFINE_integer("sample_steps", 100, "DDIM steps.")
  flags.DEFINE_integer("batch_size", 50, "Frames per decoder call.")
  flags.DEFINE_float("yaw_degrees", 1.5, "Table 4: |yaw| of the left/right poses.")
  flags.DEFINE_integer("seed", 0, "Seed of x_T.")
  flags.DEFINE_string("out", None, "Output JSON (a markdown table is written beside it).")


def main(argv):
  del argv
  reports.timed_results(FLAGS.out, lambda: evaluation.run(
      FLAGS.dataset, FLAGS.identity, FLAGS.dae_workdir, FLAGS.speech2latent_workdir,
      FLAGS.fixed_segments_workdir, FLAGS.syncnet_workdir, FLAGS.regressor_workdir,
      tables=tuple(FLAGS.tables), clips=FLAGS.clips, frames=FLAGS.frames,
      recon_stride=FLAGS.recon_stride, sample_steps=FLAGS.sample_steps,
      batch_size=FLAGS.batch_size, yaw_degrees=FLAGS.yaw_degrees, seed=FLAGS.seed,
      weights_dir=FLAGS.weights_dir, rows=tuple(FLAGS.rows),
      sync_eval_workdir=FLAGS.sync_eval_workdir), evaluation.markdown)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["dataset", "dae_workdir", "speech2latent_workdir",
                                "syncnet_workdir", "regressor_workdir", "out"])
  app.run(main)
