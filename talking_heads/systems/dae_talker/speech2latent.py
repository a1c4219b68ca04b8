"""DAE-Talker's speech2latent stage (§3.2, §4.1.2) and its predictor.

Trains `models.speech2latent.Speech2Latent` to map speech features to the per-frame latents of
the trained diffusion autoencoder (written by `systems.dae_talker.latents.encode_clips`) of one speaker
(`data.identities`), with the head pose as a teacher-forced condition (Eq. 5):

  loss = MSE(latents) + alpha * MSE(pose)      over valid frames; alpha = loss.alpha (paper: not
                                               given; 1)

Data: `pipelines.sequences` windows of the train split: pseudo-sentences (random start, random
length in [data.min_length, data.max_length] frames; the paper's 5-20 s) or, for the Table 2
ablation ("w/o data aug"), segments cut at fixed timestamps (`data.sampling`).

Features: the paper feeds wav2vec2 XLSR (50 fps, stride 2); no wav2vec2 weights can be downloaded
here, so `model.features` is the RADIO mel (100 fps, 80 bins, stride 4), computed from the 16 kHz
audio exactly as the pipelines do (`pipelines.base.ClipReader.mel`).

Pose: the dataset's pose [T, 6] starts with yaw, pitch, roll in radians (the paper's roll,
pitch, yaw in another order); the model reads and predicts pose[..., :3] / data.pose_scale, a
fixed scale (e.g. 0.01 rad) so that the pose term is O(1) for a speaker whose head moves by
a degree or two.

Latent standardisation: the loss is taken on latents standardised per dimension by the mean and
standard deviation over every frame of the train clips of `data.identities` (diffae normalises
its semantic latents the same way before modelling them). DAE latents are not normalised: a few
dimensions with a large spread would otherwise dominate a plain MSE. The statistics are computed
when the stage is built and stored in the train state's `model_state` (`latent_mean`,
`latent_std`), so a checkpoint carries them and the predictor needs no dataset;
`loss.standardise_latents = False` keeps the paper's plain MSE (mean 0, std 1).

Metrics. Training: `loss`, `latent_mse_standardised` (the loss's latent term), `pose_mse` (in
pose_scale units) and `grad_norm`. Evaluation on `data.eval_split` windows (consecutive
max_length windows of each clip), frames weighted equally across batches: `latent_mse` in DAE
latent units conditioned on the ground-truth pose (the paper's Fig. 6 curve),
`latent_mse_predicted_pose` conditioned on the predicted pose (as at inference), and the
training terms `loss`, `latent_mse_standardised`, `pose_mse` (teacher forced).

Config fields: model{features, model_dim, num_heads, encoder_blocks, decoder_blocks, ffn_dim,
kernel_size, input_kernel (0: the stride), pose_channels, pose_kernel, latent_dim, dropout,
dtype}, loss{alpha, standardise_latents}, data{root, identities, latents, sampling, min_length,
max_length, pose_scale, eval_split, eval_seed, num_workers}, optimizer{...}, ema_decay, plus the
trainer fields.

Dimensions: B batch, T video frames (L = data.max_length padded), F = R T feature frames (R = 4
RADIO mel frames per 25 fps frame), A feature width, P = 3 pose angles, Z latent width.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from talking_heads.audio import mel as mel_lib
from talking_heads.io import dataset as dataset_lib
from talking_heads.models import speech2latent as s2l
from talking_heads.pipelines import base
from talking_heads.pipelines import sequences
from talking_heads.io.dataset import parse_identities
from talking_heads.training import restore
from talking_heads.training.optimizers import build_optimizer
from talking_heads.training.stage import LossStage
from talking_heads.training.state import TrainState

# Feature name -> (what the model reads, how it is computed from 16 kHz audio).
FEATURES: dict[str, tuple[s2l.AudioFeatureSpec, mel_lib.MelConfig]] = {
    "radio_mel": (s2l.RADIO_MEL_FEATURES, mel_lib.RADIO_MEL),
}
_STD_FLOOR = 1e-6  # a latent dimension that never varies is not amplified past this


def build_model(model_config: ml_collections.ConfigDict) -> s2l.Speech2Latent:
  m = model_config
  if m.features not in FEATURES:
    raise ValueError(f"model.features must be one of {sorted(FEATURES)}, got {m.features!r} "
                     "(there is no wav2vec2 encoder here: its weights cannot be downloaded)")
  return s2l.Speech2Latent(
      feature_spec=FEATURES[m.features][0], model_dim=m.model_dim, num_heads=m.num_heads,
      encoder_blocks=m.encoder_blocks, decoder_blocks=m.decoder_blocks, ffn_dim=m.ffn_dim,
      kernel_size=m.kernel_size, input_kernel=m.input_kernel or None,
      pose_channels=m.pose_channels, pose_kernel=m.pose_kernel, latent_dim=m.latent_dim,
      dropout_rate=m.dropout, dtype=jnp.dtype(m.get("dtype", "float32")))


def latent_statistics(root: str | os.PathLike, name: str, identities: Sequence[str] | None,
                      split: str = "train") -> tuple[np.ndarray, np.ndarray]:
  """Per-dimension mean and standard deviation [Z] (float32) over every frame of the split's
  clips (of `identities`) in latents `name`; the std is floored at 1e-6."""
  _, clips = base.open_split(root, split, identities)
  shape = base.check_latents(root, name, clips)
  if len(shape) != 1:
    raise dataset_lib.DatasetError(root, f"latents {name!r} have per-frame shape {shape}; "
                                   "speech2latent needs vectors [T, Z]")
  total, total_sq, count = np.zeros(shape), np.zeros(shape), 0
  for clip in clips:
    x = np.asarray(np.load(base.latents_path(root, name, clip.id), allow_pickle=False),
                   np.float64)
    total += x.sum(0)
    total_sq += np.square(x).sum(0)
    count += len(x)
  mean = total / count
  std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))
  return mean.astype(np.float32), np.maximum(std, _STD_FLOOR).astype(np.float32)


class Speech2LatentStage(LossStage):
  """Trains `Speech2Latent` on Eq. 5 (module docstring).

  Batch keys (from `pipelines.sequences`): mel float32 [B, R L, 80], pose float32 [B, L, 6],
  latents float32 [B, L, Z], mask bool [B, L]; eval batches also valid bool [B].
  """

  def __init__(self, config: ml_collections.ConfigDict,
               latent_stats: tuple[np.ndarray, np.ndarray] | None = None):
    """`latent_stats` (mean, std) [Z] overrides computing them from `data.root`'s latents.

    With `loss.standardise_latents` off, or without a `data.root` (building a config; restoring a
    checkpoint, which carries them), the statistics are the identity: mean 0, std 1.
    """
    super().__init__(config)
    d, z = config.data, config.model.latent_dim
    if d.sampling not in sequences.SAMPLINGS:
      raise ValueError(f"data.sampling must be one of {sequences.SAMPLINGS}, got {d.sampling!r}")
    if not d.pose_scale > 0:
      raise ValueError(f"data.pose_scale must be positive, got {d.pose_scale}")
    self.model = build_model(config.model)
    self.mel_config = FEATURES[config.model.features][1]
    self.tx = build_optimizer(config.optimizer, config.total_steps)
    if latent_stats is None and d.root and config.loss.standardise_latents:
      latent_stats = latent_statistics(d.root, d.latents, self._identities())
    if latent_stats is None:
      latent_stats = (np.zeros(z, np.float32), np.ones(z, np.float32))
    mean, std = (np.asarray(s, np.float32) for s in latent_stats)
    if mean.shape != (z,) or std.shape != (z,):
      raise ValueError(f"latent statistics have shapes {mean.shape}, {std.shape}; "
                       f"model.latent_dim is {z} (latents {d.latents!r} of another width?)")
    self.latent_mean, self.latent_std = mean, std

  @property
  def frames_per_video_frame(self) -> int:
    """R, feature frames per video frame."""
    return self.model.feature_spec.frames_per_video_frame(self.model.video_fps)

  # ------------------------------------------------------------------------------------ state

  def init_state(self, rng: jax.Array) -> TrainState:
    r = self.frames_per_video_frame
    features = jnp.zeros((1, 2 * r, self.model.feature_spec.dim), jnp.float32)
    pose = jnp.zeros((1, 2, self.model.pose_dim), jnp.float32)
    mask = jnp.ones((1, 2), bool)
    params = self.model.init(rng, features, pose, mask, False)["params"]
    stats = {"latent_mean": jnp.asarray(self.latent_mean),
             "latent_std": jnp.asarray(self.latent_std)}
    return TrainState.create(params, self.tx, rng=rng, model_state=stats,
                             ema_decay=self.config.get("ema_decay", 0.0))

  # ----------------------------------------------------------------------------------- losses

  def _pose(self, batch: dict[str, jax.Array]) -> jax.Array:
    """Dataset pose [B, T, 6] -> the model's (yaw, pitch, roll) / pose_scale [B, T, 3]."""
    pose = batch["pose"][..., :self.model.pose_dim].astype(jnp.float32)
    return pose / self.config.data.pose_scale

  def _check_latents(self, latents: jax.Array) -> None:
    if latents.shape[-1] != self.model.latent_dim:
      raise ValueError(f"batch latents have width {latents.shape[-1]}; model.latent_dim is "
                       f"{self.model.latent_dim}")

  def loss_fn(self, params: Any, model_state: Any, batch: dict[str, jax.Array], rng: jax.Array):
    """model_state: the latent statistics (fixed)."""
    self._check_latents(batch["latents"])
    mask = batch["mask"].astype(bool)
    pose = self._pose(batch)
    target = (batch["latents"] - model_state["latent_mean"]) / model_state["latent_std"]
    out = self.model.apply({"params": params}, batch["mel"], pose, mask, True,
                           rngs={"dropout": rng})
    loss, terms = s2l.speech2latent_loss(out, target, pose, mask, self.config.loss.alpha)
    return loss, ({"latent_mse_standardised": terms["latent_mse"],
                   "pose_mse": terms["pose_mse"]}, None)

  # --------------------------------------------------------------------------------- evaluation

  def eval_step(self, state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
    del rng  # deterministic: no dropout, no sampling
    self._check_latents(batch["latents"])
    params, stats = state.eval_params, state.model_state
    mask = batch["mask"].astype(bool) & batch["valid"].astype(bool)[:, None]
    pose = self._pose(batch)
    apply = functools.partial(self.model.apply, {"params": params}, batch["mel"], None, mask,
                              False)
    teacher = apply(pose_override=pose)
    free = apply()
    unstandardise = lambda x: x * stats["latent_std"] + stats["latent_mean"]
    target = batch["latents"].astype(jnp.float32)
    standardised = (target - stats["latent_mean"]) / stats["latent_std"]
    loss, terms = s2l.speech2latent_loss(teacher, standardised, pose, mask,
                                         self.config.loss.alpha)
    return {"loss": loss, "pose_mse": terms["pose_mse"],
            "latent_mse_standardised": terms["latent_mse"],
            "latent_mse": s2l.masked_mse(unstandardise(teacher["latents"]), target, mask),
            "latent_mse_predicted_pose": s2l.masked_mse(unstandardise(free["latents"]), target,
                                                        mask),
            "eval_weight": jnp.sum(mask)}

  def images(self, state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
    """Standardised latents over time, true above predicted (from the predicted pose, as at
    inference), per window: [N, (2 Z + 1) s, L s, 3] with s = max(1, 64 // Z) pixels per value;
    red positive, blue negative, white 0 (saturated at 3 standard deviations), grey padding."""
    del rng
    n = min(4, batch["latents"].shape[0])
    stats = state.model_state
    mask = batch["mask"][:n].astype(bool)
    predicted = self.model.apply({"params": state.eval_params}, batch["mel"][:n], None, mask,
                                 False)["latents"]                                # [N, L, Z]
    true = (batch["latents"][:n].astype(jnp.float32) - stats["latent_mean"]) / stats["latent_std"]

    def colour(x: jax.Array) -> jax.Array:                          # [N, L, Z] -> [N, Z, L, 3]
      v = jnp.clip(x / 3.0, -1.0, 1.0)
      rgb = jnp.stack([1 - jax.nn.relu(-v), 1 - jnp.abs(v), 1 - jax.nn.relu(v)], axis=-1)
      return jnp.where(mask[..., None, None], rgb, 0.5).transpose(0, 2, 1, 3)

    gap = jnp.ones((n, 1, mask.shape[1], 3))
    image = jnp.concatenate([colour(true), gap, colour(predicted)], axis=1)
    scale = max(1, 64 // true.shape[-1])
    return {"latents_true_over_predicted":
            jnp.repeat(jnp.repeat(image, scale, axis=1), scale, axis=2)}

  # -------------------------------------------------------------------------------------- data

  def _identities(self) -> tuple[str, ...] | None:
    return parse_identities(self.config.data.identities) or None

  def _pipeline_options(self) -> dict[str, Any]:
    d = self.config.data
    fps = dataset_lib.Dataset(d.root).fps
    if fps != self.model.video_fps:
      raise ValueError(f"dataset {d.root}: {fps} fps; speech2latent is set up for "
                       f"{self.model.video_fps:g} fps video")
    return dict(mel=self.mel_config, latents=d.latents, identities=self._identities(),
                min_length=d.min_length, max_length=d.max_length)

  def train_iterator(self, batch_size: int, shard_index: int, shard_count: int):
    d = self.config.data
    return sequences.make_sequence_iterator(
        d.root, batch_size=batch_size, shard_index=shard_index, shard_count=shard_count,
        seed=self.config.seed, num_workers=d.num_workers, split="train", sampling=d.sampling,
        **self._pipeline_options())

  def eval_batches(self, batch_size: int, shard_index: int, shard_count: int):
    d = self.config.data
    it = sequences.make_sequence_eval_iterator(
        d.root, batch_size=batch_size, shard_index=shard_index, shard_count=shard_count,
        seed=d.eval_seed, num_workers=0, split=d.eval_split, **self._pipeline_options())
    keys = ("mel", "pose", "latents", "mask", "valid")
    yield from ({k: b[k] for k in keys} for b in it)

  # ------------------------------------------------------------------------------- benchmark

  def inference(self, state: TrainState) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """Latents and poses of `batch_size` max_length windows from their features."""
    b, length = self.config.batch_size, self.config.data.max_length
    features = jnp.zeros((b, length * self.frames_per_video_frame, self.model.feature_spec.dim))
    mask = jnp.ones((b, length), bool)
    fn = jax.jit(lambda params, x, m: self.model.apply({"params": params}, x, None, m, False))
    return fn, (state.eval_params, features, mask)


class Speech2LatentPredictor:
  """A trained speech2latent: speech of one utterance -> DAE latents and head poses per frame.

  Any length runs in one pass (the Conformers' positions are relative): the frames are padded
  to the next multiple of the training max_length, so a few shapes compile, and padding changes
  nothing at the real frames. Deterministic (no dropout).
  """

  def __init__(self, stage: Speech2LatentStage, params: Any, latent_mean: np.ndarray,
               latent_std: np.ndarray, source: str):
    self.stage = stage
    self.params = jax.device_put(params)
    self.latent_mean = np.asarray(latent_mean, np.float32)
    self.latent_std = np.asarray(latent_std, np.float32)
    self.source = source
    model = stage.model

    def apply(params, features, mask, pose_override):
      return model.apply({"params": params}, features, None, mask, False,
                         pose_override=pose_override)
    self._apply = jax.jit(apply)

  @property
  def video_fps(self) -> float:
    return self.stage.model.video_fps

  @property
  def mel_config(self) -> mel_lib.MelConfig:
    return self.stage.mel_config

  def predict(self, mel: np.ndarray, num_frames: int,
              pose_override: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Features of one utterance -> {"latents": [T, Z] DAE units, "pose": [T, 3] radians}.

    Args:
      mel: [F, A] time-major features (the RADIO mel of the 16 kHz audio), F >= R T; video
        frame t reads frames R t .. R t + R - 1 (as in training), later ones are ignored.
      num_frames: T.
      pose_override: [T, 3] yaw, pitch, roll in radians to condition on (pose control), or None
        for the pose predicted from the speech. The returned "pose" is always the predicted one.
    """
    r, dim = self.stage.frames_per_video_frame, self.stage.model.feature_spec.dim
    mel = np.asarray(mel, np.float32)
    if num_frames < 1:
      raise ValueError(f"speech2latent: num_frames must be >= 1, got {num_frames}")
    if mel.ndim != 2 or mel.shape[1] != dim or mel.shape[0] < r * num_frames:
      raise ValueError(f"speech2latent: features of {num_frames} frames must be [F >= "
                       f"{r * num_frames}, {dim}], got {mel.shape}")
    bucket = self.stage.config.data.max_length
    padded = math.ceil(num_frames / bucket) * bucket
    features = np.zeros((1, padded * r, dim), np.float32)
    features[0, :num_frames * r] = mel[:num_frames * r]
    mask = np.arange(padded)[None] < num_frames
    condition = None
    if pose_override is not None:
      pose_override = np.asarray(pose_override, np.float32)
      if pose_override.shape != (num_frames, self.stage.model.pose_dim):
        raise ValueError(f"speech2latent: pose_override must be [{num_frames}, "
                         f"{self.stage.model.pose_dim}] radians, got {pose_override.shape}")
      condition = np.zeros((1, padded, self.stage.model.pose_dim), np.float32)
      condition[0, :num_frames] = pose_override / self.stage.config.data.pose_scale
    out = jax.device_get(self._apply(self.params, features, mask, condition))
    latents = out["latents"][0, :num_frames] * self.latent_std + self.latent_mean
    pose = out["pose"][0, :num_frames] * self.stage.config.data.pose_scale
    return {"latents": latents.astype(np.float32), "pose": pose.astype(np.float32)}

  def predict_from_audio(self, audio: np.ndarray, pose_override: np.ndarray | None = None,
                         sample_rate: int = 16000) -> dict[str, np.ndarray]:
    """Mono float audio [N] -> `predict` over its T = N // (sample_rate / fps) whole frames."""
    config = self.mel_config
    if sample_rate != config.sample_rate:
      raise ValueError(f"speech2latent: audio at {sample_rate} Hz; resample it to "
                       f"{config.sample_rate} Hz")
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1:
      raise ValueError(f"speech2latent: audio must be mono [N], got shape {audio.shape}")
    num_frames = int(len(audio) // (config.sample_rate / self.video_fps))
    if num_frames < 1:
      raise ValueError(f"speech2latent: {len(audio)} samples are shorter than one video frame")
    mel = mel_lib.mel_spectrogram_time_major(audio, config)
    return self.predict(mel, num_frames, pose_override)


def load_speech2latent(workdir: str | os.PathLike,
                       step: int | None = None) -> Speech2LatentPredictor:
  """The predictor of a trained `speech2latent` workdir (newest checkpoint, or `step`).

  The latent statistics come from the checkpoint, so the dataset need not be present.

  Raises:
    FileNotFoundError: not a workdir, or no checkpoint in it.
    ValueError: the workdir trains another stage.
  """
  workdir = os.fspath(workdir)
  config = restore.load_config(workdir, expected_stage="speech2latent")
  z = config.model.latent_dim
  # Built without the dataset: the checkpoint carries the latent statistics.
  stage = Speech2LatentStage(config, latent_stats=(np.zeros(z), np.ones(z)))
  _, state, restored = restore.restore_stage(workdir, step, stage=stage)
  stats = jax.device_get(state.model_state)
  return Speech2LatentPredictor(stage, jax.device_get(state.eval_params), stats["latent_mean"],
                                stats["latent_std"], source=f"{workdir} step {restored}")
