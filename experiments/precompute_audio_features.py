r"""Writes per-clip audio features aligned to the video frames, for the pipelines to read.

  python -m experiments.precompute_audio_features --dataset=/tmp/demo_corpus \
      --frontend=wav2vec2 --weights=runs/wav2vec2_demo [--layer=-1] [--alignment=pair] \
      [--weights_dir=weights] [--splits=train,val] [--identities=id01] [--overwrite]
  python -m experiments.precompute_audio_features --dataset=/tmp/demo_corpus --frontend=mel

--frontend=wav2vec2: --weights is a `wav2vec2_pretrain` workdir, a transformers folder or a
registered hub name found in --weights_dir (`talking_heads.pretrained.wav2vec2.load_encoder`;
missing weights stop it with MissingWeightsError naming the file). Each clip's whole utterance is
encoded (long audio in chunks with overlap: `talking_heads.audio.wav2vec2_features`), hidden
state --layer (-1: the last) is aligned to the clip's 25 fps frames (--alignment: "interpolate",
frame i <- wav2vec2 frame 2 i, [T, D]; or "pair", frames 2 i and 2 i + 1 concatenated,
[T, 2 D]) and written to `<dataset>/features/<clip id>/<name>.npy` beside the mel features, with
`<dataset>/features/<name>.json` saying what they are; the name is
`wav2vec2_<weights tag>_<layer>_<alignment>` (`wav2vec2_features.feature_name`) unless --name.
Clips already written are skipped, so an interrupted run resumes. --frontend=mel writes the
pipelines' mel features (`pipelines.base.precompute_features`).

Prints a JSON summary: name, source, clips written and skipped, audio seconds encoded, wall
seconds and seconds of audio per second.
"""

from __future__ import annotations

import json
import sys
import time

import tqdm
from absl import app, flags

from talking_heads.audio import wav2vec2_features
from talking_heads.io import dataset as dataset_lib
from talking_heads.pipelines import base
from talking_heads.pretrained import wav2vec2 as wav2vec2_pretrained
from third_party import weights as weights_lib

FLAGS = flags.FLAGS
FRONTENDS = ("mel", "wav2vec2")


def define_flags() -> None:
  """The command's flags (only when run as a program: the module is also imported)."""
  flags.DEFINE_string("dataset", None, "Dataset root.")
  flags.DEFINE_enum("frontend", "wav2vec2", FRONTENDS, "Which features to write.")
  flags.DEFINE_string("weights", "", "wav2vec2: pretraining workdir, transformers folder or "
                      "registered hub name (e.g. facebook/wav2vec2-large-xlsr-53).")
  flags.DEFINE_string("weights_dir", None, "Folder of public checkpoints (hub names).")
  flags.DEFINE_integer("layer", -1, "wav2vec2 hidden state: 0..L, -1 the last.")
  flags.DEFINE_enum("alignment", "pair", wav2vec2_features.ALIGNMENTS,
                    "50 Hz -> 25 fps: interpolate (frame 2i) or pair (frames 2i, 2i+1).")
  flags.DEFINE_string("name", "", "Feature name (default from weights, layer and alignment).")
  flags.DEFINE_string("identities", "", "Comma-separated identities (empty: all).")
  flags.DEFINE_string("splits", "", "Comma-separated splits (empty: all).")
  flags.DEFINE_float("chunk_seconds", 30.0, "Longest audio encoded in one call.")
  flags.DEFINE_float("context_seconds", 2.0, "Context each chunk sees beyond its frames.")
  flags.DEFINE_boolean("overwrite", False, "Rewrite existing features.")
  flags.mark_flags_as_required(["dataset"])


def chosen_clips(dataset: str, splits: str = "", identities: str = "") -> list:
  data = dataset_lib.Dataset(dataset)
  wanted_splits = dataset_lib.parse_identities(splits)       # the same comma list parsing
  wanted_ids = set(dataset_lib.parse_identities(identities))
  clips = [c for c in data.clips() if (not wanted_splits or c.split in wanted_splits)
           and (not wanted_ids or c.identity in wanted_ids)]
  if not clips:
    raise ValueError(f"dataset {dataset}: no clips of splits {splits or 'any'} and identities "
                     f"{identities or 'any'} (splits: {data.splits()})")
  return clips


