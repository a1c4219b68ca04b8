r"""FD2Talk's Tables 1-3 at small scale (`talking_heads.systems.fd2talk.evaluation`).

  python -m experiments.fd2talk.tables --dataset=runs/main/corpus \
      --expression_workdir=runs/fd2talk_expression_demo --pose_workdir=runs/fd2talk_pose_demo \
      --unet_workdir=runs/fd2talk_unet_demo --syncnet_workdir=runs/syncnet_demo \
      --sync_eval_workdir=runs/syncnet_eval_demo \
      [--joint_workdir=runs/fd2talk_joint_demo] \
      [--concatenated_unet_workdir=runs/fd2talk_unet_concatenated_demo] \
      [--no_mask_expression_workdir=runs/fd2talk_expression_no_mask_demo] \
      [--no_sync_expression_workdir=runs/fd2talk_expression_no_sync_demo] \
      --out=experiments/results/fd2talk_demo/tables.json

The ablation rows (Tables 2 and 3) need their own trainings, each one config override away from
the full model's (experiments/configs/fd2talk/motion.py and unet.py name them):
--config.model.motion=joint, --config.model.conditioning=concatenated,
--config.model.alignment_mask=false, --config.loss.sync_weight=0. A row whose workdir is not
given is reported as not run. `python -m experiments.reproduce --paper=fd2talk
--results=<the --out folder>` sets the rows beside the paper's.
"""

from __future__ import annotations


from absl import app, flags

from talking_heads.io import reports
from talking_heads.systems.fd2talk import evaluation

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags (only when run as a program: the module is also imported)."""
  flags.DEFINE_string("dataset", None, "Corpus root (with heldout_voice / heldout_identity).")
  flags.DEFINE_string("expression_workdir", None, "The Exp Transformer (fd2talk_motion).")
  flags.DEFINE_string("pose_workdir", None, "The Pose Transformer (fd2talk_motion, pose).")
  flags.DEFINE_string("unet_workdir", None, "The latent UNet (fd2talk_unet).")
  flags.DEFINE_string("joint_workdir", "", "Table 2: the joint single DiT (model.motion=joint).")
  flags.DEFINE_string("concatenated_unet_workdir", "",
                      "Table 2: the UNet with concatenated conditions.")
  flags.DEFINE_string("no_mask_expression_workdir", "",
                      "Table 3: the Exp Transformer without the alignment mask.")
  flags.DEFINE_string("no_mask_pose_workdir", "",
                      "Table 3: the Pose Transformer without the mask (default: the full one).")
  flags.DEFINE_string("no_sync_expression_workdir", "",
                      "Table 3: the Exp Transformer trained without L_sync.")
  flags.DEFINE_string("syncnet_workdir", "", "The colour SyncNet expert (LSE only when no "
                      "independent one is given).")
  flags.DEFINE_string("sync_eval_workdir", "", "The independent expert (`syncnet_eval`) for LSE.")
  flags.DEFINE_string("weights_dir", "", "Folder with syncnet_v2.model and the Inception "
                      "weights (FID only with them).")
  flags.DEFINE_list("sets", list(evaluation.SETS), "Corpus splits to evaluate.")
  flags.DEFINE_integer("clips", 2, "Clips per set.")
  flags.DEFINE_integer("frames", 50, "Frames per clip.")
  flags.DEFINE_integer("ddim_steps", 50, "DDIM steps of the DiTs and the UNet.")
  flags.DEFINE_integer("seed", 0, "Seed of every x_T.")
  flags.DEFINE_integer("seeds", 3, "Seeds for the pose diversity across seeds.")
  flags.DEFINE_integer("batch_size", 16, "Frames per UNet call.")
  flags.DEFINE_string("out", None, "Output JSON (a markdown table is written beside it).")


def main(argv):
  del argv
  reports.timed_results(FLAGS.out, lambda: evaluation.run(
      FLAGS.dataset, evaluation.Workdirs(FLAGS.expression_workdir, FLAGS.pose_workdir,
                                         FLAGS.unet_workdir),
      syncnet_workdir=FLAGS.syncnet_workdir, sync_eval_workdir=FLAGS.sync_eval_workdir,
      weights_dir=FLAGS.weights_dir, joint_workdir=FLAGS.joint_workdir,
      concatenated_unet_workdir=FLAGS.concatenated_unet_workdir,
      no_mask_expression_workdir=FLAGS.no_mask_expression_workdir,
      no_mask_pose_workdir=FLAGS.no_mask_pose_workdir,
      no_sync_expression_workdir=FLAGS.no_sync_expression_workdir, sets=tuple(FLAGS.sets),
      clips=FLAGS.clips, frames=FLAGS.frames, ddim_steps=FLAGS.ddim_steps, seed=FLAGS.seed,
      seeds=FLAGS.seeds, batch_size=FLAGS.batch_size), evaluation.markdown)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["dataset", "expression_workdir", "unet_workdir", "out"])
  app.run(main)
