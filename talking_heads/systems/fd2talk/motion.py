"""FD2Talk's stage 1 (`fd2talk_motion`): the Exp Transformer, the Pose Transformer or, for
Table 2's "Single Diffusion Transformer" ablation, one joint DiT (`model.motion` = "expression",
"pose" or "joint"; paper §3.2-3.4, Eqs. 2, 4, 8-12; spec §2.2-2.4, §3).

Trains `models.fd2talk_motion.MotionDiT` on windows of F = `data.window` frames of the train
clips (`pipelines.sequences`, fixed length; `features` for the audio and the morphable-model
parameters), predicting x0 (Eqs. 8-9) on the shared diffusion toolkit:

  x0    = the motion, z-scored per dimension with the train split's mean and std (spec §4/§8:
          pose values differ in scale by 10^3); expression [F, X], pose [F, 6] or both [F, X + 6]
  t ~ U{0 .. T-1}, eps ~ N(0, I):  x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps     (Eq. 2)
  L_x0   = mean over frames and dimensions of (x0 - DiT(x_t, t, audio))^2          (Eqs. 8-9)
  L_sync = -log P_sync of the frozen lip expert (`lip_expert.FrozenLipExpert`, Eq. 11) on the
           mouth points of (clip alpha, the de-normalised expression part of x0_hat), averaged
           over every 5-frame window of the F frames; every t (spec §3's default)
  loss   = L_x0 + loss.sync_weight * L_sync                                          (Eq. 12)

T = `diffusion.num_timesteps` (1000) on DreamTalk's linear betas 1e-4 .. 0.02 (spec §2.3;
0-based timesteps here). L_sync applies to "expression" and to the expression part of "joint";
"pose" has no mouth, so it ignores loss.sync_weight. With sync_weight > 0 the expert comes from
`lip_expert.workdir` (an `fd2talk_lip_expert` workdir trained on the same audio features; an
error naming the field when it is missing): its variables are closed over, never trained.

Table 3's ablations: `model.alignment_mask=False` (w/o alignment: full cross-attention) and
`loss.sync_weight=0` (w/o L_sync).

Evaluation on `data.eval_split` windows (held-out clips), with the eval key fixed per run:
  x0_mse        L_x0 at random t (the training objective, normalised units);
  sampled_mse   x0 sampled from noise by DDIM (`sampling.steps`, eta `sampling.eta`; paper 50,
                0) against the true motion, normalised units;
  expression and joint also: mouth_opening_corr, the Pearson correlation over the batch's frames
  of the sampled and the true mouth opening (`face.morphable.mouth_opening` of the model-frame
  landmarks, alpha of the clip).

The train state's model_state holds the normalisation (`motion_mean`, `motion_std` [D]), so a
checkpoint carries it to inference; it is computed from `data.root`'s train split (zeros and
ones with no data root, e.g. to restore a workdir without its dataset).

Config fields: model{sizes, motion, alignment_mask, mask_window, self_attention, dtype},
diffusion{num_timesteps, schedule, beta_start, beta_end}, sampling{steps, spacing, eta},
loss{sync_weight}, lip_expert{workdir}, audio{frontend, weights, layer, dim}, data{root,
identities, window, eval_split, eval_seed, num_workers}, optimizer{...}, plus the trainer fields.

Dimensions: B batch, F frames, D motion width (X expression, 6 pose, or X + 6), A audio feature
width, I identity parameters.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from talking_heads.diffusion import parameterization as param
from talking_heads.diffusion import samplers, schedules
from talking_heads.face import morphable
from talking_heads.io.dataset import parse_identities
from talking_heads.models import fd2talk_lip_expert, fd2talk_motion
from talking_heads.systems import images as images_lib
from talking_heads.systems.fd2talk import features
from talking_heads.systems.fd2talk import lip_expert as lip_expert_lib
from talking_heads.systems.fd2talk import sizes as sizes_lib
from talking_heads.training.optimizers import build_optimizer
from talking_heads.training.stage import LossStage
from talking_heads.training.state import TrainState

STAGE = "fd2talk_motion"
POSE_DIM = 6

PyTree = Any


def build_model(config: ml_collections.ConfigDict) -> fd2talk_motion.MotionDiT:
  m = config.model
  if m.motion not in fd2talk_motion.MOTIONS:
    raise ValueError(f"model.motion must be one of {fd2talk_motion.MOTIONS}, got {m.motion!r}")
  return fd2talk_motion.MotionDiT(
      m.motion, expression_dim=morphable.default_model().num_expression, pose_dim=POSE_DIM,
      **sizes_lib.sizes(m.sizes).motion, window=m.mask_window if m.alignment_mask else None,
      self_attention=m.self_attention, remat=bool(m.get("remat", False)),
      dtype=jnp.dtype(m.get("dtype", "float32")))


def _pearson(x: jax.Array, y: jax.Array, weight: jax.Array) -> jax.Array:
  """Weighted Pearson correlation of x, y [N] (weights [N]); 0 when either is constant."""
  w = weight / jnp.maximum(jnp.sum(weight), 1e-12)
  dx, dy = x - jnp.sum(w * x), y - jnp.sum(w * y)
  cov = jnp.sum(w * dx * dy)
  return cov / jnp.maximum(jnp.sqrt(jnp.sum(w * dx * dx) * jnp.sum(w * dy * dy)), 1e-12)


class MotionStage(LossStage):
  """Trains one motion DiT (module docstring for the loss, ablations, evaluation and config).

  Batch keys (`pipelines.sequences`): mel float32 [B, 4 F, 80] (or audio_features [B, F, A]),
  alpha [B, I], expression [B, F, X], pose [B, F, 6]; eval batches also valid bool [B].
  """

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    d, df, s = config.data, config.diffusion, config.sampling
    self.face_model = morphable.default_model()
    self.audio = features.AudioFeatures.from_config(config.audio)
    self.model = build_model(config)
    self.motion = config.model.motion
    self.expression_dim = self.face_model.num_expression
    if d.window < 1:
      raise ValueError(f"data.window must be >= 1 frame, got {d.window}")
    self.schedule = schedules.make_schedule(df.schedule, df.num_timesteps, df.beta_start,
                                            df.beta_end)
    self.timesteps = schedules.make_timesteps(s.spacing, s.steps, df.num_timesteps)
    self.step_config = samplers.StepConfig(prediction="x0")
    if config.loss.sync_weight < 0:
      raise ValueError(f"loss.sync_weight must be >= 0, got {config.loss.sync_weight}")
    self.sync_weight = 0.0 if self.motion == "pose" else float(config.loss.sync_weight)
    if self.sync_weight > 0 and d.window < fd2talk_lip_expert.WINDOW:
      raise ValueError(f"data.window {d.window} is shorter than the lip expert's "
                       f"{fd2talk_lip_expert.WINDOW} frames (L_sync needs one window)")
    self.tx = build_optimizer(config.optimizer, config.total_steps)
    self._lip_expert: lip_expert_lib.FrozenLipExpert | None = None

  def lip_expert(self) -> lip_expert_lib.FrozenLipExpert:
    """The frozen expert of `lip_expert.workdir`, loaded once on first use."""
    if self._lip_expert is None:
      expert = lip_expert_lib.restore_frozen(self.config.lip_expert.workdir)
      if expert.audio != self.audio:
        raise ValueError(f"lip_expert.workdir={self.config.lip_expert.workdir!r} was trained on "
                         f"{expert.audio} audio features but this stage reads {self.audio}: "
                         "L_sync needs the same audio config in both stages")
      logging.info("FD2Talk motion: frozen lip expert from %s.", expert.source)
      self._lip_expert = expert
    return self._lip_expert

  # -------------------------------------------------------------------------------- data

  @property
  def motion_dim(self) -> int:
    return self.model.motion_dim

  @property
  def _columns(self) -> slice:
    """The motion's columns of concat(expression, pose) (expression first for "joint")."""
    return {"expression": slice(0, self.expression_dim), "pose": slice(self.expression_dim, None),
            "joint": slice(None)}[self.motion]

  def target(self, batch: Mapping[str, jax.Array]) -> jax.Array:
    """The raw motion [B, F, D] of `model.motion`."""
    both = jnp.concatenate([batch["expression"].astype(jnp.float32),
                            batch["pose"].astype(jnp.float32)], axis=-1)  # [B, F, X + 6]
    return both[..., self._columns]

  @functools.cached_property
  def statistics(self) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) [D] of the motion over every frame of the train split (0, 1 without data)."""
    d = self.config.data
    if not d.root:
      return np.zeros(self.motion_dim, np.float32), np.ones(self.motion_dim, np.float32)
    features.check_dataset(d.root, self.face_model)
    mean, std = features.motion_statistics(d.root, parse_identities(d.identities) or None)
    return mean[self._columns], std[self._columns]

  @staticmethod
  def normalise(model_state: PyTree, x: jax.Array) -> jax.Array:
    return (x - model_state["motion_mean"]) / model_state["motion_std"]

  @staticmethod
  def denormalise(model_state: PyTree, x: jax.Array) -> jax.Array:
    return x * model_state["motion_std"] + model_state["motion_mean"]

  # -------------------------------------------------------------------------------- model

  def init_state(self, rng: jax.Array) -> TrainState:
    f = self.config.data.window
    params = self.model.init(rng, jnp.zeros((1, f, self.motion_dim)), jnp.zeros((1,), jnp.int32),
                             jnp.zeros((1, f, self.audio.dim)))["params"]
    mean, std = self.statistics
    return TrainState.create(params, self.tx, rng=rng,
                             model_state={"motion_mean": jnp.asarray(mean),
                                          "motion_std": jnp.asarray(std)},
                             ema_decay=self.config.get("ema_decay", 0.0))

  def sync_loss(self, model_state: PyTree, x0_hat: jax.Array, batch: Mapping[str, jax.Array],
                audio: jax.Array) -> jax.Array:
    """L_sync (Eq. 11) of the expression part of a normalised x0_hat [B, F, D]."""
    expression = self.denormalise(model_state, x0_hat)[..., :self.expression_dim]
    return self.lip_expert().sync_loss(self.face_model, batch["alpha"].astype(jnp.float32),
                                       expression, audio)

  def loss_fn(self, params: PyTree, model_state: PyTree, batch: Mapping[str, jax.Array],
              rng: jax.Array):
    x0 = self.normalise(model_state, self.target(batch))                   # [B, F, D]
    audio = self.audio.per_frame(batch)                                     # [B, F, A]
    k_t, k_noise = jax.random.split(rng)
    t = schedules.random_timesteps(k_t, x0.shape[0], self.schedule.num_train_timesteps)
    x_t = param.q_sample(self.schedule, x0, t, jax.random.normal(k_noise, x0.shape))
    x0_hat = self.model.apply({"params": params}, x_t, t, audio)           # [B, F, D]
    x0_loss = jnp.mean(param.prediction_loss(x0_hat, x0))
    metrics = {"x0_loss": x0_loss}
    if self.motion == "joint":
      e = self.expression_dim
      metrics["x0_loss_expression"] = jnp.mean(jnp.square(x0_hat - x0)[..., :e])
      metrics["x0_loss_pose"] = jnp.mean(jnp.square(x0_hat - x0)[..., e:])
    loss = x0_loss
    if self.sync_weight > 0:
      sync = self.sync_loss(model_state, x0_hat, batch, audio)
      metrics["sync_loss"] = sync
      loss = loss + self.sync_weight * sync
    return loss, (metrics, None)

  # --------------------------------------------------------------------------- sampling

  def sample(self, params: PyTree, model_state: PyTree, audio: jax.Array, rng: jax.Array,
             x_T: jax.Array | None = None) -> jax.Array:
    """Raw motion [B, F, D] for audio features [B, F, A]: DDIM over `sampling` from x_T (drawn
    from rng when None), de-normalised."""
    b, f = audio.shape[:2]

    def model_fn(x, t, audio):
      return self.model.apply({"params": params}, x, t, audio)
    x0 = samplers.sample(model_fn, (b, f, self.motion_dim), self.schedule, self.timesteps, rng,
                         eta=float(self.config.sampling.eta), config=self.step_config,
                         cond={"audio": audio}, x_T=x_T)
    return self.denormalise(model_state, x0)

  # --------------------------------------------------------------------------- evaluation

  def _mouth_opening(self, alpha: jax.Array, motion: jax.Array) -> jax.Array:
    """[B, F] mouth opening of the model-frame landmarks of alpha [B, I], raw motion [B, F, D]."""
    points = morphable.shape(self.face_model, alpha[:, None],
                             motion[..., :self.expression_dim])             # [B, F, 68, 3]
    return morphable.mouth_opening(points)

  def eval_step(self, state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array):
    valid = batch["valid"].astype(jnp.float32)                              # [B]
    n = jnp.maximum(jnp.sum(valid), 1.0)
    raw = self.target(batch)
    x0 = self.normalise(state.model_state, raw)
    audio = self.audio.per_frame(batch)
    k_t, k_noise, k_sample = jax.random.split(rng, 3)
    t = schedules.random_timesteps(k_t, x0.shape[0], self.schedule.num_train_timesteps)
    x_t = param.q_sample(self.schedule, x0, t, jax.random.normal(k_noise, x0.shape))
    x0_hat = self.model.apply({"params": state.eval_params}, x_t, t, audio)
    sampled = self.sample(state.eval_params, state.model_state, audio, k_sample)
    sampled_error = param.prediction_loss(self.normalise(state.model_state, sampled), x0)
    metrics = {"x0_mse": jnp.sum(valid * param.prediction_loss(x0_hat, x0)) / n,
               "sampled_mse": jnp.sum(valid * sampled_error) / n,
               "eval_weight": jnp.sum(valid)}
    if self.motion != "pose":
      alpha = batch["alpha"].astype(jnp.float32)
      frames = jnp.broadcast_to(valid[:, None], raw.shape[:2]).reshape(-1)
      metrics["mouth_opening_corr"] = _pearson(
          self._mouth_opening(alpha, sampled).reshape(-1),
          self._mouth_opening(alpha, raw).reshape(-1), frames)
    return metrics

  def images(self, state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array):
    """The normalised motion over time, true above DDIM-sampled, per window: [N, (2 D + 1) s,
    F s, 3] with s = max(1, 64 // D) pixels per value (`images.signed_colours`: white 0, red
    positive, blue negative, saturated at 3)."""
    n = min(4, batch["expression"].shape[0])
    small = {k: v[:n] for k, v in batch.items()}
    true = self.normalise(state.model_state, self.target(small))           # [N, F, D]
    sampled = self.normalise(state.model_state, self.sample(
        state.eval_params, state.model_state, self.audio.per_frame(small), rng))
    colour = lambda x: images_lib.signed_colours(x).transpose(0, 2, 1, 3)  # [N, D, F, 3]
    gap = jnp.ones((n, 1, true.shape[1], 3))
    image = jnp.concatenate([colour(true), gap, colour(sampled)], axis=1)
    return {"motion_true_over_sampled":
            images_lib.enlarge(image, max(1, 64 // self.motion_dim))}

  # --------------------------------------------------------------------------------- data

  def train_iterator(self, batch_size: int, shard_index: int, shard_count: int):
    if self.sync_weight > 0:
      self.lip_expert()   # a missing or mismatched expert fails before any data is read
    return features.train_sequences(self.config, self.audio, self.face_model, batch_size,
                                    shard_index, shard_count)

  def eval_batches(self, batch_size: int, shard_index: int, shard_count: int):
    return features.eval_sequences(self.config, self.audio, self.face_model,
                                   ("alpha", "expression", "pose", "valid"), batch_size,
                                   shard_index, shard_count)

  # ---------------------------------------------------------------------------- benchmark

  def inference(self, state: TrainState) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """DDIM sampling (`sampling.steps`) of `batch_size` windows of F frames."""
    b, f = self.config.batch_size, self.config.data.window
    audio = jnp.zeros((b, f, self.audio.dim))
    fn = jax.jit(lambda params, model_state, x, rng: self.sample(params, model_state, x, rng))
    return fn, (state.eval_params, state.model_state, audio, jax.random.PRNGKey(0))