def run(dataset: str, *, frontend: str = "wav2vec2", weights: str = "",
        weights_dir: str | None = None, layer: int = -1, alignment: str = "pair",
        name: str = "", splits: str = "", identities: str = "", chunk_seconds: float = 30.0,
        context_seconds: float = 2.0, overwrite: bool = False,
        progress_bar: bool = True) -> dict:
  """Writes the features; returns the summary the command prints."""
  clips = chosen_clips(dataset, splits, identities)
  start = time.perf_counter()
  if frontend == "mel":
    written = sum(base.precompute_features(dataset, split=s, overwrite=overwrite)
                  for s in sorted({c.split for c in clips}))
    return {"frontend": "mel", "written": written,
            "seconds": round(time.perf_counter() - start, 2)}
  if frontend != "wav2vec2":
    raise ValueError(f"--frontend must be one of {FRONTENDS}, got {frontend!r}")
  if not weights:
    raise ValueError("--frontend=wav2vec2 needs --weights (a wav2vec2_pretrain workdir, a "
                     "transformers folder or a hub name such as facebook/wav2vec2-large-xlsr-53)")
  name = name or wav2vec2_features.feature_name(weights, layer, alignment)
  config, variables, source = wav2vec2_pretrained.load_encoder(weights, weights_dir)
  extractor = wav2vec2_features.FeatureExtractor(config, variables, source, layer=layer,
                                                 chunk_seconds=chunk_seconds,
                                                 context_seconds=context_seconds)
  info = {"frontend": "wav2vec2", "weights": weights, "source": source, "layer": layer,
          "alignment": alignment, "fps": wav2vec2_features.VIDEO_FPS,
          "dim": wav2vec2_features.aligned_width(extractor.dim, alignment),
          "encoder_dim": extractor.dim,
          "command": (f"python -m experiments.precompute_audio_features --dataset={dataset} "
                      f"--frontend=wav2vec2 --weights={weights} --layer={layer} "
                      f"--alignment={alignment} --name={name}"
                      + (f" --weights_dir={weights_dir}" if weights_dir else ""))}
  bar = lambda items: tqdm.tqdm(items, unit="clip", desc=name, disable=not progress_bar,
                                dynamic_ncols=True)
  written, skipped = base.write_audio_features(
      dataset, name, lambda audio, frames: extractor.video_features(audio, frames, alignment),
      info, clips=clips, overwrite=overwrite, progress=bar)
  seconds = time.perf_counter() - start
  audio_seconds = sum(c.num_samples for c in clips if c.id in set(written)) / 16000
  return {"name": name, "source": source, "dim": info["dim"], "written": len(written),
          "skipped": len(skipped), "audio_seconds": round(audio_seconds, 2),
          "seconds": round(seconds, 2),
          "audio_seconds_per_second": round(audio_seconds / max(seconds, 1e-9), 2)}


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    summary = run(FLAGS.dataset, frontend=FLAGS.frontend, weights=FLAGS.weights,
                  weights_dir=FLAGS.weights_dir, layer=FLAGS.layer, alignment=FLAGS.alignment,
                  name=FLAGS.name, splits=FLAGS.splits, identities=FLAGS.identities,
                  chunk_seconds=FLAGS.chunk_seconds, context_seconds=FLAGS.context_seconds,
                  overwrite=FLAGS.overwrite)
  except (weights_lib.MissingWeightsError, FileNotFoundError, ValueError) as e:
    sys.exit(f"precompute_audio_features: {e}")
  json.dump(summary, sys.stdout, indent=2)
  sys.stdout.write("\n")


if __name__ == "__main__":
  define_flags()
  app.run(main)
