r"""PIR Tables 1 and 2 at small scale with the expression check (`talking_heads.systems.pir.evaluation`).

  python -m experiments.pir.tables --dataset=runs/main/corpus --identity=id01 \
      --audio2exp_workdir=runs/pir_audio2exp_demo --renderer_workdir=runs/pir_renderer_demo \
      --syncnet_workdir=runs/main/experts/syncnet \
      --sync_eval_workdir=runs/main/experts/syncnet_eval \
      --regressor_workdir=runs/main/experts/face_regressor --splits=test,heldout_voice \
      --out=experiments/results/pir_demo/tables.json

Then `python -m experiments.reproduce --paper=pir --results=experiments/results/pir_demo` sets
the rows beside the paper's.
"""

from __future__ import annotations

import time

from absl import app, flags

from talking_heads.io import reports
from talking_heads.systems.pir import evaluation

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags (only when run as a program: the module is also imported)."""
  flags.DEFINE_string("dataset", None, "Dataset root (the dataset format).")
  flags.DEFINE_string("identity", "id01", "The identity PIR's components were trained on.")
  flags.DEFINE_list("splits", list(evaluation.SPLITS), "Splits to evaluate.")
  flags.DEFINE_string("audio2exp_workdir", None, "Trained `pir_audio2exp` workdir (A).")
  flags.DEFINE_string("renderer_workdir", None, "Trained `pir_renderer` workdir (C).")
  flags.DEFINE_string("triplane_workdir", "", "Trained `pir_triplane` workdir (B; default: the "
                      "one the renderer trained against).")
  flags.DEFINE_string("syncnet_workdir", "", "Trained `syncnet` workdir (LSE when no independent "
                      "expert is given; the second expert otherwise).")
  flags.DEFINE_string("sync_eval_workdir", "", "Trained `syncnet_eval` workdir: the independent "
                      "expert that scores AVConf (syncnet_v2.model in --weights_dir wins).")
  flags.DEFINE_string("weights_dir", "", "Folder with syncnet_v2.model (the official SyncNet).")
  flags.DEFINE_string("regressor_workdir", "", "Trained `face_regressor` workdir (LMD's mouth "
                      "landmarks; without it LMD is reported as unavailable).")
  flags.DEFINE_integer("max_clips", 0, "Clips per split (0: all).")
  flags.DEFINE_integer("max_frames", 0, "Frames per clip (0: all).")
  flags.DEFINE_integer("batch_size", 16, "Frames per renderer call.")
  flags.DEFINE_string("out", "pir_tables.json", "JSON output; markdown beside it.")


def main(argv):
  del argv
  start = time.time()
  results = evaluation.run(
      FLAGS.dataset, FLAGS.identity, FLAGS.audio2exp_workdir, FLAGS.renderer_workdir,
      triplane_workdir=FLAGS.triplane_workdir, splits=tuple(FLAGS.splits),
      syncnet_workdir=FLAGS.syncnet_workdir, sync_eval_workdir=FLAGS.sync_eval_workdir,
      weights_dir=FLAGS.weights_dir, regressor_workdir=FLAGS.regressor_workdir,
      max_clips=FLAGS.max_clips, max_frames=FLAGS.max_frames, batch_size=FLAGS.batch_size)
  results.update(command=reports.command_line(),
                 machine=reports.machine_description(), duration_s=round(time.time() - start, 1))
  reports.write_results(FLAGS.out, results, evaluation.markdown(results))
  print(evaluation.markdown(results))


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["dataset", "audio2exp_workdir", "renderer_workdir"])
  app.run(main)
