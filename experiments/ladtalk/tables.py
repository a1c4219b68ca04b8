r"""LaDTalk Tables 1 and 2 at small scale (`talking_heads.systems.ladtalk.evaluation`).

  python -m experiments.ladtalk.tables --dataset=runs/main/corpus --identity=id01 \
      --wav2lip_workdir=runs/main/ladtalk/wav2lip --sovqae_workdir=runs/main/ladtalk/sovqae \
      --syncnet_workdir=runs/main/experts/syncnet \
      --sync_eval_workdir=runs/main/experts/syncnet_eval --splits=test,heldout_voice \
      --out=experiments/results/ladtalk_demo/tables.json
"""

from __future__ import annotations


from absl import app, flags

from talking_heads.io import reports
from talking_heads.systems.ladtalk import evaluation

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags (only when run as a program: the module is also imported)."""
  flags.DEFINE_string("dataset", None, "Dataset root (the dataset format).")
  flags.DEFINE_string("identity", "id01", "The identity the SOVQAE was trained on.")
  flags.DEFINE_list("splits", ["test", "heldout_voice"], "Splits to evaluate.")
  flags.DEFINE_string("wav2lip_workdir", None, "Trained `wav2lip` stage workdir.")
  flags.DEFINE_string("sovqae_workdir", None, "Trained `sovqae` stage workdir.")
  flags.DEFINE_string("syncnet_workdir", None, "Trained `syncnet` stage workdir (LSE when no "
                      "independent expert is given; the second expert otherwise).")
  flags.DEFINE_string("sync_eval_workdir", "", "Trained `syncnet_eval` workdir: the independent "
                      "expert that scores LSE (syncnet_v2.model in --weights_dir wins).")
  flags.DEFINE_string("weights_dir", "", "Folder with pt_inception-2015-12-05 (FID) and/or "
                      "syncnet_v2.model (LSE).")
  flags.DEFINE_integer("max_clips", 0, "Clips per split (0: all).")
  flags.DEFINE_string("out", "ladtalk_tables.json", "JSON output; markdown beside it.")


def main(argv):
  del argv
  reports.timed_results(FLAGS.out, lambda: evaluation.run(
      FLAGS.dataset, FLAGS.identity, FLAGS.splits, FLAGS.wav2lip_workdir, FLAGS.sovqae_workdir,
      FLAGS.syncnet_workdir, FLAGS.weights_dir, FLAGS.max_clips,
      sync_eval_workdir=FLAGS.sync_eval_workdir), evaluation.markdown)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["dataset", "wav2lip_workdir", "sovqae_workdir", "syncnet_workdir"])
  app.run(main)
