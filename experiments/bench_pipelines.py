r"""Measures the throughput (samples/s) of every grain pipeline with 0 and N worker processes.

  python -m experiments.bench_pipelines --dataset /tmp/demo_corpus --workers 0,2 --batches 50 \
      --out pipelines.json

Without --dataset, a random dataset (noise frames and audio, model landmarks) is written to a
temporary directory first (--fake_clips clips of --fake_frames frames at --fake_size pixels).
For each pipeline and worker count it reports the time to the first batch (index build, worker
start-up, first reads) and the steady rate over the next --batches batches. Mel features are
precomputed first (timed) unless --noprecompute, which measures the on-the-fly fallback.
"""

import json
import os
import platform
import resource
import tempfile
import time
from typing import Any, Callable

from absl import app, flags

from talking_heads.pipelines import base, clips, frames, heads, sequences, sync, testing

_DATASET = flags.DEFINE_string("dataset", None, "Dataset root; a random one is written if unset.")
_WORKERS = flags.DEFINE_list("workers", ["0", "2"], "Worker counts to measure.")
_BATCHES = flags.DEFINE_integer("batches", 50, "Timed batches per measurement.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Batch size.")
_PIPELINES = flags.DEFINE_list(
    "pipelines", ["frames", "clips", "sync", "sequences", "pseudo_sentences", "heads"],
    "Pipelines to measure.")
_SPLIT = flags.DEFINE_string("split", "train", "Split to read ('' for all clips).")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 0, "Resize frames to this size (0: native).")
_PRECOMPUTE = flags.DEFINE_boolean("precompute", True, "Precompute mel features first.")
_FAKE_CLIPS = flags.DEFINE_integer("fake_clips", 8, "Random dataset: clips.")
_FAKE_FRAMES = flags.DEFINE_integer("fake_frames", 250, "Random dataset: frames per clip.")
_FAKE_SIZE = flags.DEFINE_integer("fake_size", 96, "Random dataset: image size.")
_OUT = flags.DEFINE_string("out", None, "Write the results as JSON here.")

# name -> (builder, options): the paper settings each pipeline is used with.
PIPELINES: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
    "frames": (frames.make_frames_iterator, {"degradations": frames.Degradations()}),
    "clips": (clips.make_clips_iterator, {"audio": clips.WAV2LIP_AUDIO}),
    "sync": (sync.make_sync_iterator, {}),
    "sequences": (sequences.make_sequence_iterator, {"min_length": 25, "max_length": 25}),
    "pseudo_sentences": (sequences.make_sequence_iterator,
                         {"min_length": 125, "max_length": 500}),
    "heads": (heads.make_head_iterator, {}),
}


def measure(name: str, root: str, workers: int, batches: int, batch_size: int, split: str | None,
            image_size: int | None) -> dict[str, Any]:
  """Time to the first batch and samples/s over `batches` more of pipeline `name`."""
  make, options = PIPELINES[name]
  if name not in ("sequences", "pseudo_sentences"):
    options = {**options, "image_size": image_size}
  start = time.perf_counter()
  it = make(root, batch_size=batch_size, shard_index=0, shard_count=1, seed=0,
            num_workers=workers, split=split, **options)
  try:
    next(it)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(batches):
      next(it)
    elapsed = time.perf_counter() - start
  finally:
    it.close()
  return {"pipeline": name, "workers": workers, "batch_size": batch_size, "batches": batches,
          "first_batch_s": first, "samples_per_s": batches * batch_size / elapsed}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  unknown = sorted(set(_PIPELINES.value) - set(PIPELINES))
  if unknown:
    raise app.UsageError(f"unknown pipelines {unknown}; choose from {sorted(PIPELINES)}")
  with tempfile.TemporaryDirectory(prefix="bench_pipelines_") as tmp:
    root = _DATASET.value
    if root is None:
      root = os.path.join(tmp, "data")
      testing.write_random_dataset(root, [_FAKE_FRAMES.value] * _FAKE_CLIPS.value,
                                   image_size=_FAKE_SIZE.value)
    split = _SPLIT.value or None
    report: dict[str, Any] = {
        "dataset": root if _DATASET.value else f"random: {_FAKE_CLIPS.value} clips x "
                   f"{_FAKE_FRAMES.value} frames at {_FAKE_SIZE.value} px",
        "host": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "results": []}
    if _PRECOMPUTE.value:
      start = time.perf_counter()
      written = base.precompute_features(root, split=split)
      report["precompute_s"] = time.perf_counter() - start
      report["precomputed_files"] = written
    for name in _PIPELINES.value:
      for workers in (int(w) for w in _WORKERS.value):
        try:
          result = measure(name, root, workers, _BATCHES.value, _BATCH_SIZE.value, split,
                           _IMAGE_SIZE.value or None)
        except ValueError as e:  # e.g. no clip long enough for pseudo-sentences
          result = {"pipeline": name, "workers": workers, "error": str(e)}
        report["results"].append(result)
        print(json.dumps(result), flush=True)
    report["host_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(report, f, indent=2)


if __name__ == "__main__":
  app.run(main)
