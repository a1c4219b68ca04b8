"""Per-frame DAE latents of a dataset's clips: the speech2latent training targets.

DAE-Talker (§3.1) encodes every video frame with the trained diffusion autoencoder's semantic
encoder; the latent sequences [T, Z] become speech2latent's targets. `encode_clips` writes them
to `<root>/latents/<name>/<clip id>.npy` (float32 [T, Z], `pipelines.base.latents_path`), where
`pipelines.sequences` reads them, frames resized to the DAE's image size (area when shrinking,
as the DAE's training frames).

A long job never loses finished work: each clip's file is written atomically once all its frames
are encoded, and clips whose file exists are skipped (unless `overwrite`). `<name>/`
`provenance.json` records the DAE (workdir and checkpoint step), image size and latent width;
resuming with a different DAE is an error rather than a silent mix of two encoders' latents.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np
from absl import logging

from talking_heads.io import dataset as dataset_lib
from talking_heads.pipelines import base
from talking_heads.systems import video_inference

PROVENANCE_FILE = "provenance.json"


@dataclasses.dataclass(frozen=True)
class DAEEncoder:
  """A trained DAE's semantic encoder.

  Attributes:
    encode: uint8 frames [B, S, S, 3] (S = image_size) -> float32 latents [B, Z].
    image_size: S, the size the DAE was trained on.
    latent_dim: Z.
    source: where the weights come from (workdir and step).
  """
  encode: Callable[[np.ndarray], Any]
  image_size: int
  latent_dim: int
  source: str


@dataclasses.dataclass(frozen=True)
class EncodeSummary:
  """What `encode_clips` did: clip ids written and skipped, frames encoded, wall seconds."""
  written: tuple[str, ...]
  skipped: tuple[str, ...]
  frames: int
  seconds: float


def load_dae_encoder(workdir: str | os.PathLike, step: int | None = None) -> DAEEncoder:
  """The EMA semantic encoder of a trained `dae` stage workdir (newest checkpoint, or `step`).

  Raises:
    FileNotFoundError: not a workdir, or no checkpoint in it.
    ValueError: the workdir trains another stage.
  """
  # Restoring pulls in orbax; only this loader needs it.
  from talking_heads.training import restore  # pylint: disable=g-import-not-at-top
  workdir = os.path.abspath(os.fspath(workdir))
  stage, state, restored = restore.restore_stage(workdir, step, expected_stage="dae")
  variables = jax.device_put(jax.device_get(stage.variables(state)))
  encode = jax.jit(stage.encode)
  return DAEEncoder(encode=lambda frames: encode(variables, frames),
                    image_size=int(stage.config.data.image_size),
                    latent_dim=int(stage.config.model.latent_dim),
                    source=f"{workdir} step {restored}")


def _chosen_clips(root: str | os.PathLike, splits: Sequence[str] | None,
                  identities: Sequence[str] | None) -> list[dataset_lib.Clip]:
  if not splits:
    return base.open_split(root, None, identities)[1]
  clips = []
  for split in splits:
    clips.extend(base.open_split(root, split, identities)[1])
  return clips


def _check_provenance(directory: os.PathLike, provenance: dict[str, Any],
                      overwrite: bool) -> None:
  """Writes `provenance`, or checks it against the one there unless `overwrite`."""
  path = os.path.join(directory, PROVENANCE_FILE)
  if os.path.exists(path) and not overwrite:
    with open(path, encoding="utf-8") as f:
      existing = json.load(f)
    if existing != provenance:
      raise ValueError(f"latents in {directory} come from {existing}, not {provenance}; pass "
                       "overwrite (--overwrite) to re-encode, or choose another name")
    return
  os.makedirs(directory, exist_ok=True)
  tmp = f"{path}.tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(provenance, f, indent=2)
  os.replace(tmp, path)


def encode_clips(root: str | os.PathLike, name: str, encoder: DAEEncoder, *,
                 splits: Sequence[str] | None = None, identities: Sequence[str] | None = None,
                 batch_size: int = 32, overwrite: bool = False) -> EncodeSummary:
  """Writes every frame's latent of the chosen clips to `<root>/latents/<name>/<clip>.npy`.

  Args:
    root: the dataset.
    name: the latents' name (what `pipelines.sequences` takes as `latents=`).
    encoder: the DAE's encoder (`load_dae_encoder`).
    splits: clips of these splits (None or empty: all).
    identities: only clips of these identities (None: all).
    batch_size: frames per encoder call (the last batch is padded, so it compiles once).
    overwrite: re-encode clips whose file exists.

  Raises:
    ValueError: a split without (the identities') clips, or latents of another DAE under `name`.
    DatasetError: an existing file with the wrong shape (stale; rerun with overwrite).
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  clips = _chosen_clips(root, splits, identities)
  directory = pathlib.Path(root) / base.LATENTS_DIR / name
  _check_provenance(directory, {"dae": encoder.source, "image_size": encoder.image_size,
                                "latent_dim": encoder.latent_dim}, overwrite)
  written, skipped, frames, begin = [], [], 0, time.perf_counter()
  for clip in clips:
    path = base.latents_path(root, name, clip.id)
    if path.exists() and not overwrite:
      existing = np.load(path, mmap_mode="r", allow_pickle=False)
      if existing.shape != (clip.num_frames, encoder.latent_dim) or existing.dtype != np.float32:
        raise dataset_lib.DatasetError(
            root, f"latents {path} have shape {existing.shape} {existing.dtype}, expected "
            f"({clip.num_frames}, {encoder.latent_dim}) float32; rerun with overwrite",
            clip_id=clip.id)
      skipped.append(clip.id)
      continue
    images = base.resize_frames(np.asarray(clip.frames), encoder.image_size)   # [T, S, S, 3]
    latents = video_inference.batched(encoder.encode, lambda index: (images[index],),
                                       clip.num_frames, batch_size)            # [T, Z]
    latents = np.asarray(latents, np.float32)
    if latents.shape != (clip.num_frames, encoder.latent_dim):
      raise ValueError(f"clip {clip.id!r}: the encoder returned {latents.shape}, expected "
                       f"({clip.num_frames}, {encoder.latent_dim})")
    base._save_atomic(path, latents)  # pylint: disable=protected-access
    written.append(clip.id)
    frames += clip.num_frames
    logging.info("latents %s: clip %s (%d frames) written; %d of %d clips done", name, clip.id,
                 clip.num_frames, len(written) + len(skipped), len(clips))
  return EncodeSummary(tuple(written), tuple(skipped), frames, time.perf_counter() - begin)
