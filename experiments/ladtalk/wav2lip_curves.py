r"""Wav2Lip's lip sync and image quality against training step: every kept checkpoint scored.

  python -m experiments.ladtalk.wav2lip_curves --wav2lip_workdir=runs/wav2lip_demo \
      --dataset=runs/main/corpus --identity=id01 --splits=test,heldout_voice --max_clips=4 \
      --sync_eval_workdir=runs/main/experts/syncnet_eval --syncnet_workdir=runs/main/experts/syncnet \
      --out=experiments/results/ladtalk_demo/wav2lip_curves.json

The trainer's evaluation logs the sync loss (the colour expert's BCE the switch-on rule reads) and
the expert's loss on the true frames; whether more steps would help lip sync also needs what a
reader judges: LSE-C of the generated videos with the LSE scorer (`sync_expert.lse_scorer`: the
independent expert when it is good enough) beside the true clips' own LSE-C, and PSNR. This
command generates each split's first `max_clips` clips of the identity (driven by their own
audio, `box="full"`) at every checkpoint the workdir keeps (train with a large
`--config.keep_checkpoints` for a dense curve) and writes JSON, a markdown table and a PNG with
three panels: eval sync loss (and the true frames' floor), LSE-C (ground truth dashed), PSNR.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

from absl import app, flags
import numpy as np

from talking_heads.io import dataset as dataset_lib
from talking_heads.io import html_report
from talking_heads.io import reports
from talking_heads.metrics import suite
from talking_heads.systems import video_inference
from talking_heads.systems.experts import sync_expert
from talking_heads.systems.ladtalk import inference

FLAGS = flags.FLAGS
METRICS = ("psnr", "psnr_lower_half", "lse_c", "lse_d")


def split_clips(dataset: str, identity: str, split: str, max_clips: int) -> list[dataset_lib.Clip]:
  clips = dataset_lib.Dataset(dataset).identity_clips(split, identity)
  return sorted(clips, key=lambda c: c.id)[:max_clips or None]


def score_clips(scorer: suite.VideoScorer, clips: list[dataset_lib.Clip],
                model: inference.Wav2LipModel | None) -> dict[str, float]:
  """Mean METRICS over `clips` of the model's videos (the true clips when `model` is None)."""
  options = video_inference.Options(box="full")
  rows = []
  for clip in clips:
    frames = clip.frames
    if model is not None:
      inputs = video_inference.prepare_arrays(clip.audio, clip.frames, model.image_size, options,
                                              audio_id=clip.id, video_id=clip.id)
      frames = inference.run_wav2lip(model, inputs, options).frames
    rows.append(scorer.score(frames, clip.frames, clip.audio, clip_id=clip.id))
  return {k: float(np.mean([r[k] for r in rows])) for k in METRICS}


def curves(wav2lip_workdir: str, dataset: str, identity: str, splits: list[str], max_clips: int,
           expert) -> dict[str, Any]:
  """{split: {"ground_truth": scores, "steps": [{"step", **scores}]}} for every kept checkpoint."""
  scorer = suite.VideoScorer(("psnr", "psnr_lower_half", "lse"), expert=expert, sliding=True)
  folder = pathlib.Path(wav2lip_workdir) / "checkpoints"
  steps = sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []
  if not steps:
    raise FileNotFoundError(f"{wav2lip_workdir}: no checkpoints to score")
  clips = {split: split_clips(dataset, identity, split, max_clips) for split in splits}
  out = {split: {"clips": [c.id for c in cs], "ground_truth": score_clips(scorer, cs, None),
                 "steps": []} for split, cs in clips.items()}
  for step in steps:
    model = inference.load_wav2lip(wav2lip_workdir, step=step)
    for split, cs in clips.items():
      out[split]["steps"].append({"step": step, **score_clips(scorer, cs, model)})
  return out


def trainer_sync_curve(wav2lip_workdir: str) -> list[dict[str, float]]:
  """The trainer's eval records: step, sync loss, the true frames' sync loss, L1."""
  _, evaluation = html_report.read_metrics(str(pathlib.Path(wav2lip_workdir) / "metrics.jsonl"))
  keys = {"eval/sync_loss": "sync_loss", "eval/sync_loss_truth": "sync_loss_truth",
          "eval/l1": "l1"}
  return [{"step": r["step"], **{v: r[k] for k, v in keys.items() if k in r}} for r in evaluation]


