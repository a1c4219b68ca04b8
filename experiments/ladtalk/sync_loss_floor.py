r"""What Wav2Lip's sync loss can reach: the frozen expert's loss on the TRUE frames, through the
generator's path, at several face sizes and both BatchNorm modes.

  python -m experiments.ladtalk.sync_loss_floor --config=experiments/configs/ladtalk/wav2lip.py:demo \
      --config.data.root=/tmp/demo_corpus --config.sync_expert.workdir=runs/syncnet_demo \
      --sizes=48,64,96,128 --out=experiments/results/ladtalk_demo/sync_loss_floor.json

Wav2Lip switches its sync loss on when its evaluation's sync loss falls below the threshold
(published: 0.75). A perfect generator reproduces the true frames, so the expert's loss on the
true frames of the same evaluation windows, after the same resizing (to the generator's face size
S, then to the expert's 96 px), is the lowest value the rule can see; if that floor is near or
above the threshold, the switch can never happen at that S. Rows: each size S, with the expert's
running BatchNorm statistics (our default) and with batch statistics (the reference's training
mode), in sync and with the audio of another window (the expert's discrimination).
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from talking_heads.io import reports
from talking_heads.pipelines import clips as clips_pipeline
from talking_heads.systems.experts import sync_expert as sync_expert_lib
from talking_heads.systems.images import pixels_to_unit
from talking_heads.systems.ladtalk import wav2lip

FLAGS = flags.FLAGS


def floor_rows(config: Any, sizes: tuple[int, ...], max_batches: int = 0) -> list[dict[str, Any]]:
  """One row per (face size, BatchNorm mode): mean expert BCE on true windows, in sync and with
  each batch's audio rolled by one window (another window's speech)."""
  weights = sync_expert_lib.load_frozen_expert(config.sync_expert).weights
  experts = {mode: sync_expert_lib.FrozenLipSyncExpert(weights, mode == "running statistics")
             for mode in ("running statistics", "batch statistics")}
  d = config.data
  # The stage's evaluation windows, read at the corpus's own size (resized per row below).
  windows = clips_pipeline.make_clips_eval_iterator(
      d.root, seed=d.eval_seed, num_workers=0, split=d.eval_split, stride=d.eval_stride,
      batch_size=config.eval_batch_size, shard_index=0, shard_count=1,
      num_frames=wav2lip.WINDOW, audio=clips_pipeline.WAV2LIP_AUDIO, reference_mode="window",
      image_size=None)
  batches = []
  for i, batch in enumerate(windows):
    if max_batches and i >= max_batches:
      break
    batches.append({k: np.asarray(batch[k]) for k in ("frames", "mel", "valid")})
  rows = []
  for size in sizes:
    for mode, expert in experts.items():
      loss = jax.jit(expert.loss)
      sums = {"in_sync": 0.0, "other_audio": 0.0}
      weight = 0.0
      for batch in batches:
        frames = pixels_to_unit(jnp.asarray(batch["frames"]))                # [B, T, S0, S0, 3]
        b, t = frames.shape[:2]
        if frames.shape[2] != size:
          frames = jax.image.resize(frames, (b, t, size, size, 3), "linear")
        valid = jnp.asarray(batch["valid"], jnp.float32)
        n = float(valid.sum())
        sums["in_sync"] += n * float(loss(batch["mel"], frames, valid))
        sums["other_audio"] += n * float(loss(np.roll(batch["mel"], 1, axis=0), frames, valid))
        weight += n
      rows.append({"face_size": size, "batchnorm": mode,
                   "in_sync": sums["in_sync"] / weight, "other_audio": sums["other_audio"] / weight,
                   "windows": int(weight)})
  return rows


def markdown(results: dict[str, Any]) -> str:
  windows = results["rows"][0]["windows"]
  lines = [f"Expert BCE on the true frames of `{results['eval_split']}` ({windows} windows; "
           f"threshold {results['threshold']}; expert {results['expert']})", "",
           "| face size S | BatchNorm | in sync | other window's audio |", "|---|---|---|---|"]
  for r in results["rows"]:
    lines.append(f"| {r['face_size']} | {r['batchnorm']} | {r['in_sync']:.3f} | "
                 f"{r['other_audio']:.3f} |")
  return "\n".join(lines) + "\n"


def define_flags() -> None:
  """The command's flags (only when run as a program: the module is also imported)."""
  config_flags.DEFINE_config_file("config", None, "A wav2lip config (its data and expert).")
  flags.DEFINE_list("sizes", ["48", "64", "96", "128"], "Face sizes S the frames pass through.")
  flags.DEFINE_integer("max_batches", 0, "Evaluation batches to use (0: all).")
  flags.DEFINE_string("out", None, "Output JSON (a markdown table is written beside it).")


def main(argv):
  del argv
  start = time.time()
  config = FLAGS.config
  rows = floor_rows(config, tuple(int(s) for s in FLAGS.sizes), FLAGS.max_batches)
  results = {"rows": rows, "eval_split": config.data.eval_split,
             "threshold": config.loss.sync_threshold,
             "expert": config.sync_expert.workdir or config.sync_expert.checkpoint,
             "command": reports.command_line(), "machine": reports.machine_description(),
             "duration_s": round(time.time() - start, 1)}
  reports.write_results(FLAGS.out, results, markdown(results))
  print(markdown(results))


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["config", "out"])
  app.run(main)
