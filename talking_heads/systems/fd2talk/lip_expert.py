"""FD2Talk's lip expert stage (`fd2talk_lip_expert`): the SyncNet-style pair of encoders on 3D
mouth points and audio (paper §3.4.1, Eq. 10; spec §2.4), trained before stage 1 and frozen
there (`FrozenLipExpert`, Eq. 11's L_sync).

Data: windows of L = `data.window` frames of the train clips (`pipelines.sequences`, fixed
length), carrying each frame's expression beta, the clip's identity alpha and the audio
features (`features`: the stacked mel, or cached wav2vec2 features). The mouth input
(`model.mouth`) comes from `models.fd2talk_lip_expert.mouth_points(alpha, beta)`, the morphable
model's 20 mouth landmarks in the model frame (no head pose), centred per frame:
  points        those points (the spec's recipe, §2.4);
  displacement  points(alpha, beta) - points(alpha, 0): the mouth's move from the identity's
                neutral mouth. The model is linear, so this is the expression's own part and
                the identity's static shape (which dominates the points: over the tiny corpus
                the points vary 1.08 in scaled units, within a window 0.13) no longer hides it.
                On the tiny corpus (2 identities, 150 steps of 32 pairs, held-out test clips,
                seeds 1 and 2) the points reach P_in - P_off = 0.04 and 0.005, the
                displacement 0.27 and 0.25. An UNSPECIFIED choice; tiny and demo use it.

Pairs (drawn in the train step from the step's key, so a resumed run draws the same ones) among
the S = L - W + 1 windows of W = 5 frames of a sample: with probability `data.sync_prob` one
uniform window gives both the mouth and the audio (y = 1), else a uniform pair of windows at
least `data.min_offset` frames apart gives the mouth and the audio (y = 0): Wav2Lip's SyncNet
recipe, with the shifted audio from the same clip window.

  loss = BCE(P_sync, y), P_sync = cos(v, a) (Eq. 10; `models.fd2talk_lip_expert.expert_loss`)

Evaluation on `data.eval_split` windows (held-out clips), every mouth window i against every
audio window j of the sample: `p_in_sync` (mean P over i = j), `p_off_sync` (over |i - j| >=
min_offset), `loss` (the balanced BCE: half in-sync, half off-sync), `offset_accuracy` (share of
mouth windows whose most probable audio window is their own).

Learning rate: keep it low (3e-4 here, Wav2Lip's 1e-4 at paper size): with ReLU embeddings an
in-sync pair whose supports are disjoint has P = 0, a clamped loss and no gradient, and larger
steps reach that state (`models.fd2talk_lip_expert`).

Config fields: model{sizes, mouth, point_scale, dtype} (widths from `systems.fd2talk.sizes`),
audio{frontend, weights, layer, dim}, data{root, identities, window, min_offset, sync_prob,
eval_split, eval_seed, num_workers}, optimizer{...}, plus the trainer fields.

Dimensions: B batch, L window frames, W = 5 expert frames, S = L - W + 1 windows, N = 20 mouth
points, A audio feature width, E embedding width, I identity and X expression parameters.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from talking_heads.face import morphable
from talking_heads.losses.sync import cosine_bce
from talking_heads.models import fd2talk_lip_expert as lip
from talking_heads.systems import images as images_lib
from talking_heads.systems.fd2talk import features
from talking_heads.systems.fd2talk import sizes as sizes_lib
from talking_heads.training import restore
from talking_heads.training.optimizers import build_optimizer
from talking_heads.training.stage import LossStage
from talking_heads.training.state import TrainState

STAGE = "fd2talk_lip_expert"
MOUTH_INPUTS = ("displacement", "points")

PyTree = Any


def build_model(config: ml_collections.ConfigDict) -> lip.LipExpert:
  m = config.model
  return lip.LipExpert(**sizes_lib.sizes(m.sizes).lip_expert, point_scale=m.point_scale,
                       dtype=jnp.dtype(m.get("dtype", "float32")))


def window_at(x: jax.Array, starts: jax.Array, size: int) -> jax.Array:
  """[B, L, ...] and starts [B] -> [B, size, ...]: frames starts[b] .. starts[b] + size - 1."""
  return jax.vmap(lambda seq, s: jax.lax.dynamic_slice_in_dim(seq, s, size, axis=0))(x, starts)


def draw_pairs(rng: jax.Array, batch_size: int, num_windows: int, min_offset: int,
               sync_prob: float) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(mouth start [B], audio start [B], label y [B] float32) over S window starts: y = 1 with
  probability `sync_prob` and equal starts, else a uniform pair at least `min_offset` apart."""
  k_label, k_sync, k_off = jax.random.split(rng, 3)
  y = jax.random.bernoulli(k_label, sync_prob, (batch_size,))
  same = jax.random.randint(k_sync, (batch_size,), 0, num_windows)
  i, j = np.meshgrid(np.arange(num_windows), np.arange(num_windows), indexing="ij")
  logits = jnp.where(jnp.asarray(np.abs(i - j) >= min_offset).reshape(-1), 0.0, -jnp.inf)
  pair = jax.random.categorical(k_off, logits, shape=(batch_size,))         # [B] in S * S
  mouth = jnp.where(y, same, pair // num_windows)
  audio = jnp.where(y, same, pair % num_windows)
  return mouth.astype(jnp.int32), audio.astype(jnp.int32), y.astype(jnp.float32)


def mouth_input(face_model: morphable.MorphableModel, alpha: jax.Array, expression: jax.Array,
                kind: str) -> jax.Array:
  """alpha [B, I], expression [B, L, X] -> the expert's mouth input [B, L, N, 3] (`model.mouth`:
  "points" or "displacement", module docstring); differentiable in the expression."""
  if kind not in MOUTH_INPUTS:
    raise ValueError(f"model.mouth must be one of {MOUTH_INPUTS}, got {kind!r}")
  alpha = alpha.astype(jnp.float32)[:, None]                                # [B, 1, I]
  expression = expression.astype(jnp.float32)
  points = lip.mouth_points(face_model, alpha, expression)                  # [B, L, N, 3]
  if kind == "points":
    return points
  return points - lip.mouth_points(face_model, alpha, jnp.zeros_like(expression))


class LipExpertStage(LossStage):
  """Trains the lip expert (module docstring for batch, pairs, loss and config).

  Batch keys (`pipelines.sequences`): mel float32 [B, 4 L, 80] (or audio_features [B, L, A]),
  alpha [B, I], expression [B, L, X]; eval batches also valid bool [B].
  """

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    d = config.data
    self.face_model = morphable.default_model()
    self.audio = features.AudioFeatures.from_config(config.audio)
    self.model = build_model(config)
    if config.model.mouth not in MOUTH_INPUTS:
      raise ValueError(f"model.mouth must be one of {MOUTH_INPUTS}, got {config.model.mouth!r}")
    w = self.model.window
    if d.window < w:
      raise ValueError(f"data.window {d.window} is shorter than the expert's {w}-frame window")
    self.num_windows = d.window - w + 1
    if not 1 <= d.min_offset <= self.num_windows - 1:
      raise ValueError(f"data.min_offset must be in [1, {self.num_windows - 1}] (the {d.window}-"
                       f"frame windows hold {self.num_windows} starts of {w} frames), got "
                       f"{d.min_offset}")
    if not 0.0 <= d.sync_prob <= 1.0:
      raise ValueError(f"data.sync_prob must be in [0, 1], got {d.sync_prob}")
    self.tx = build_optimizer(config.optimizer, config.total_steps)

  # -------------------------------------------------------------------------------- model

  def init_state(self, rng: jax.Array) -> TrainState:
    w = self.model.window
    params = self.model.init(rng, jnp.zeros((1, w, len(morphable.MOUTH_INDICES), 3)),
                             jnp.zeros((1, w, self.audio.dim)))["params"]
    return TrainState.create(params, self.tx, rng=rng, ema_decay=self.config.get("ema_decay", 0.0))

  def mouth(self, batch: Mapping[str, jax.Array]) -> jax.Array:
    """The mouth input [B, L, N, 3] of a sequence batch (alpha [B, I], expression [B, L, X])."""
    return mouth_input(self.face_model, batch["alpha"], batch["expression"],
                       self.config.model.mouth)

  def variables(self, state: TrainState) -> dict[str, Any]:
    """The expert's variables to freeze and evaluate with."""
    return {"params": state.eval_params}

  def loss_fn(self, params: PyTree, model_state: PyTree, batch: Mapping[str, jax.Array],
              rng: jax.Array):
    del model_state
    d = self.config.data
    mouth = self.mouth(batch)                                               # [B, L, N, 3]
    audio = self.audio.per_frame(batch)                                     # [B, L, A]
    m_start, a_start, y = draw_pairs(rng, mouth.shape[0], self.num_windows, d.min_offset,
                                     d.sync_prob)
    w = self.model.window
    v, a = self.model.apply({"params": params}, window_at(mouth, m_start, w),
                            window_at(audio, a_start, w))                   # [B, E] each
    p = lip.sync_probability(v, a)                                          # [B]
    in_sync = jnp.sum(y)
    metrics = {"p_in_sync": jnp.sum(p * y) / jnp.maximum(in_sync, 1.0),
               "p_off_sync": jnp.sum(p * (1 - y)) / jnp.maximum(y.size - in_sync, 1.0)}
    return lip.expert_loss(v, a, y), (metrics, None)

  # --------------------------------------------------------------------------- evaluation

  def eval_step(self, state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array):
    del rng
    s, gap = self.num_windows, self.config.data.min_offset
    valid = batch["valid"].astype(bool)                                     # [B]
    v, a = self.model.apply({"params": state.eval_params}, self.mouth(batch),
                            self.audio.per_frame(batch), method=lip.LipExpert.windows)
    b, e = v.shape[0], v.shape[-1]
    p = lip.sync_probability(v[:, :, None], a[:, None, :])                  # [B, S, S]
    i, j = np.meshgrid(np.arange(s), np.arange(s), indexing="ij")
    off_i, off_j = i[np.abs(i - j) >= gap], j[np.abs(i - j) >= gap]        # [K] pairs each
    same = np.arange(s)

    def bce(rows: np.ndarray, cols: np.ndarray, label: float) -> jax.Array:
      return cosine_bce(a[:, cols].reshape(-1, e), v[:, rows].reshape(-1, e),
                        jnp.full(b * rows.size, label), mask=jnp.repeat(valid, rows.size))

    weight = valid.astype(jnp.float32)[:, None]
    n = jnp.maximum(jnp.sum(valid), 1)
    hits = (jnp.argmax(p, axis=-1) == jnp.arange(s)[None]).astype(jnp.float32)  # [B, S]
    return {"loss": 0.5 * (bce(same, same, 1.0) + bce(off_i, off_j, 0.0)),
            "p_in_sync": jnp.sum(weight * p[:, same, same]) / (n * s),
            "p_off_sync": jnp.sum(weight * p[:, off_i, off_j]) / (n * off_i.size),
            "offset_accuracy": jnp.sum(weight * hits) / (n * s),
            "eval_weight": jnp.sum(valid)}

  def images(self, state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array):
    """P_sync of every mouth window (rows) against every audio window (columns) of a sample,
    grey levels (white 1): [N, 8 S, 8 S, 3]; an expert in sync lights the diagonal."""
    del rng
    n = min(4, batch["expression"].shape[0])
    small = {k: v[:n] for k, v in batch.items()}
    v, a = self.model.apply({"params": state.eval_params}, self.mouth(small),
                            self.audio.per_frame(small), method=lip.LipExpert.windows)
    p = lip.sync_probability(v[:, :, None], a[:, None, :])                  # [N, S, S]
    return {"sync_probability_mouth_by_audio":
            images_lib.enlarge(jnp.repeat(p[..., None], 3, axis=-1), 8)}

  # --------------------------------------------------------------------------------- data

  def train_iterator(self, batch_size: int, shard_index: int, shard_count: int):
    return features.train_sequences(self.config, self.audio, self.face_model, batch_size,
                                    shard_index, shard_count)

  def eval_batches(self, batch_size: int, shard_index: int, shard_count: int):
    return features.eval_sequences(self.config, self.audio, self.face_model,
                                   ("alpha", "expression", "valid"), batch_size, shard_index,
                                   shard_count)

  # ---------------------------------------------------------------------------- benchmark

  def inference(self, state: TrainState) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """P_sync of every 5-frame window of `batch_size` sequences of `data.window` frames."""
    b, t = self.config.batch_size, self.config.data.window
    mouth = jnp.zeros((b, t, len(morphable.MOUTH_INDICES), 3))
    audio = jnp.zeros((b, t, self.audio.dim))

    def probabilities(params, m, x):
      v, a = self.model.apply({"params": params}, m, x, method=lip.LipExpert.windows)
      return lip.sync_probability(v, a)
    return jax.jit(probabilities), (state.eval_params, mouth, audio)


# ---------------------------------------------------------------------------------- frozen


@dataclasses.dataclass(frozen=True)
class FrozenLipExpert:
  """A trained expert held fixed: stage 1's L_sync (Eq. 11).

  Attributes:
    model: the expert's network.
    variables: its variables (host arrays; closed over, so no gradient or update reaches them).
    audio: the audio features it was trained on (the motion stage must feed the same).
    mouth: its mouth input, "points" or "displacement".
    source: the workdir and step it came from.
  """
  model: lip.LipExpert
  variables: PyTree
  audio: features.AudioFeatures
  mouth: str
  source: str

  def sync_loss(self, face_model: morphable.MorphableModel, alpha: jax.Array,
                expression: jax.Array, audio: jax.Array) -> jax.Array:
    """Mean -log P_sync over every W-frame window of alpha [B, I], expression [B, F, X] and
    audio [B, F, A] (Eq. 11); differentiable in the expression."""
    mouth = mouth_input(face_model, alpha, expression, self.mouth)          # [B, F, N, 3]
    v, a = self.model.apply(self.variables, mouth, audio, method=lip.LipExpert.windows)
    return lip.sync_loss(v, a)


def restore_frozen(workdir: str, step: int | None = None, *,
                   name: str = "lip_expert.workdir") -> FrozenLipExpert:
  """The expert of an `fd2talk_lip_expert` workdir (`name`: where the path was set, for errors).

  Raises:
    ValueError: `workdir` is empty, or it trained another stage.
    FileNotFoundError: it has no config or checkpoint, or was never trained (step 0).
  """
  hint = ("python -m experiments.train --config=experiments/configs/fd2talk/lip_expert.py:demo "
          "--workdir=...")
  if not workdir:
    raise ValueError(f"{name} is empty: L_sync needs a trained {STAGE!r} workdir (train one "
                     f"with `{hint}`), or set loss.sync_weight=0 (the paper's 'w/o L_sync')")
  try:
    stage, state, restored_step = restore.restore_stage(
        workdir, step, stage=LipExpertStage(restore.load_config(workdir, STAGE)))
  except FileNotFoundError as e:
    raise FileNotFoundError(f"{name}={workdir!r} is not a trained {STAGE!r} workdir ({e}) "
                            f"Train one with `{hint}`.") from e
  except ValueError as e:
    raise ValueError(f"{name}: {e}") from e
  return FrozenLipExpert(stage.model, jax.device_get(stage.variables(state)), stage.audio,
                         stage.config.model.mouth, f"{workdir} step {restored_step}")
