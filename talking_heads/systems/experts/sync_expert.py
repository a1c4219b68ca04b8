"""The frozen lip-sync expert, loaded once for every use: a training loss and an LSE scorer.

Two consumers need the same trained SyncNet_color: Wav2Lip's stage trains against it (a frozen
player whose BCE(cos, 1) on generated lower halves is a loss term) and the LSE evaluator scores
videos with it (`metrics.sync_experts.TrainedSyncNetExpert`). Both come from `restore_syncnet`,
which loads a `syncnet` stage workdir (stage checked) or Wav2Lip's public `lipsync_expert.pth`
through the one frozen-network loader (`pretrained.frozen`); a missing file or workdir is an
error naming it, never random weights.

Dimensions: B batch, T frames per window (5), S face size (96 for the public expert).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from talking_heads.losses.sync import cosine_bce
from talking_heads.metrics import sync_experts
from talking_heads.models import syncnet as syncnet_lib
from talking_heads.pretrained import frozen
from talking_heads.pretrained import syncnet as syncnet_convert

STAGE = "syncnet"
PUBLIC_FILE = "wav2lip_lipsync_expert"   # third_party.weights key of lipsync_expert.pth


@dataclasses.dataclass(frozen=True)
class SyncNetWeights:
  """A restored SyncNet_color.

  Attributes:
    variables: {"params", "batch_stats"} as host arrays.
    width: the network's width multiplier.
    image_size: the face size it was trained on.
    bgr: the channel order it was trained on.
    source: where the weights came from (for logs, reports and errors).
  """
  variables: dict[str, Any]
  width: float
  image_size: int
  bgr: bool
  source: str


def restore_syncnet(workdir: str = "", checkpoint: str = "", step: int | None = None, *,
                    names: tuple[str, str] = ("workdir", "checkpoint")) -> SyncNetWeights:
  """The expert of a `syncnet` workdir or of Wav2Lip's public `lipsync_expert.pth` (one of them).

  `names` say what the two arguments are called where they were set (config keys or flags), so
  that errors point there.

  Raises:
    ValueError: neither or both given, or the workdir trained another stage.
    FileNotFoundError: the workdir has no config or no checkpoint, or was never trained (step 0).
    third_party.weights.MissingWeightsError: the public file does not exist.
  """
  loaded = frozen.load_frozen(
      stage=STAGE, variables_of=lambda stage, state: stage.variables(state),
      weights_key=PUBLIC_FILE, convert=syncnet_convert.load_syncnet_color,
      workdir=workdir or None, checkpoint=checkpoint or None, step=step,
      train_config="experiments/configs/experts/syncnet.py:demo",
      what="lip-sync expert (SyncNet_color)", names=names)
  if loaded.config is None:   # the public expert: full width, 96 px faces, BGR
    return SyncNetWeights(loaded.variables, 1.0, syncnet_lib.FACE_SIZE, True, loaded.source)
  c = loaded.config
  return SyncNetWeights(loaded.variables, c.model.width, int(c.data.image_size),
                        bool(c.data.bgr), loaded.source)


@dataclasses.dataclass(frozen=True)
class FrozenLipSyncExpert:
  """A frozen SyncNet_color as a loss: its variables are constants, never trainable state.

  Attributes:
    weights: the restored network.
    use_running_average: BatchNorm on running statistics (True) or batch statistics (the
      reference leaves the expert's BatchNorm in training mode; Wav2Lip issue #482).
  """
  weights: SyncNetWeights
  use_running_average: bool = True

  @property
  def source(self) -> str:
    return self.weights.source

  def loss(self, mels: jax.Array, frames: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """Mean BCE(cos, 1) of mels [B, 80, 16] and RGB frames [B, T, S, S, 3] in [0, 1]."""
    size = syncnet_lib.FACE_SIZE
    if frames.shape[2:4] != (size, size):
      frames = jax.image.resize(frames, (*frames.shape[:2], size, size, 3), "linear")
    faces = syncnet_lib.stack_lower_halves(frames, to_bgr=self.weights.bgr)  # [B, 48, 96, 3T]
    mels = mels[..., None].astype(jnp.float32)                               # [B, 80, 16, 1]
    model = syncnet_lib.SyncNetColor(width=self.weights.width)
    if self.use_running_average:
      audio, face = model.apply(self.weights.variables, mels, faces, use_running_average=True)
    else:
      (audio, face), _ = model.apply(self.weights.variables, mels, faces,
                                     use_running_average=False, mutable=["batch_stats"])
    return cosine_bce(audio, face, jnp.ones(audio.shape[:1]), weights)


def load_frozen_expert(cfg: ml_collections.ConfigDict) -> FrozenLipSyncExpert:
  """The frozen expert named by a `sync_expert` config {workdir, checkpoint, use_running_average}."""
  workdir, checkpoint = cfg.get("workdir", ""), cfg.get("checkpoint", "")
  if not workdir and not checkpoint:
    raise ValueError("Wav2Lip training needs a frozen lip-sync expert and none is configured: set "
                     "sync_expert.workdir (a workdir of the 'syncnet' stage, e.g. runs/syncnet_demo) "
                     "or sync_expert.checkpoint (Wav2Lip's lipsync_expert.pth); the stage never "
                     "trains against random expert weights")
  return FrozenLipSyncExpert(
      restore_syncnet(workdir, checkpoint, names=("sync_expert.workdir", "sync_expert.checkpoint")),
      bool(cfg.get("use_running_average", True)))


def lse_expert(workdir: str, step: int | None = None,
               **kwargs: Any) -> sync_experts.TrainedSyncNetExpert:
  """The LSE scorer with the expert of a `syncnet` workdir (not comparable with papers)."""
  w = restore_syncnet(workdir=workdir, step=step)
  return sync_experts.TrainedSyncNetExpert(w.variables, width=w.width, image_size=w.image_size,
                                           bgr=w.bgr, source=w.source, **kwargs)
