r"""PIR's tables at small scale (`talking_heads.systems.pir.evaluation`): Tables 1 and 2 with the
expression check, supplementary Table 1 (context length k) and the ablations with the geometric
checks, into one JSON (markdown beside it).

  python -m experiments.pir.tables --dataset=runs/main/corpus --identity=id01 \
      --audio2exp_workdir=runs/pir_audio2exp_demo --renderer_workdir=runs/pir_renderer_demo \
      --syncnet_workdir=runs/main/experts/syncnet \
      --sync_eval_workdir=runs/main/experts/syncnet_eval \
      --regressor_workdir=runs/main/experts/face_regressor --splits=test,heldout_voice \
      --parts=tables,context,ablations \
      --contexts=1:runs/pir_a_k1,10:runs/pir_a_k10,50:runs/pir_audio2exp_demo,100:runs/pir_a_k100 \
      --no_jitter_renderer_workdir=runs/pir_renderer_s0 \
      --frame_triplane_workdir=runs/pir_triplane_frame \
      --out=experiments/results/pir_demo/tables.json

Each A of the sweep trains with `--config.data.window=k` (the demo's clips are 2-8 s: k = 100
keeps only the clips of at least 4 s); the s = 0 renderer with `--config.jitter.strength=0`
against the same B; the whole-frame B with `--config.loss.region=frame`.
Then `python -m experiments.reproduce --paper=pir --results=experiments/results/pir_demo` sets
the rows beside the paper's.
"""

from __future__ import annotations


import numpy as np
from absl import app, flags

from talking_heads.io import reports
from talking_heads.rendering.camera import JITTER_PIXELS
from talking_heads.systems.head_pose import parse_pose
from talking_heads.systems.pir import evaluation

FLAGS = flags.FLAGS
PARTS = ("tables", "context", "ablations")


def define_flags() -> None:
  """The command's flags (only when run as a program: the module is also imported)."""
  flags.DEFINE_string("dataset", None, "Dataset root (the dataset format).")
  flags.DEFINE_string("identity", "id01", "The identity PIR's components were trained on.")
  flags.DEFINE_list("parts", ["tables"], f"What to evaluate, of {PARTS}.")
  flags.DEFINE_list("splits", list(evaluation.SPLITS), "Splits of Tables 1/2.")
  flags.DEFINE_string("audio2exp_workdir", "", "Trained `pir_audio2exp` workdir (A; tables, "
                      "ablations).")
  flags.DEFINE_string("renderer_workdir", None, "Trained `pir_renderer` workdir (C).")
  flags.DEFINE_string("triplane_workdir", "", "Trained `pir_triplane` workdir (B; default: the "
                      "one the renderer trained against).")
  flags.DEFINE_list("contexts", [], "context: k:WORKDIR pairs, each a `pir_audio2exp` workdir "
                    "trained with data.window = k.")
  flags.DEFINE_string("context_split", "test", "context: the split of the sweep.")
  flags.DEFINE_string("no_jitter_renderer_workdir", "", "ablations: a `pir_renderer` workdir "
                      "trained with jitter.strength = 0 against the same B.")
  flags.DEFINE_string("frame_triplane_workdir", "", "ablations: a `pir_triplane` workdir trained "
                      "with loss.region = frame (without rendering).")
  flags.DEFINE_string("pose_offset", "yaw=15,pitch=0,roll=0", "ablations: the changed pose of "
                      "the geometric check, degrees.")
  flags.DEFINE_float("perturbation", JITTER_PIXELS, "ablations: the test-time K perturbation, "
                     "pixels of a 512 px frame.")
  flags.DEFINE_string("syncnet_workdir", "", "Trained `syncnet` workdir (LSE when no independent "
                      "expert is given; the second expert otherwise).")
  flags.DEFINE_string("sync_eval_workdir", "", "Trained `syncnet_eval` workdir: the independent "
                      "expert that scores AVConf (syncnet_v2.model in --weights_dir wins).")
  flags.DEFINE_string("weights_dir", "", "Folder with syncnet_v2.model (the official SyncNet).")
  flags.DEFINE_string("regressor_workdir", "", "Trained `face_regressor` workdir (LMD's mouth "
                      "landmarks and the landmark errors; without it they are unavailable).")
  flags.DEFINE_integer("max_clips", 0, "Clips per split (0: all).")
  flags.DEFINE_integer("max_frames", 0, "Frames per clip (0: all).")
  flags.DEFINE_integer("batch_size", 16, "Frames per renderer call.")
  flags.DEFINE_string("out", "pir_tables.json", "JSON output; markdown beside it.")


def parse_contexts(pairs: list[str]) -> list[tuple[int, str]]:
  """["1:WORKDIR", ...] -> [(1, WORKDIR), ...]."""
  out = []
  for pair in pairs:
    k, sep, workdir = pair.partition(":")
    if not sep or not k.strip().isdigit() or not workdir:
      raise app.UsageError(f"--contexts: expected k:WORKDIR, got {pair!r}")
    out.append((int(k), workdir))
  return out


def pose_offset_degrees(spec: str) -> list[float]:
  """A `head_pose.parse_pose` spec of one offset -> [yaw, pitch, roll] degrees."""
  offset = parse_pose(spec, 1)
  return [0.0, 0.0, 0.0] if offset is None else [float(d) for d in np.rad2deg(offset[0])]


def main(argv):
  del argv
  unknown = sorted(set(FLAGS.parts) - set(PARTS))
  if unknown:
    raise app.UsageError(f"--parts: unknown {unknown}; choose from {PARTS}")
  if set(FLAGS.parts) & {"tables", "ablations"} and not FLAGS.audio2exp_workdir:
    raise app.UsageError("--parts=tables/ablations need --audio2exp_workdir")
  reports.timed_results(FLAGS.out, compute, evaluation.markdown)


def compute() -> dict:
  """The parts in --parts, from the flags."""
  common = dict(regressor_workdir=FLAGS.regressor_workdir, max_clips=FLAGS.max_clips,
                max_frames=FLAGS.max_frames, batch_size=FLAGS.batch_size)
  experts = dict(syncnet_workdir=FLAGS.syncnet_workdir, sync_eval_workdir=FLAGS.sync_eval_workdir,
                 weights_dir=FLAGS.weights_dir)
  results = {"identity": FLAGS.identity}
  if "tables" in FLAGS.parts:
    results.update(evaluation.run(
        FLAGS.dataset, FLAGS.identity, FLAGS.audio2exp_workdir, FLAGS.renderer_workdir,
        triplane_workdir=FLAGS.triplane_workdir, splits=tuple(FLAGS.splits), **experts, **common))
  if "context" in FLAGS.parts:
    results["context_length"] = evaluation.context_table(
        FLAGS.dataset, FLAGS.identity, parse_contexts(FLAGS.contexts), FLAGS.renderer_workdir,
        triplane_workdir=FLAGS.triplane_workdir, split=FLAGS.context_split, **experts, **common)
  if "ablations" in FLAGS.parts:
    results["ablations"] = evaluation.run_ablations(
        FLAGS.dataset, FLAGS.identity, FLAGS.audio2exp_workdir, FLAGS.renderer_workdir,
        triplane_workdir=FLAGS.triplane_workdir,
        no_jitter_renderer_workdir=FLAGS.no_jitter_renderer_workdir,
        frame_triplane_workdir=FLAGS.frame_triplane_workdir,
        pose_offset=pose_offset_degrees(FLAGS.pose_offset),
        perturbation=FLAGS.perturbation, **common)
  return results


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["dataset", "renderer_workdir"])
  app.run(main)
