"""A face-parameter regressor (landmarks + head pose) trained on the corpus's ground truth.

DAE-Talker's pose control (Table 4) is "the mean square distance between the specified head
poses and the poses extracted from the generated video", and its Table 1 scores mouth
landmarks (LMD). The paper extracts poses with the `headpose` package (a 3D model fitted to dlib
landmarks); no pretrained detector can be downloaded here, so this stage trains `FaceRegressor`
on the dataset's per-frame ground truth (iBUG-68 landmarks, yaw/pitch/roll) and
`load_face_regressor` serves it to the evaluations.

Loss (per step), landmarks in normalised coordinates (`models.face_regressor`), poses in units
of `loss.pose_scale` radians per axis so that both terms are of order one on small head motion:
  landmark = mean over B, 68 points, (x, y) of (l_hat - l)^2
  pose     = mean over B, 3 axes of ((p_hat - p) / pose_scale)^2
  total    = landmark + loss.pose_weight * pose
With `augment.enabled` the input is a degraded copy of the frame (`pipelines.frames`: blur,
down-up scaling, noise; nothing that moves the face, and no flips, which would negate yaw and
roll), which prepares the regressor for blurry generated frames.

Evaluation on every `data.eval_stride`-th frame of `data.eval_split` (identities
`data.eval_identities`, default those trained on), errors at `data.image_size` pixels:
  landmark_px                mean Euclidean error over the 68 points
  mouth_px                   the same over the 20 mouth points 48-67
  pose_mse_deg2_<axis>       squared pose error in degrees^2 (the loop averages over frames, so
                             its square root is the RMSE), and pose_mae_deg_<axis>
`evaluate_split` gives exact RMSEs for a predictor, with the constant-pose baseline.

Config fields: model{channels, blocks, hidden, dtype}, loss{pose_weight, pose_scale},
augment{enabled, blur_prob, blur_sigma, rescale_prob, rescale_factor, noise_prob, noise_std},
data{root, identities, eval_identities, image_size, eval_split, eval_stride, eval_seed,
num_workers}, optimizer{...}, plus the trainer fields.

Dimensions: B batch, N frames, S = data.image_size, H = W input frame size, P = 68 points.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from talking_heads.metrics import landmarks as landmark_metrics
from talking_heads.metrics import reduce
from talking_heads.models import face_regressor as model_lib
from talking_heads.pipelines import base
from talking_heads.pipelines import frames as frames_pipeline
from talking_heads.io.dataset import parse_identities
from talking_heads.systems.images import to_model_range
from talking_heads.training import restore
from talking_heads.training.optimizers import build_optimizer
from talking_heads.training.stage import LossStage
from talking_heads.training.state import TrainState

POSE_AXES = model_lib.POSE_AXES
_PREDICTED_COLOUR = (1.0, 0.0, 0.0)
_TRUE_COLOUR = (0.0, 1.0, 0.0)


def _pose_scale(config: ml_collections.ConfigDict) -> tuple[float, ...]:
  scale = tuple(float(s) for s in config.loss.pose_scale)
  if len(scale) != len(POSE_AXES) or not all(s > 0 for s in scale):
    raise ValueError(f"loss.pose_scale must be {len(POSE_AXES)} positive radians {POSE_AXES}, "
                     f"got {tuple(config.loss.pose_scale)}")
  return scale


def build_model(config: ml_collections.ConfigDict) -> model_lib.FaceRegressor:
  """The stage's `FaceRegressor` from `config.model` and `config.loss.pose_scale`."""
  m = config.model
  return model_lib.FaceRegressor(channels=tuple(m.channels), blocks=m.blocks, hidden=m.hidden,
                                 pose_scale=_pose_scale(config),
                                 dtype=jnp.dtype(m.get("dtype", "float32")))


