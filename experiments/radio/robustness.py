r"""RADIO's reference robustness, measured against ground truth, and the mouth-copy index.

  python -m experiments.radio.robustness --dataset=runs/radio_corpus \
      --workdir=D=runs/radio_demo --workdir=A=runs/radio_A \
      --regressor_workdir=runs/face_regressor_radio \
      --sync_eval_workdir=runs/main/experts/syncnet_eval \
      --syncnet_workdir=runs/main/experts/syncnet \
      --yaw=-20,-10,0,10,20 --mouth_opening=0,0.05,0.1,0.15,0.2 --smile=0,0.5,1 \
      --max_clips=10 --out=experiments/results/radio_demo/robustness.json

Each held-out identity's references are rendered by the corpus's own renderer with one factor set
and the others at rest (`data.references`: yaw / pitch in degrees, the mouth opening of the
landmarks, expression coefficients); every clip of the identity is dubbed with each of them by
each `radio` workdir, and the output is scored against the clip's true frames per factor level;
the mouth-copy index needs a landmark measure on the outputs (the corpus-trained face regressor,
`--regressor_workdir`, e.g. `experiments/configs/experts/face_regressor.py:demo` trained with
`--config.data.root=<this corpus>`). Scoring: `talking_heads.systems.radio.evaluation`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from absl import app, flags

from data import references as references_lib
from data import synthetic
from experiments.radio import tables
from talking_heads.face import morphable
from talking_heads.io import reports
from talking_heads.systems.experts import sync_expert
from talking_heads.systems.radio import evaluation
from talking_heads.systems.radio import inference

FLAGS = flags.FLAGS
FACTORS = ("yaw", "pitch", "mouth_opening")


def define_flags() -> None:
  """The command's flags (only when run as a program)."""
  flags.DEFINE_string("dataset", None, "A data.synthetic corpus with a heldout_identity split.")
  flags.DEFINE_multi_string("workdir", [], "NAME=WORKDIR of a trained `radio` workdir to study "
                            "(RADIO, ablation A, ...).")
  flags.DEFINE_list("yaw", ["-20", "-10", "0", "10", "20"], "Reference yaw levels (degrees).")
  flags.DEFINE_list("pitch", [], "Reference pitch levels (degrees).")
  flags.DEFINE_list("mouth_opening", ["0", "0.05", "0.1", "0.15", "0.2"],
                    "Reference mouth openings (inner-lip gap / outer eye corners).")
  flags.DEFINE_list("smile", ["0", "0.5", "1"], "Reference smile coefficients.")
  flags.DEFINE_string("regressor_workdir", "", "Face regressor trained on this corpus: the "
                      "outputs' landmarks (the mouth-copy index; without it, not measured).")
  flags.DEFINE_string("syncnet_workdir", "", "Trained `syncnet` workdir (LSE fallback).")
  flags.DEFINE_string("sync_eval_workdir", "", "Trained `syncnet_eval` workdir (the LSE expert).")
  flags.DEFINE_string("weights_dir", "", "Folder with the LPIPS files and/or syncnet_v2.model.")
  flags.DEFINE_integer("max_clips", 0, "Held-out-identity clips (0: all).")
  flags.DEFINE_integer("max_frames", 0, "Frames per clip (0: all).")
  flags.DEFINE_integer("batch_size", 16, "Frames per generator call.")
  flags.DEFINE_string("out", "radio_robustness.json", "JSON output; markdown beside it.")


def controlled_references(dataset: str, identities: Sequence[str],
                          levels: Mapping[str, Sequence[float]]
                          ) -> dict[str, list[evaluation.ControlledReference]]:
  """Identity -> its references, one per (factor, level) of `levels` (factors: yaw, pitch,
  mouth_opening or an expression coefficient), rendered as the corpus renders its clips."""
  plan = references_lib.corpus_plan(dataset)
  config = plan.config
  out = {}
  for identity in identities:
    renderer = synthetic.identity_renderer(plan.identities[identity], config.size, plan.camera,
                                           config.align)
    out[identity] = []
    for factor, values in levels.items():
      for level in values:
        factors = (references_lib.ReferenceFactors(**{factor: level}) if factor in FACTORS else
                   references_lib.ReferenceFactors(expression={factor: level}))
        ref = references_lib.render_reference(plan, identity, factors, renderer)
        out[identity].append(evaluation.ControlledReference(
            factor, float(level), ref.frame, float(morphable.mouth_opening(ref.landmarks))))
  return out


def study(dataset: str, workdirs: Sequence[tuple[str, str]], levels: Mapping[str, Sequence[float]],
          judges: evaluation.Judges, max_clips: int = 0, max_frames: int = 0,
          batch_size: int = 16) -> dict[str, object]:
  """The robustness results of every (name, `radio` workdir) on the held-out identities."""
  clips = evaluation.heldout_clips(dataset, max_clips, max_frames)
  refs = controlled_references(dataset, sorted({c.identity for c in clips}), levels)
  systems = {}
  for name, workdir in workdirs:
    model = inference.load_radio(workdir)
    systems[name] = {"source": model.source, **evaluation.reference_robustness(
        evaluation.dubber(model, batch_size), clips, refs, judges)}
  return {"dataset": dataset, "identities": sorted(refs), "clips": len(clips),
          "levels": {k: list(v) for k, v in levels.items()},
          "lse_expert": sync_expert.scorer_label(judges.expert) if judges.expert else None,
          "systems": systems}


def markdown(results: Mapping[str, object]) -> str:
  """Each studied system's tables (`evaluation.robustness_markdown`)."""
  head = {k: results.get(k) for k in ("command", "machine", "duration_s", "lse_expert")}
  return "\n".join(
      evaluation.robustness_markdown({**head, **r, "system": f"{name} ({r['source']})"})
      for name, r in results["systems"].items())


def main(argv):
  del argv
  levels = {name: [float(v) for v in getattr(FLAGS, name)]
            for name in ("yaw", "pitch", "mouth_opening", "smile") if getattr(FLAGS, name)}
  judges = evaluation.load_judges(weights_dir=FLAGS.weights_dir,
                                  sync_eval_workdir=FLAGS.sync_eval_workdir,
                                  syncnet_workdir=FLAGS.syncnet_workdir,
                                  regressor_workdir=FLAGS.regressor_workdir,
                                  lse=bool(FLAGS.sync_eval_workdir or FLAGS.syncnet_workdir
                                           or FLAGS.weights_dir))
  reports.timed_results(FLAGS.out, lambda: study(
      FLAGS.dataset, tables.named_workdirs(FLAGS.workdir, "workdir"), levels, judges,
      FLAGS.max_clips, FLAGS.max_frames, FLAGS.batch_size), markdown)

if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["dataset", "workdir"])
  app.run(main)
