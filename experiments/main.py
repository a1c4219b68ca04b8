r"""The main job: everything that runs end to end on the built-in default data.

  bash experiments/main.sh                       # sets up .venv, then runs this with defaults
  python -m experiments.main --workdir=runs/main --variant=demo

Each part resumes from what an earlier launch finished (finished clips, checkpoints), and the
report at `<workdir>/report.md` (+ `report.json`) is rewritten at the end. Parts so far:
  1. the synthetic talking-face corpus (`data.synthetic`, preset = the variant) in <workdir>/corpus,
     with its mel features precomputed for the audio-driven pipelines;
  2. the frame autoencoder (the trainer's reference stage) trained on the corpus's frames;
  3. the lip-sync expert (Wav2Lip's SyncNet_color, width-reduced for CPU) trained on sync pairs;
  4. the LSE evaluator with that expert on the test and held-out splits: recovery of planted
     audio shifts of -6..6 frames, and LSE-C of in-sync clips vs clips with another clip's audio.
"""

import json
import os
import time
from typing import Any

from absl import app, flags, logging

from data import synthetic
from experiments import sync_eval
from experiments.configs import frame_autoencoder, syncnet
from experiments.logs import quiet_library_logs
from talking_heads.metrics import sync_experts
from talking_heads.pipelines import base as pipelines_base
from talking_heads.training import loop

_WORKDIR = flags.DEFINE_string("workdir", "runs/main", "Where every part writes its outputs.")
_VARIANT = flags.DEFINE_enum("variant", "demo", ["tiny", "demo"], "Config variant of every part.")
_WORKERS = flags.DEFINE_integer("workers", 2, "Processes that render corpus clips.")


def _read_metrics(workdir: str) -> tuple[dict[str, float], dict[str, float]]:
  """Last training and last eval record of a run's metrics.jsonl."""
  train, evaluation = {}, {}
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      record = json.loads(line)
      if any(k.startswith("eval/") for k in record):
        evaluation = record
      else:
        train = record
  return train, evaluation


def train_part(name: str, config, workdir: str) -> dict[str, Any]:
  start = time.perf_counter()
  result = loop.train_and_evaluate(config, workdir)
  train, evaluation = _read_metrics(workdir)
  images = sorted(p for p in os.listdir(os.path.join(workdir, "images")) if p.endswith(".png"))
  return {"part": name, "stage": config.stage, "variant": config.variant, "steps": result.step,
          "seconds": round(time.perf_counter() - start, 1), "train": train, "eval": evaluation,
          "image": os.path.join(os.path.basename(workdir), "images", images[-1]) if images else None}


def corpus_part(workdir: str, preset: str, workers: int) -> tuple[str, dict[str, Any]]:
  root = os.path.join(workdir, "corpus")
  start = time.perf_counter()
  summary = synthetic.build_corpus(root, preset, workers=workers)
  features = pipelines_base.precompute_features(root)
  return root, {"clips": summary["clips"], "frames": summary["frames"],
                "audio_minutes": round(summary["audio_seconds"] / 60, 1), "splits": summary["splits"],
                "identities": summary["identities"], "feature_files_written": features,
                "seconds": round(time.perf_counter() - start, 1)}


def sync_part(syncnet_workdir: str, corpus_root: str, workdir: str, max_clips: int) -> dict[str, Any]:
  """Offset recovery and LSE-C separation with the expert trained in `syncnet_workdir`."""
  path = os.path.join(workdir, "sync_eval.json")
  expert = sync_experts.TrainedSyncNetExpert.from_workdir(syncnet_workdir)
  results = sync_eval.run(expert, "SyncNet_color trained by this job (not comparable with papers)",
                          corpus_root, ["test", "heldout_identity", "heldout_voice"], max_shift=6,
                          max_clips=max_clips)
  results = sync_eval.evaluate.to_json(results)
  with open(path, "w") as f:
    json.dump(results, f, indent=2)
  with open(os.path.join(workdir, "sync_eval.md"), "w") as f:
    f.write(sync_eval.markdown(results))
  return {split: {"clips": r["num_clips"], "shift_exact_percent": round(r["shift_exact_percent"], 1),
                  "lse_c_in_sync": round(r["in_sync"]["lse_c"], 3),
                  "lse_c_mismatched": round(r["mismatched"]["lse_c"], 3),
                  "lse_c_ratio": round(r["lse_c_ratio"], 2), "frames_per_second": round(r["frames_per_second"], 1)}
          for split, r in results["splits"].items()}


def write_report(workdir: str, corpus: dict[str, Any], parts: list[dict[str, Any]],
                 sync: dict[str, Any]) -> str:
  lines = ["# talking_heads main job report", "",
           f"Corpus: {corpus['clips']} clips, {corpus['frames']} frames, {corpus['audio_minutes']} min of speech, "
           f"{corpus['identities']} identities; splits {corpus['splits']} ({corpus['seconds']} s this run).", "",
           "| part | stage | variant | steps | time (s) | final train loss | eval metrics |",
           "|---|---|---|---|---|---|---|"]
  for p in parts:
    ev = ", ".join(f"{k[5:]}={v:.4g}" for k, v in p["eval"].items() if k.startswith("eval/"))
    lines.append(f"| {p['part']} | {p['stage']} | {p['variant']} | {p['steps']} | {p['seconds']} | "
                 f"{p['train'].get('loss', float('nan')):.4g} | {ev} |")
  lines += ["", "Lip-sync evaluation with the trained expert (planted shifts -6..6 frames; "
            "details in sync_eval.md):", "",
            "| split | clips | shifts recovered exactly (%) | LSE-C in sync | LSE-C other audio | ratio | frames/s |",
            "|---|---|---|---|---|---|---|"]
  for split, r in sync.items():
    lines.append(f"| {split} | {r['clips']} | {r['shift_exact_percent']} | {r['lse_c_in_sync']} | "
                 f"{r['lse_c_mismatched']} | {r['lse_c_ratio']} | {r['frames_per_second']} |")
  lines.append("")
  for p in parts:
    if p["image"]:
      lines += [f"## {p['part']}", "", f"![{p['part']}]({p['image']})", ""]
  path = os.path.join(workdir, "report.md")
  with open(path, "w") as f:
    f.write("\n".join(lines))
  with open(os.path.join(workdir, "report.json"), "w") as f:
    json.dump({"corpus": corpus, "parts": parts, "sync_eval": sync}, f, indent=2)
  return path


def main(argv):
  del argv
  quiet_library_logs()
  workdir = os.path.abspath(_WORKDIR.value)
  os.makedirs(workdir, exist_ok=True)
  variant = _VARIANT.value
  corpus_root, corpus = corpus_part(workdir, variant, _WORKERS.value)

  autoencoder = frame_autoencoder.get_config(variant)
  autoencoder.data.root = corpus_root   # frames resized to the config's image size
  expert = syncnet.get_config(variant)
  expert.data.root = corpus_root
  syncnet_workdir = os.path.join(workdir, "syncnet")
  parts = [train_part("frame autoencoder (corpus frames)", autoencoder, os.path.join(workdir, "frame_autoencoder")),
           train_part("lip-sync expert (SyncNet_color)", expert, syncnet_workdir)]
  sync = sync_part(syncnet_workdir, corpus_root, workdir, max_clips=0 if variant == "demo" else 2)
  path = write_report(workdir, corpus, parts, sync)
  logging.info("Report written to %s", path)
  print(open(path).read())


if __name__ == "__main__":
  app.run(main)