def markdown(results: dict[str, Any]) -> str:
  lines = [f"# Wav2Lip against training step ({results['wav2lip_workdir']})", "",
           f"Command: `{results['command']}`  ", f"Machine: {results['machine']}  ",
           f"Duration: {results['duration_s']} s; identity {results['identity']}; LSE expert: "
           f"{results['lse_expert']}", "",
           "| split | step | PSNR | PSNR lower half | LSE-C | LSE-D | LSE-C / truth |",
           "|---|---|---|---|---|---|---|"]
  for split, r in results["splits"].items():
    truth = r["ground_truth"]
    for row in [*r["steps"], {"step": "ground truth", **truth}]:
      lines.append(f"| {split} ({len(r['clips'])} clips) | {row['step']} | {row['psnr']:.2f} | "
                   f"{row['psnr_lower_half']:.2f} | {row['lse_c']:.3f} | {row['lse_d']:.3f} | "
                   f"{row['lse_c'] / truth['lse_c']:.2f} |")
  lines += ["", "Trainer's evaluation (colour expert BCE; the switch-on rule reads these):", "",
            "| step | eval sync loss | true frames' sync loss | eval L1 |", "|---|---|---|---|"]
  for r in results["trainer_eval"]:
    lines.append(f"| {r['step']} | {r.get('sync_loss', float('nan')):.3f} | "
                 f"{r.get('sync_loss_truth', float('nan')):.3f} | {r.get('l1', float('nan')):.4f} |")
  return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], out: pathlib.Path) -> None:
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  figure = Figure(figsize=(12, 3.4))
  sync, lse, psnr = figure.subplots(1, 3)
  trainer = results["trainer_eval"]
  for key, label in (("sync_loss", "generated"), ("sync_loss_truth", "true frames")):
    points = [(r["step"], r[key]) for r in trainer if key in r]
    if points:
      sync.plot(*zip(*points), marker="o", label=label)
  sync.set(title="eval sync loss (colour expert)", xlabel="step")
  sync.legend()
  for split, r in results["splits"].items():
    steps = [row["step"] for row in r["steps"]]
    line, = lse.plot(steps, [row["lse_c"] for row in r["steps"]], marker="o", label=split)
    lse.axhline(r["ground_truth"]["lse_c"], color=line.get_color(), linestyle="--")
    psnr.plot(steps, [row["psnr"] for row in r["steps"]], marker="o", label=split)
  lse.set(title="LSE-C (dashed: true clips)", xlabel="step")
  psnr.set(title="PSNR (dB)", xlabel="step")
  lse.legend()
  figure.tight_layout()
  figure.savefig(out, dpi=90)


def define_flags() -> None:
  """The command's flags (only when run as a program: the module is also imported)."""
  flags.DEFINE_string("wav2lip_workdir", None, "A trained `wav2lip` workdir.")
  flags.DEFINE_string("dataset", None, "The dataset (corpus) root.")
  flags.DEFINE_string("identity", "id01", "The identity whose clips drive the generator.")
  flags.DEFINE_list("splits", ["test", "heldout_voice"], "Splits to score.")
  flags.DEFINE_integer("max_clips", 4, "Clips per split (0: all).")
  flags.DEFINE_string("sync_eval_workdir", "", "The independent LSE expert (`syncnet_eval`).")
  flags.DEFINE_string("syncnet_workdir", "", "The colour expert (fallback LSE scorer).")
  flags.DEFINE_string("weights_dir", "", "Folder with syncnet_v2.model (the official scorer).")
  flags.DEFINE_string("out", None, "Output JSON (markdown and PNG are written beside it).")


def main(argv):
  del argv
  start = time.time()
  expert = sync_expert.lse_scorer(sync_eval_workdir=FLAGS.sync_eval_workdir,
                                  weights_dir=FLAGS.weights_dir,
                                  syncnet_workdir=FLAGS.syncnet_workdir)
  results = {"wav2lip_workdir": FLAGS.wav2lip_workdir, "identity": FLAGS.identity,
             "lse_expert": sync_expert.scorer_label(expert),
             "splits": curves(FLAGS.wav2lip_workdir, FLAGS.dataset, FLAGS.identity, FLAGS.splits,
                              FLAGS.max_clips, expert),
             "trainer_eval": trainer_sync_curve(FLAGS.wav2lip_workdir),
             "command": reports.command_line(), "machine": reports.machine_description(),
             "duration_s": round(time.time() - start, 1)}
  out = pathlib.Path(FLAGS.out)
  reports.write_results(out, results, markdown(results))
  plot(results, out.with_suffix(".png"))
  print(markdown(results))


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["wav2lip_workdir", "dataset", "out"])
  app.run(main)
