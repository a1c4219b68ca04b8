"""The frozen lip-sync experts: the training expert (a loss) and the LSE scorers.

Two consumers need the same trained SyncNet_color: Wav2Lip's stage trains against it (a frozen
player whose BCE(cos, 1) on generated lower halves is a loss term) and the LSE evaluator scores
videos with it (`metrics.sync_experts.TrainedSyncNetExpert`). Both come from `restore_syncnet`,
which loads a `syncnet` stage workdir (stage checked) or Wav2Lip's public `lipsync_expert.pth`
through the one frozen-network loader (`pretrained.frozen`); a missing file or workdir is an
error naming it, never random weights.

Which expert scores LSE (`lse_scorer`), in order: syncnet_python's official S when its file is
given (the only numbers comparable with papers); else the independent expert, S's architecture
trained here by the `syncnet_eval` stage, which no generator trains against, provided it tells
offsets apart on held-out clips (its config's `judge_min_over_chance`, default
`MIN_OFFSET_ACCURACY_OVER_CHANCE`: a weak judge would make every
system look alike); else the colour expert above, which Wav2Lip trains against (reported as
such, with the reason: it can reward training against the judge). Every report names the expert
it used (`describe()`).

Dimensions: B batch, T frames per window (5), S face size (96 for the public expert).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterable, Mapping

from absl import logging

import jax
import jax.numpy as jnp
import ml_collections

from talking_heads.io import html_report
from talking_heads.losses.sync import cosine_bce
from talking_heads.metrics import agreement as agreement_lib
from talking_heads.metrics import sync_experts
from talking_heads.models import syncnet as syncnet_lib
from talking_heads.pipelines import base as pipeline_base
from talking_heads.pipelines import sync as sync_pipeline
from talking_heads.pretrained import frozen
from talking_heads.pretrained import syncnet as syncnet_convert
from talking_heads.training import restore
from third_party import weights as weights_lib

STAGE = "syncnet"
PUBLIC_FILE = "wav2lip_lipsync_expert"   # third_party.weights key of lipsync_expert.pth
EVAL_STAGE = "syncnet_eval"
EVAL_PUBLIC_FILE = "syncnet_v2"          # third_party.weights key of syncnet_v2.model
# A trained independent expert scores LSE only when its held-out per-window offset accuracy is at
# least this multiple of chance (or its config's `judge_min_over_chance`). Measured on the demo corpus (experiments/results/syncnet_eval_demo):
# experts at 1.0-1.1x chance recovered 0 % of planted shifts on whole clips (LSE-C in sync below
# foreign audio's); the weakest one above it, at 2.0x, recovered 92-100 % (LSE-C ratio 2.8-3.0).
MIN_OFFSET_ACCURACY_OVER_CHANCE = 2.0


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


def independent_expert(workdir: str = "", checkpoint: str = "", step: int | None = None, *,
                       names: tuple[str, str] = ("sync_eval_workdir", "weights_dir")
                       ) -> sync_experts.SyncNetSExpert:
  """syncnet_python's S: trained here by a `syncnet_eval` workdir, or the official
  `syncnet_v2.model` (a file or the weights folder holding it); exactly one of them.

  Raises: as `restore_syncnet` (no random weights, errors name the missing workdir or file).
  """
  loaded = frozen.load_frozen(
      stage=EVAL_STAGE, variables_of=lambda stage, state: stage.variables(state),
      weights_key=EVAL_PUBLIC_FILE, convert=syncnet_convert.load_syncnet_s,
      workdir=workdir or None, checkpoint=checkpoint or None, step=step,
      train_config="experiments/configs/experts/syncnet_eval.py:demo",
      what="independent LSE expert (syncnet_python S)", names=names)
  if loaded.config is None:
    return sync_experts.SyncNetSExpert(loaded.variables, source=loaded.source)
  m = loaded.config.model
  region = loaded.config.data.get("lip_region", "face")
  model = syncnet_lib.SyncNetS(embed_dim=m.embed_dim, width=m.width, lip_size=m.lip_size)
  return sync_experts.SyncNetSExpert(
      loaded.variables, source=loaded.source, model=model,
      name=(f"syncnet_python S architecture trained here, independent of the generators (width "
            f"{m.width:g}, {m.lip_size} px {region} crops; {loaded.source})"),
      comparable_with_papers=False,
      resize=lambda frames, size: pipeline_base.resize_frames(
          sync_pipeline.crop_lip_region(frames, region), size))


def _has_checkpoint(workdir: str) -> bool:
  return bool(workdir) and os.path.isdir(os.path.join(workdir, "checkpoints"))


def independent_expert_quality(workdir: str) -> dict[str, float]:
  """How well a `syncnet_eval` workdir's expert tells offsets apart on clips it never trained on:
  its last eval's per-window offset accuracy, the chance level 1 / (2K + 1), their ratio and the
  ratio its config requires to judge ({} when the run has no eval record)."""
  _, evaluation = html_report.read_metrics(os.path.join(workdir, "metrics.jsonl"))
  evaluation = [r for r in evaluation if "eval/offset_accuracy" in r]
  if not evaluation:
    return {}
  config = restore.load_config(workdir, expected_stage=EVAL_STAGE)
  chance = 1.0 / (2 * int(config.data.max_offset) + 1)
  accuracy = float(evaluation[-1]["eval/offset_accuracy"])
  return {"step": int(evaluation[-1]["step"]), "offset_accuracy": accuracy, "chance": chance,
          "over_chance": accuracy / chance,
          "required": float(config.get("judge_min_over_chance", MIN_OFFSET_ACCURACY_OVER_CHANCE))}


def lse_scorer(*, sync_eval_workdir: str = "", weights_dir: str = "", syncnet_workdir: str = "",
               min_over_chance: float | None = None) -> sync_experts.SyncExpert:
  """The expert that scores LSE (module docstring): the official S when `weights_dir` holds
  syncnet_v2.model, else the `syncnet_eval` workdir when it has checkpoints and its held-out
  offset accuracy reaches `min_over_chance` x chance (default: the ratio its config requires,
  `independent_expert_quality`), else the
  colour expert of `syncnet_workdir` (logged and named as such: generators trained against it).

  Raises:
    ValueError: none of the three is available (a rejected independent expert is named).
  """
  if weights_dir:
    try:
      official = weights_lib.require(weights_dir, EVAL_PUBLIC_FILE)
    except weights_lib.MissingWeightsError:
      official = None
    if official is not None:
      return independent_expert(checkpoint=os.fspath(official))
  reason = f"no independent expert (no syncnet_v2.model in {weights_dir!r}, no checkpoints in " \
           f"sync_eval_workdir {sync_eval_workdir!r})"
  if _has_checkpoint(sync_eval_workdir):
    quality = independent_expert_quality(sync_eval_workdir)
    if quality and min_over_chance is None:
      min_over_chance = quality["required"]
    if quality and quality["over_chance"] >= min_over_chance:
      return independent_expert(sync_eval_workdir)
    reason = (f"the independent expert of {sync_eval_workdir} is too weak to judge: held-out "
              f"offset accuracy {quality.get('offset_accuracy', float('nan')):.3f} at step "
              f"{quality.get('step', 0)} is {quality.get('over_chance', 0.0):.1f}x chance, below "
              f"the {min_over_chance:g}x it needs" if quality else
              f"the independent expert of {sync_eval_workdir} has no eval record to vouch for it")
  if syncnet_workdir:
    logging.warning("LSE: %s; scoring with the colour expert the generators trained against (%s)",
                    reason, syncnet_workdir)
    expert = lse_expert(syncnet_workdir)
    expert.name += f"; used because {reason}"
    return expert
  raise ValueError(f"LSE needs an expert and {reason}: give syncnet_v2.model in the weights "
                   "folder, a trained `syncnet_eval` workdir (python -m experiments.train "
                   "--config=experiments/configs/experts/syncnet_eval.py:demo --workdir=...) or a "
                   "`syncnet` workdir")


def scorer_label(expert: sync_experts.SyncExpert) -> str:
  """How tables name the expert that scored their LSE columns."""
  d = expert.describe()
  comparable = "comparable" if d["comparable_with_papers"] else "NOT comparable"
  return f"{d['name']} ({comparable} with papers)"


def lse_scorers(*, sync_eval_workdir: str = "", weights_dir: str = "", syncnet_workdir: str = ""
                ) -> tuple[sync_experts.SyncExpert, sync_experts.SyncExpert | None]:
  """(the LSE scorer (`lse_scorer`), the colour training expert as a second scorer for the
  experts' agreement, or None when it is the scorer itself or not given)."""
  scorer = lse_scorer(sync_eval_workdir=sync_eval_workdir, weights_dir=weights_dir,
                      syncnet_workdir=syncnet_workdir)
  second = None
  if syncnet_workdir and not isinstance(scorer, sync_experts.TrainedSyncNetExpert):
    second = lse_expert(syncnet_workdir)
  return scorer, second


def agreement(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
  """Spearman's rho of LSE-C between the scorer (lse_c) and the second expert (lse_c_second)
  over score rows, e.g. every (system, clip) of a table; {} when no row has a second score."""
  pairs = [(r["lse_c"], r["lse_c_second"]) for r in rows if "lse_c_second" in r]
  if not pairs:
    return {}
  first, second = zip(*pairs)
  return {"pairs": len(pairs), "spearman_lse_c": agreement_lib.spearman(first, second)}
