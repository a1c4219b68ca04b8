"""RADIO's sync discriminator stage (`radio_sync`): BCE on in-sync / off-sync windows of tight
grayscale crops (paper §3.3, Eq. 4-5; spec §2.6), and the trained network as a frozen loss and an
LSE scorer.

Batch (`pipelines.sync` with `clips.RADIO_AUDIO`; B batch, N = 5 frames, S face size, M = 80 mel
bins, F = 20 mel frames = 0.2 s at 100 frames/s):
  frames  uint8   [B, N, S, S, 3]  aligned faces w .. w+4 (RGB)
  mel     float32 [B, M, F]        RADIO's log-mel window of the audio's frame f
  label   float32 [B]              1 when w == f (in sync), 0 otherwise (Wav2Lip's sampling: 1/2)
  valid   bool    [B]              eval batches only: False for padding entries
The faces go through `models.radio_sync.sync_window` (fixed tight box, resize to the configured
crop size, luma): the same function makes the generator's sync-loss input (`radio` stage).

Loss: mean BCE(p, label), p = the cosine made a probability (`models.radio_sync`), clamped to
[1e-7, 1 - 1e-7] (spec §8 item 5). BatchNorm trains on batch statistics; evaluation and every
frozen use take the running ones. Evaluation on a held-out split (`data.eval_split`, never
trained on): BCE and accuracy (p > 0.5 == label), as the colour expert's `syncnet` stage
reports them; offset recovery (planted audio shifts) through the LSE evaluator with
`lse_expert(workdir)` and `systems.experts.sync_evaluation`, as the experts' part reports the
colour expert's.

Config fields: model{sizes, probability, dtype}, data{root, image_size, min_offset, eval_split,
eval_stride, eval_seed, num_workers}, optimizer{...}, plus the trainer fields.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from talking_heads.audio import mel as mel_lib
from talking_heads.audio import windows as windows_lib
from talking_heads.metrics import lse as lse_lib
from talking_heads.metrics import reduce
from talking_heads.metrics import sync_experts
from talking_heads.models import radio_sync
from talking_heads.pipelines import base as pipeline_base
from talking_heads.pipelines import clips as clips_pipeline
from talking_heads.pipelines import sync as sync_pipeline
from talking_heads.systems import video_inference
from talking_heads.systems.images import pixels_to_unit
from talking_heads.systems.radio import sizes as sizes_lib
from talking_heads.training.optimizers import build_optimizer
from talking_heads.training.stage import LossStage
from talking_heads.training.state import TrainState

STAGE = "radio_sync"
WINDOW = 5
P_CLAMP = 1e-7
EVAL_KEYS = ("frames", "mel", "label", "valid")


def probability_bce(p: jax.Array, label: jax.Array) -> jax.Array:
  """[B] probabilities, [B] labels -> [B] BCE with p clamped to [1e-7, 1 - 1e-7] (float32)."""
  p = jnp.clip(p.astype(jnp.float32), P_CLAMP, 1.0 - P_CLAMP)
  label = label.astype(jnp.float32)
  return -(label * jnp.log(p) + (1.0 - label) * jnp.log1p(-p))


def rbg_init_key(rng: jax.Array) -> jax.Array:
  """An unsafe_rbg key drawn from `rng`, for parameter initialisation (both RADIO stages): flax
  folds a key per parameter and XLA:CPU compiles each threefry hash separately (minutes for the
  generator's few hundred parameters), where rbg's bit generator compiles in seconds. Same rng,
  same parameters on a given backend (rbg's streams may differ across backends)."""
  return jax.random.wrap_key_data(jax.random.bits(rng, (4,), jnp.uint32), impl="unsafe_rbg")


def build_discriminator(model: ml_collections.ConfigDict) -> radio_sync.SyncDiscriminator:
  """The sync discriminator of a stage config's `model` (sizes by variant name)."""
  return radio_sync.SyncDiscriminator(
      **sizes_lib.sizes(model.sizes).sync, probability=model.get("probability", "relu"),
      dtype=jnp.dtype(model.get("dtype", "float32")))


class RadioSyncStage(LossStage):
  """Trains `models.radio_sync.SyncDiscriminator` (module docstring for the batch keys)."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self.model = build_discriminator(config.model)
    self.crop_size = sizes_lib.sizes(config.model.sizes).sync_crop_size
    radio_sync.crop_rows_cols(config.data.image_size)     # a bad face size fails here
    self.tx = build_optimizer(config.optimizer, config.total_steps)

  def window(self, frames: jax.Array) -> jax.Array:
    """uint8 faces [B, N, S, S, 3] -> grayscale crops [B, H, H, N]."""
    return radio_sync.sync_window(pixels_to_unit(frames), self.crop_size)

  def init_state(self, rng: jax.Array) -> TrainState:
    s = self.config.data.image_size
    faces = self.window(jnp.zeros((1, WINDOW, s, s, 3), jnp.uint8))
    variables = self.model.init(rbg_init_key(rng), faces, jnp.zeros((1, 80, 20)), train=True)
    return TrainState.create(variables["params"], self.tx, rng=rng,
                             model_state={"batch_stats": variables["batch_stats"]},
                             ema_decay=self.config.get("ema_decay", 0.0))

  def _metrics(self, p: jax.Array, label: jax.Array,
               weights: jax.Array | None = None) -> dict[str, jax.Array]:
    w = jnp.ones_like(p) if weights is None else weights.astype(jnp.float32)
    correct = ((p > 0.5) == (label > 0.5)).astype(jnp.float32)
    return {"loss": reduce.weighted_mean(probability_bce(p, label), w),
            "accuracy": reduce.weighted_mean(correct, w),
            "p_in_sync": reduce.weighted_mean(p, w * label),
            "p_off_sync": reduce.weighted_mean(p, w * (1.0 - label))}

  def loss_fn(self, params: Any, model_state: Any, batch: dict[str, jax.Array], rng: jax.Array):
    del rng  # sampling randomness lives in the data pipeline
    p, updates = self.model.apply({"params": params, **model_state}, self.window(batch["frames"]),
                                  batch["mel"], train=True, mutable=["batch_stats"])
    metrics = self._metrics(p, batch["label"])
    return metrics["loss"], (metrics, {"batch_stats": updates["batch_stats"]})

  def variables(self, state: TrainState) -> dict[str, Any]:
    return {"params": state.eval_params, **state.model_state}

  def eval_step(self, state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
    del rng
    p = self.model.apply(self.variables(state), self.window(batch["frames"]), batch["mel"])
    valid = batch["valid"]
    return {**self._metrics(p, batch["label"], valid),
            "eval_weight": jnp.sum(valid.astype(jnp.float32))}

  def _pipeline_args(self, batch_size: int, shard_index: int, shard_count: int) -> dict[str, Any]:
    d = self.config.data
    return dict(batch_size=batch_size, shard_index=shard_index, shard_count=shard_count,
                num_frames=WINDOW, audio=clips_pipeline.RADIO_AUDIO, min_offset=d.min_offset,
                image_size=d.image_size)

  def train_iterator(self, batch_size: int, shard_index: int, shard_count: int):
    d = self.config.data
    return sync_pipeline.make_sync_iterator(
        d.root, seed=self.config.seed, num_workers=d.num_workers, split="train",
        **self._pipeline_args(batch_size, shard_index, shard_count))

  def eval_batches(self, batch_size: int, shard_index: int, shard_count: int):
    d = self.config.data
    it = sync_pipeline.make_sync_eval_iterator(
        d.root, seed=d.eval_seed, num_workers=0, split=d.eval_split, stride=d.eval_stride,
        **self._pipeline_args(batch_size, shard_index, shard_count))
    yield from ({k: b[k] for k in EVAL_KEYS} for b in it)

  def images(self, state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
    del state, rng
    crops = self.window(batch["frames"][:4])                          # [n, H, H, N]
    n, h, _, t = crops.shape
    strip = crops.transpose(0, 1, 3, 2).reshape(n, h, t * h)          # the N crops side by side
    return {"grayscale_windows": jnp.repeat(strip[..., None], 3, axis=-1)}

  def inference(self, state: TrainState):
    s, b = self.config.data.image_size, self.config.batch_size
    frames, mel = jnp.zeros((b, WINDOW, s, s, 3), jnp.uint8), jnp.zeros((b, 80, 20))
    return (lambda variables, f, m: self.model.apply(variables, self.window(f), m)), (
        self.variables(state), frames, mel)


# ------------------------------------------------------------------------------ frozen use


@dataclasses.dataclass(frozen=True)
class FrozenSync:
  """A trained sync discriminator: its module, host variables ({"params", "batch_stats"}), the
  face size S and crop size H it trained on, and where it came from."""
  model: radio_sync.SyncDiscriminator
  variables: dict[str, Any]
  image_size: int
  crop_size: int
  source: str

  def probability(self, variables: dict[str, Any], frames: jax.Array,
                  mel: jax.Array) -> jax.Array:
    """Faces [B, N, S', S', 3] in [0, 1] (any S'), mel [B, M, F] -> p [B] with running
    statistics; differentiable in the faces."""
    return self.model.apply(variables, radio_sync.sync_window(frames, self.crop_size), mel)


def load_frozen_sync(workdir: str, step: int | None = None,
                     name: str = "sync_discriminator.workdir") -> FrozenSync:
  """The sync discriminator of a trained `radio_sync` workdir (`name` says where it was set).

  Raises:
    ValueError: no workdir given, or it trained another stage.
    FileNotFoundError: not a trained workdir (no config or checkpoint, or only step 0).
  """
  # Imported here: restoring pulls in the training stack, which scoring files does not need.
  from talking_heads.training import restore  # pylint: disable=g-import-not-at-top
  hint = (f"train one with `python -m experiments.train "
          f"--config=experiments/configs/radio/radio_sync.py:demo --workdir=...`")
  if not workdir:
    raise ValueError(f"RADIO needs its trained sync discriminator and {name} is empty: {hint}; "
                     "it never trains against random sync weights")
  try:
    stage, state, restored = restore.restore_stage(workdir, step, expected_stage=STAGE)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"{name}={workdir!r} is not a trained {STAGE!r} workdir ({e}); "
                            f"{hint}") from e
  return FrozenSync(stage.model, jax.device_get(stage.variables(state)),
                    int(stage.config.data.image_size), stage.crop_size,
                    f"{workdir} step {restored}")


class RadioSyncExpert:
  """A trained sync discriminator as an LSE scorer (`metrics.sync_experts.SyncExpert`): row v of
  `embed_video` embeds faces v .. v+4 (resized to its S, tight grayscale crops), row v of
  `embed_audio` RADIO's mel window from 4 v. The embeddings pass the probability's rule (ReLU
  for "relu") and are L2-normalised, so the LSE distance 2 - 2 cos ranks offsets as p does.
  Not comparable with papers."""

  comparable_with_papers = False

  def __init__(self, frozen: FrozenSync, batch_size: int = 64):
    self.crop_size = frozen.image_size
    self.source = frozen.source
    self.batch_size = batch_size
    self.name = f"RADIO grayscale sync discriminator trained here ({frozen.source})"
    model, variables = frozen.model, jax.device_put(frozen.variables)
    rule = model.probability

    def normalised(e):
      e = jax.nn.relu(e) if rule == "relu" else e
      return e / jnp.maximum(jnp.linalg.norm(e, axis=-1, keepdims=True), radio_sync.NORM_FLOOR)

    def faces(windows):  # uint8 [B, 5, S, S, 3]
      crops = radio_sync.sync_window(pixels_to_unit(windows), frozen.crop_size)
      return normalised(model.apply(variables, crops,
                                    method=radio_sync.SyncDiscriminator.embed_visual))

    def mels(x):  # [B, 80, 20]
      return normalised(model.apply(variables, x,
                                    method=radio_sync.SyncDiscriminator.embed_audio))

    self._faces, self._mels = jax.jit(faces), jax.jit(mels)
    self._rule = rule

  def describe(self) -> dict[str, Any]:
    return {"name": self.name, "source": self.source, "comparable_with_papers": False}

  def embed_video(self, frames: np.ndarray, num_windows: int | None = None, *,
                  clip_id: str = "clip") -> np.ndarray:
    frames = np.asarray(frames)
    n = num_windows if num_windows is not None else (
        sync_experts.video_windows_available(frames.shape[0]))
    if n < 1 or n + WINDOW - 1 > frames.shape[0]:
      raise ValueError(f"{clip_id}: {n} windows of 5 frames do not fit {frames.shape[0]} frames")
    frames = pipeline_base.resize_frames(frames[:n + WINDOW - 1], self.crop_size)
    return video_inference.batched(
        self._faces, lambda index: (sync_experts.frame_windows(frames, index),),
        n, self.batch_size)

  def embed_audio(self, audio: np.ndarray, num_windows: int | None = None, *,
                  clip_id: str = "clip") -> np.ndarray:
    audio = np.asarray(audio, np.float32)
    n = num_windows if num_windows is not None else (
        sync_experts.audio_windows_available(audio.shape[0]))
    mel = mel_lib.mel_spectrogram_time_major(audio, mel_lib.RADIO_MEL, clip_id=clip_id)  # [F, 80]
    windows = windows_lib.slice_windows(mel, np.arange(n), windows_lib.RADIO_WINDOWS,
                                        clip_id=clip_id)                          # [N, 20, 80]
    windows = np.ascontiguousarray(windows.transpose(0, 2, 1))                   # [N, 80, 20]
    return video_inference.batched(self._mels, lambda index: (windows[index],), n,
                                   self.batch_size)


  def in_sync_probability(self, frames: np.ndarray, audio: np.ndarray, *,
                          clip_id: str = "clip") -> float:
    """The discriminator's sync score of a video (Table 2's "Sync"): the mean p over its in-sync
    windows, faces v .. v+4 of frames [T, H, W, 3] uint8 with the mel window of frame v of the
    16 kHz audio [N], for every start v syncnet_python scores (`lse.num_windows`)."""
    n = lse_lib.num_windows(np.shape(frames)[0], np.shape(audio)[0], clip_id=clip_id)
    cos = np.sum(self.embed_video(frames, n, clip_id=clip_id)
                 * self.embed_audio(audio, n, clip_id=clip_id), axis=1)   # the embeddings' cosine
    return float(np.mean(cos if self._rule == "relu" else (cos + 1.0) / 2.0))


def lse_expert(workdir: str, step: int | None = None, **kwargs: Any) -> RadioSyncExpert:
  """The LSE scorer with the sync discriminator of a `radio_sync` workdir (for
  `systems.experts.sync_evaluation.run`: planted-shift recovery, in-sync vs foreign audio)."""
  return RadioSyncExpert(load_frozen_sync(workdir, step, name="workdir"), **kwargs)