def _mouth_and_all_errors(pred_px: jax.Array, true_px: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-example mean Euclidean error [B] over all points and over the mouth."""
  dist = jnp.linalg.norm(pred_px - true_px, axis=-1)             # [B, P]
  return jnp.mean(dist, axis=-1), jnp.mean(dist[:, landmark_metrics.MOUTH], axis=-1)


class FaceRegressorStage(LossStage):
  """Trains `FaceRegressor` on frames with landmarks and poses (module docstring).

  Batch keys (from `pipelines.frames` with annotations): image uint8 [B, S, S, 3], degraded
  uint8 [B, S, S, 3], landmarks float32 [B, P, 2] pixels, pose float32 [B, 6] (yaw, pitch, roll
  radians first); eval batches also carry valid [B].
  """

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self.pose_scale = _pose_scale(config)
    if config.loss.pose_weight < 0:
      raise ValueError(f"loss.pose_weight must be >= 0, got {config.loss.pose_weight}")
    self.model = build_model(config)
    self.tx = build_optimizer(config.optimizer, config.total_steps)

  def init_state(self, rng: jax.Array) -> TrainState:
    size = self.config.data.image_size
    params = self.model.init(rng, jnp.zeros((1, size, size, 3), jnp.float32))["params"]
    return TrainState.create(params, self.tx, rng=rng, ema_decay=self.config.get("ema_decay", 0.0))

  def predict(self, params: Any, images: jax.Array) -> dict[str, jax.Array]:
    """uint8 [B, S, S, 3] -> {"landmarks": [B, P, 2] pixels of S, "pose": [B, 3] radians}."""
    out = self.model.apply({"params": params}, to_model_range(images))
    return {"landmarks": model_lib.normalised_to_pixels(out["landmarks"], images.shape[1]),
            "pose": out["pose"]}

  def _losses(self, params: Any, images: jax.Array, landmarks: jax.Array, pose: jax.Array
              ) -> tuple[jax.Array, dict[str, jax.Array]]:
    size = images.shape[1]
    out = self.model.apply({"params": params}, to_model_range(images))
    target = model_lib.pixels_to_normalised(landmarks, size)     # [B, P, 2]
    landmark = jnp.mean(jnp.square(out["landmarks"] - target))
    scale = jnp.asarray(self.pose_scale, jnp.float32)
    pose_error = out["pose"] - pose[:, :len(POSE_AXES)]          # [B, 3] radians
    pose_loss = jnp.mean(jnp.square(pose_error / scale))
    total = landmark + self.config.loss.pose_weight * pose_loss
    errors, _ = _mouth_and_all_errors(model_lib.normalised_to_pixels(out["landmarks"], size),
                                      landmarks)
    return total, {"loss": total, "landmark_loss": landmark, "pose_loss": pose_loss,
                   "landmark_px": jnp.mean(errors),
                   "pose_rmse_deg": jnp.degrees(jnp.sqrt(jnp.mean(jnp.square(pose_error))))}

  def loss_fn(self, params: Any, model_state: Any, batch: dict[str, jax.Array], rng: jax.Array):
    del model_state, rng  # sampling and augmentation randomness live in the data pipeline
    images = batch["degraded" if self.config.augment.enabled else "image"]
    loss, metrics = self._losses(params, images, batch["landmarks"], batch["pose"])
    return loss, (metrics, None)

  def eval_step(self, state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
    del rng
    out = self.predict(state.eval_params, batch["image"])
    w = reduce.example_weights(batch, batch["image"].shape[0])
    mean = lambda per_example: reduce.weighted_mean(per_example, w)
    errors, mouth = _mouth_and_all_errors(out["landmarks"], batch["landmarks"])
    pose_error = jnp.degrees(out["pose"] - batch["pose"][:, :len(POSE_AXES)])   # [B, 3]
    metrics = {"landmark_px": mean(errors), "mouth_px": mean(mouth), "eval_weight": jnp.sum(w)}
    for k, axis in enumerate(POSE_AXES):
      metrics[f"pose_mse_deg2_{axis}"] = mean(jnp.square(pose_error[:, k]))
      metrics[f"pose_mae_deg_{axis}"] = mean(jnp.abs(pose_error[:, k]))
    return metrics

  # -------------------------------------------------------------------------------------- data

  def _identities(self, eval_set: bool) -> tuple[str, ...] | None:
    names = parse_identities(self.config.data.identities)
    if eval_set:
      names = parse_identities(self.config.data.get("eval_identities", "")) or names
    return names or None

  def _degradations(self) -> frames_pipeline.Degradations | None:
    a = self.config.augment
    if not a.enabled:
      return None
    return frames_pipeline.Degradations(
        blur_prob=a.blur_prob, blur_sigma=tuple(a.blur_sigma), rescale_prob=a.rescale_prob,
        rescale_factor=tuple(a.rescale_factor), noise_prob=a.noise_prob,
        noise_std=tuple(a.noise_std), region_prob=0.0)

  def train_iterator(self, batch_size: int, shard_index: int, shard_count: int):
    d = self.config.data
    return frames_pipeline.make_frames_iterator(
        d.root, batch_size=batch_size, shard_index=shard_index, shard_count=shard_count,
        seed=self.config.seed, num_workers=d.num_workers, split="train", image_size=d.image_size,
        degradations=self._degradations(), identities=self._identities(False), annotations=True)

  def eval_batches(self, batch_size: int, shard_index: int, shard_count: int):
    d = self.config.data
    it = frames_pipeline.make_frames_eval_iterator(
        d.root, batch_size=batch_size, shard_index=shard_index, shard_count=shard_count,
        seed=d.eval_seed, num_workers=0, split=d.eval_split, stride=d.eval_stride,
        image_size=d.image_size, identities=self._identities(True), annotations=True)
    keys = ("image", "landmarks", "pose", "valid")
    yield from ({k: b[k] for k in keys} for b in it)

  # --------------------------------------------------------------------------- images, bench

  def images(self, state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
    """Frames with the true (green) and predicted (red) landmarks, [N, S, S, 3]."""
    del rng
    images = batch["image"][:8]
    out = self.predict(state.eval_params, images)
    canvas = images.astype(jnp.float32) / 255.0
    size = images.shape[1]
    n = jnp.arange(images.shape[0])[:, None]
    for points, colour in ((batch["landmarks"][:8], _TRUE_COLOUR),
                           (out["landmarks"], _PREDICTED_COLOUR)):
      xy = jnp.clip(jnp.round(points), 0, size - 1).astype(jnp.int32)      # [N, P, 2]
      canvas = canvas.at[n, xy[..., 1], xy[..., 0]].set(jnp.asarray(colour))
    return {"landmarks": canvas}

  def inference(self, state: TrainState) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    size = self.config.data.image_size
    images = jnp.zeros((self.config.batch_size, size, size, 3), jnp.uint8)
    return jax.jit(self.predict), (state.eval_params, images)


class FaceRegressorPredictor:
  """A trained regressor for frames of any square size (resized to its `image_size`).

  Attributes:
    image_size: S, the size the network sees.
    batch_size: frames per jitted call (the last batch is padded, so one compilation serves all).
    source: where the weights came from (workdir and step).
  """

  def __init__(self, stage: FaceRegressorStage, params: Any, batch_size: int = 64,
               source: str = ""):
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    self.image_size = int(stage.config.data.image_size)
    self.batch_size = batch_size
    self.source = source
    self._params = jax.device_put(params)
    self._predict = jax.jit(stage.predict)

  def predict(self, frames: np.ndarray) -> dict[str, np.ndarray]:
    """uint8 [N, H, H, 3] RGB frames -> {"landmarks": float32 [N, P, 2] (x, y) pixels of the
    input, "pose": float32 [N, 3] yaw, pitch, roll radians}."""
    frames = np.asarray(frames)
    if (frames.ndim != 4 or frames.shape[1] != frames.shape[2] or frames.shape[3] != 3
        or frames.dtype != np.uint8):
      raise ValueError(f"FaceRegressorPredictor ({self.source}): expected uint8 RGB frames "
                       f"[N, H, H, 3] (square), got {frames.dtype} {frames.shape}")
    num = frames.shape[0]
    landmarks = np.zeros((num, model_lib.NUM_LANDMARKS, 2), np.float32)
    pose = np.zeros((num, len(POSE_AXES)), np.float32)
    for start in range(0, num, self.batch_size):
      chunk = base.resize_frames(frames[start:start + self.batch_size], self.image_size)
      real = chunk.shape[0]
      if real < self.batch_size:
        chunk = np.concatenate([chunk, np.zeros((self.batch_size - real,) + chunk.shape[1:],
                                                np.uint8)])
      out = jax.device_get(self._predict(self._params, chunk))
      landmarks[start:start + real] = out["landmarks"][:real]
      pose[start:start + real] = out["pose"][:real]
    landmarks = base.rescale_pixels(landmarks, frames.shape[1] / self.image_size)
    return {"landmarks": landmarks.astype(np.float32), "pose": pose}


def load_face_regressor(workdir: str | os.PathLike, step: int | None = None,
                        batch_size: int = 64) -> FaceRegressorPredictor:
  """The regressor of a trained `face_regressor` workdir (newest checkpoint, or `step`).

  Raises:
    FileNotFoundError: not a workdir, or no checkpoint in it.
    ValueError: the workdir trained another stage.
  """
  workdir = os.fspath(workdir)
  stage, state, restored = restore.restore_stage(workdir, step, expected_stage="face_regressor")
  params = jax.device_get(state.eval_params)
  return FaceRegressorPredictor(stage, params, batch_size, source=f"{workdir} step {restored}")


def mean_pose(root: str | os.PathLike, split: str = "train",
              identities: Sequence[str] | None = None) -> np.ndarray:
  """float32 [3] mean yaw, pitch, roll (radians) over a split's frames: the trivial baseline."""
  _, clips = base.open_split(root, split, identities)
  poses = np.concatenate([np.asarray(c.pose[:, :len(POSE_AXES)], np.float64) for c in clips])
  return poses.mean(axis=0).astype(np.float32)


def evaluate_split(predictor: FaceRegressorPredictor, root: str | os.PathLike, split: str,
                   identities: Sequence[str] | None = None, stride: int = 1,
                   baseline_pose: np.ndarray | None = None) -> dict[str, float]:
  """Exact errors of `predictor` on every `stride`-th frame of a split, at its image size.

  Frames are resized to the predictor's S and the true landmarks rescaled to match.

  Returns:
    landmark_px, mouth_px (mean Euclidean errors in pixels of S), pose_rmse_deg_<axis>,
    pose_mae_deg_<axis>, num_frames and, with `baseline_pose` (radians [3], e.g. `mean_pose`),
    baseline_rmse_deg_<axis> of predicting that pose for every frame.
  """
  if stride < 1:
    raise ValueError(f"stride must be >= 1, got {stride}")
  data, clips = base.open_split(root, split, identities)
  size = predictor.image_size
  scale = size / data.image_size
  all_errors, mouth_errors, pose_errors, poses = [], [], [], []
  for clip in clips:
    frames = base.resize_frames(np.asarray(clip.frames[::stride]), size)
    out = predictor.predict(frames)
    true_landmarks = base.rescale_pixels(np.asarray(clip.landmarks[::stride], np.float64), scale)
    dist = np.linalg.norm(out["landmarks"] - true_landmarks, axis=-1)      # [N, P]
    all_errors.append(dist.mean(axis=-1))
    mouth_errors.append(dist[:, landmark_metrics.MOUTH].mean(axis=-1))
    true_pose = np.asarray(clip.pose[::stride, :len(POSE_AXES)], np.float64)
    pose_errors.append(out["pose"] - true_pose)
    poses.append(true_pose)
  pose_error = np.degrees(np.concatenate(pose_errors))                    # [N, 3]
  result = {"landmark_px": float(np.concatenate(all_errors).mean()),
            "mouth_px": float(np.concatenate(mouth_errors).mean()),
            "num_frames": float(pose_error.shape[0])}
  for k, axis in enumerate(POSE_AXES):
    result[f"pose_rmse_deg_{axis}"] = float(np.sqrt(np.mean(pose_error[:, k] ** 2)))
    result[f"pose_mae_deg_{axis}"] = float(np.mean(np.abs(pose_error[:, k])))
  if baseline_pose is not None:
    baseline = np.asarray(baseline_pose, np.float64)
    if baseline.shape != (len(POSE_AXES),):
      raise ValueError(f"baseline_pose must be [{len(POSE_AXES)}] radians, got {baseline.shape}")
    baseline_error = np.degrees(np.concatenate(poses) - baseline)
    for k, axis in enumerate(POSE_AXES):
      result[f"baseline_rmse_deg_{axis}"] = float(np.sqrt(np.mean(baseline_error[:, k] ** 2)))
  return result
