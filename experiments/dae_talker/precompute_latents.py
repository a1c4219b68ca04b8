r"""Writes a trained diffusion autoencoder's latents of every frame: speech2latent's targets.

  python -m experiments.dae_talker.precompute_latents --dataset=/tmp/demo_corpus \
      --dae_workdir=runs/dae_demo --name=dae_demo --identities=id01 \
      [--splits=train,val,test,heldout_voice] [--batch_size=64] [--overwrite]

Each chosen clip's frames are resized to the DAE's image size, encoded with its EMA parameters
and written to `<dataset>/latents/<name>/<clip id>.npy` (float32 [T, Z]) atomically; clips already
written are skipped unless --overwrite, so an interrupted run resumes where it stopped
(`talking_heads.systems.dae_talker.latents`). Prints a JSON summary (clips written and skipped, frames,
frames per second).
"""

from __future__ import annotations

import json
import sys

from absl import app, flags

from talking_heads.systems.dae_talker import latents as dae_latents

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags (only when run as a program: the module is also imported)."""
  flags.DEFINE_string("dataset", None, "Dataset root.")
  flags.DEFINE_string("dae_workdir", None, "Trained diffusion-autoencoder ('dae') workdir.")
  flags.DEFINE_string("name", None, "Latents name: written under <dataset>/latents/<name>/.")
  flags.DEFINE_string("identities", "", "Comma-separated identities (empty: all).")
  flags.DEFINE_string("splits", "", "Comma-separated splits (empty: all).")
  flags.DEFINE_integer("batch_size", 64, "Frames per encoder call.")
  flags.DEFINE_integer("step", None, "Checkpoint step of the DAE (default: the newest).")
  flags.DEFINE_boolean("overwrite", False, "Re-encode clips whose latents exist.")
  flags.mark_flags_as_required(["dataset", "dae_workdir", "name"])


def _names(value: str) -> tuple[str, ...] | None:
  """'a, b,' -> ('a', 'b'); empty -> None (all)."""
  return tuple(n.strip() for n in value.split(",") if n.strip()) or None


def run(dataset: str, dae_workdir: str, name: str, *, identities: str = "", splits: str = "",
        batch_size: int = 64, step: int | None = None, overwrite: bool = False) -> dict:
  """Encodes the chosen clips; returns the summary the command prints."""
  encoder = dae_latents.load_dae_encoder(dae_workdir, step)
  summary = dae_latents.encode_clips(
      dataset, name, encoder, splits=_names(splits), identities=_names(identities),
      batch_size=batch_size, overwrite=overwrite)
  return {"name": name, "dae": encoder.source, "image_size": encoder.image_size,
          "latent_dim": encoder.latent_dim, "written": len(summary.written),
          "skipped": len(summary.skipped), "frames": summary.frames,
          "seconds": round(summary.seconds, 2),
          "frames_per_second": round(summary.frames / max(summary.seconds, 1e-9), 1)}


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  summary = run(FLAGS.dataset, FLAGS.dae_workdir, FLAGS.name, identities=FLAGS.identities,
                splits=FLAGS.splits, batch_size=FLAGS.batch_size, step=FLAGS.step,
                overwrite=FLAGS.overwrite)
  json.dump(summary, sys.stdout, indent=2)
  sys.stdout.write("\n")


if __name__ == "__main__":
  define_flags()
  app.run(main)
