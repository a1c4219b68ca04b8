r"""RADIO Tables 1-3 at small scale on held-out identities (`systems.radio.evaluation`).

  python -m experiments.radio.tables --dataset=runs/radio_corpus \
      --radio_workdir=runs/radio_demo --sync_eval_workdir=runs/main/experts/syncnet_eval \
      --syncnet_workdir=runs/main/experts/syncnet [--wav2lip_workdir=runs/wav2lip_radio] \
      [--regressor_workdir=runs/face_regressor_radio] [--weights_dir=~/weights] \
      --table_2=A=runs/radio_A --table_2=B=runs/radio_B --table_2=C=runs/radio_C \
      --table_2=D=runs/radio_demo --table_3='ViT(1,1)'=runs/radio_vit11 \
      --out=experiments/results/radio_demo/tables.json

Table 2/3 rows are `radio` workdirs trained with `--config.model.ablation=A..D` or the config
argument `radio.py:demo,model.vit=(n,m)`; names A-D and ViT(n,m) get the paper's labels. Then
`python -m experiments.reproduce --paper=radio --results=experiments/results/radio_demo` sets the
rows beside the paper's.
"""

from __future__ import annotations


from absl import app, flags

from talking_heads.io import reports
from talking_heads.systems.radio import evaluation

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags (only when run as a program: the module is also imported)."""
  flags.DEFINE_string("dataset", None, "Dataset root with a heldout_identity split (the radio "
                      "corpus preset).")
  flags.DEFINE_string("radio_workdir", None, "Trained `radio` workdir (Table 1's RADIO).")
  flags.DEFINE_string("wav2lip_workdir", "", "Trained `wav2lip` workdir (on the same corpus): "
                      "adds the Wav2Lip row through its inference entry.")
  flags.DEFINE_string("sovqae_workdir", "", "With --wav2lip_workdir: a trained `sovqae` workdir, "
                      "adds the LaDTalk row through its inference entry.")
  flags.DEFINE_multi_string("table_2", [], "NAME=WORKDIR of a Table 2 ablation (A, B, C, D).")
  flags.DEFINE_multi_string("table_3", [], "NAME=WORKDIR of a Table 3 variant (ViT(n,m)).")
  flags.DEFINE_string("sync_workdir", "", "The `radio_sync` workdir whose probability is Tables "
                      "2/3's Sync (default: the one --radio_workdir trained against).")
  flags.DEFINE_string("syncnet_workdir", "", "Trained `syncnet` workdir (LSE when no independent "
                      "expert is given).")
  flags.DEFINE_string("sync_eval_workdir", "", "Trained `syncnet_eval` workdir: the independent "
                      "LSE expert (syncnet_v2.model in --weights_dir wins).")
  flags.DEFINE_string("weights_dir", "", "Folder with the LPIPS files (alexnet, lpips_alex) and/or "
                      "syncnet_v2.model.")
  flags.DEFINE_string("regressor_workdir", "", "Trained `face_regressor` workdir (LMD's mouth "
                      "landmarks; without it LMD is reported as unavailable).")
  flags.DEFINE_integer("max_clips", 0, "Held-out-identity clips (0: all).")
  flags.DEFINE_integer("max_frames", 0, "Frames per clip (0: all).")
  flags.DEFINE_integer("batch_size", 16, "Frames per generator call.")
  flags.DEFINE_string("out", "radio_tables.json", "JSON output; markdown beside it.")


def named_workdirs(values: list[str], flag: str) -> list[tuple[str, str]]:
  """["NAME=WORKDIR", ...] -> [(NAME, WORKDIR), ...]."""
  out = []
  for value in values:
    name, sep, workdir = value.partition("=")
    if not (sep and name and workdir):
      raise app.UsageError(f"--{flag}={value!r}: expected NAME=WORKDIR")
    out.append((name, workdir))
  return out


def baselines(wav2lip_workdir: str, sovqae_workdir: str) -> dict[str, dict[str, str]]:
  """Inference entries (name -> weights) of the baseline rows the flags ask for."""
  if sovqae_workdir and not wav2lip_workdir:
    raise app.UsageError("--sovqae_workdir needs --wav2lip_workdir (LaDTalk denoises Wav2Lip)")
  out = {}
  if wav2lip_workdir:
    out["wav2lip"] = {"wav2lip_workdir": wav2lip_workdir}
  if sovqae_workdir:
    out["ladtalk"] = {"wav2lip_workdir": wav2lip_workdir, "sovqae_workdir": sovqae_workdir}
  return out


def main(argv):
  del argv
  reports.timed_results(FLAGS.out, lambda: evaluation.run(
      FLAGS.dataset, FLAGS.radio_workdir,
      baselines=baselines(FLAGS.wav2lip_workdir, FLAGS.sovqae_workdir),
      ablations={"table_2": named_workdirs(FLAGS.table_2, "table_2"),
                 "table_3": named_workdirs(FLAGS.table_3, "table_3")},
      sync_workdir=FLAGS.sync_workdir, syncnet_workdir=FLAGS.syncnet_workdir,
      sync_eval_workdir=FLAGS.sync_eval_workdir, weights_dir=FLAGS.weights_dir,
      regressor_workdir=FLAGS.regressor_workdir, max_clips=FLAGS.max_clips,
      max_frames=FLAGS.max_frames, batch_size=FLAGS.batch_size), evaluation.markdown)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["dataset", "radio_workdir"])
  app.run(main)
