"""PIR's component B stage (`pir_triplane`): the EG3D tri-plane generator of the feature image
I_F, trained through the proxy task of reconstructing the face (paper §3.2, Eq. 3; spec §2.2, §3).

Per frame of one person (`data.identities`; `pipelines.heads`, frames resized to S =
`data.image_size`): the camera of the frame's pose and K (`rendering.camera.from_face_pose`),
I_F = B(alpha, expression, camera) [r, r, C] (stratified and importance samples drawn with the
step's key in training, evenly spaced in evaluation), I_face = ProxyUpsampler(I_F, w)
[S, S, 3] read as [-1, 1] and mapped to [0, 1]; with the head mask M_h (the corpus's exact mask,
else the landmark approximation) and the frame I_GT in [0, 1]:

  L_face = w1 mean (M_h (I_face - I_GT))^2 + w2 sum_l mean (phi_l(I_face) - phi_l(M_h I_GT))^2

phi = VGG16 relu1_2 .. relu4_3 (Johnson; `losses.perceptual`, p = 2). As printed, the perceptual
term compares the unmasked I_face with the masked frame, so I_face learns a black background.
The upsampler is only the proxy's decoder: the renderer (`pir_renderer`) and inference use I_F.

`loss.region` = "head" (the paper's, above) or "frame": M_h = 1, so I_face learns the whole
frame, torso and background included: the ablation "without rendering" (paper Fig. 7, B
generating the output frame directly; `evaluation.without_rendering`).

Evaluation on `data.eval_split` frames of the person: `masked_l2` (w1's term), `psnr_head`
(PSNR of M_h I_face against M_h I_GT, [0, 1]; the whole frame's under `loss.region` = "frame")
and `opacity` (mean accumulated density of I_F's rays).

Frozen network: VGG16 (`perceptual.weights_dir`, the public torchvision file; required when
`loss.perceptual_weight` > 0, loaded on first use before any step).

Config fields: model{sizes, dtype}, data{root, identities, image_size, eval_split, eval_stride,
eval_seed, num_workers}, loss{l2_weight, perceptual_weight, region}, perceptual{weights_dir},
optimizer{...}, plus the trainer fields.

Dimensions: B batch, S frame size, r I_F size, C I_F channels, A identity and E expression
parameters, Z style width.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from talking_heads.face import morphable
from talking_heads.io.dataset import parse_identities
from talking_heads.losses import perceptual as perceptual_lib
from talking_heads.metrics import image as image_metrics
from talking_heads.models import triplane as triplane_lib
from talking_heads.pipelines import heads
from talking_heads.rendering import camera as camera_lib
from talking_heads.systems.pir import sizes as sizes_lib
from talking_heads.training.optimizers import build_optimizer
from talking_heads.training.stage import LossStage
from talking_heads.training.state import TrainState

STAGE = "pir_triplane"
REGIONS = ("head", "frame")
KEYS = ("image", "head_mask", "alpha", "expression", "pose", "K")

PyTree = Any


def build_networks(config: ml_collections.ConfigDict
                   ) -> tuple[triplane_lib.TriplaneGenerator, triplane_lib.ProxyUpsampler]:
  """B's generator and proxy upsampler at the sizes of `model.sizes`, checked against
  `data.image_size`."""
  sizes = sizes_lib.sizes(config.model.sizes)
  dtype = jnp.dtype(config.model.get("dtype", "float32"))
  generator = triplane_lib.TriplaneGenerator(**sizes.triplane, dtype=dtype)
  upsampler = triplane_lib.ProxyUpsampler(**sizes.upsampler, dtype=dtype)
  out = 2 * generator.neural_resolution * 2 ** len(upsampler.channels)
  if out != config.data.image_size:
    raise ValueError(f"data.image_size is {config.data.image_size} but the {config.model.sizes!r} "
                     f"networks render I_F at {generator.neural_resolution} px and upsample it "
                     f"to {out} px")
  return generator, upsampler


def frame_camera(pose: jax.Array, K: jax.Array, image_size: int,  # pylint: disable=invalid-name
                 jitter: jax.Array | None = None) -> camera_lib.Camera:
  """The camera of frames with pose [B, 6] and frame-pixel K [B, 3, 3] at S = image_size, K
  jittered first by `jitter` (x1, x2, x3) [B, 3] pixels when given (PIR Eq. 1)."""
  K = jnp.asarray(K, jnp.float32)  # pylint: disable=invalid-name
  if jitter is not None:
    K = camera_lib.jitter_intrinsics(K, jitter)  # pylint: disable=invalid-name
  return camera_lib.from_face_pose(pose, K, image_size)


def feature_image(generator: triplane_lib.TriplaneGenerator, params: PyTree, alpha: jax.Array,
                  expression: jax.Array, camera: camera_lib.Camera,
                  sample_key: jax.Array | None = None) -> triplane_lib.RenderedFeatures:
  """I_F (and depth, opacity, w) of identities [B, A], expressions [B, E] under `camera`."""
  return generator.apply({"params": params}, jnp.asarray(alpha, jnp.float32),
                         jnp.asarray(expression, jnp.float32), camera, sample_key)


class TriplaneStage(LossStage):
  """Trains component B with its proxy upsampler (module docstring for batch, loss and config).

  Batch keys (`pipelines.heads`): image uint8 [B, S, S, 3], head_mask float32 [B, S, S, 1],
  alpha [B, A], expression [B, E], pose [B, 6], K [B, 3, 3]; eval batches also valid bool [B].
  """

  def __init__(self, config: ml_collections.ConfigDict,
               perceptual_variables: Mapping[str, Any] | None = None):
    """`perceptual_variables` overrides loading VGG16 from `perceptual.weights_dir` (tests)."""
    super().__init__(config)
    if self.region not in REGIONS:
      raise ValueError(f"loss.region must be one of {REGIONS}, got {self.region!r}")
    self.image_size = int(config.data.image_size)
    self.generator, self.upsampler = build_networks(config)
    self.tx = build_optimizer(config.optimizer, config.total_steps)
    self._perceptual_variables = perceptual_variables

  @property
  def perceptual_variables(self) -> Mapping[str, Any]:
    """VGG16's frozen variables (Johnson's taps), loaded once on first use."""
    if self._perceptual_variables is None:
      self._perceptual_variables = perceptual_lib.make_perceptual_loss(
          "vgg16", self.config.perceptual.weights_dir, p=2).variables
      logging.info("PIR B: VGG16 from %s.", self.config.perceptual.weights_dir)
    return self._perceptual_variables

  @property
  def region(self) -> str:
    """What I_face reconstructs: "head" (the paper's) or "frame" (module docstring)."""
    return self.config.loss.get("region", "head")

  def region_mask(self, batch: Mapping[str, jax.Array]) -> jax.Array:
    """M_h [B, S, S, 1]: the head mask, or ones under `loss.region` = "frame"."""
    mask = batch["head_mask"].astype(jnp.float32)
    return jnp.ones_like(mask) if self.region == "frame" else mask

  # -------------------------------------------------------------------------------- model

  def init_state(self, rng: jax.Array) -> TrainState:
    model = morphable.default_model()
    g_key, u_key = jax.random.split(rng)
    s, r = self.image_size, self.generator.neural_resolution
    camera = frame_camera(morphable.default_pose()[None], morphable.default_camera(s)[None], s)
    g_params = self.generator.init(g_key, jnp.zeros((1, model.num_identity)),
                                   jnp.zeros((1, model.num_expression)), camera)["params"]
    u_params = self.upsampler.init(u_key, jnp.zeros((1, r, r, self.generator.plane_channels)),
                                   jnp.zeros((1, self.generator.style_dim)))["params"]
    return TrainState.create({"generator": g_params, "upsampler": u_params}, self.tx, rng=rng,
                             ema_decay=self.config.get("ema_decay", 0.0))

  def forward(self, params: PyTree, batch: Mapping[str, jax.Array],
              sample_key: jax.Array | None = None
              ) -> tuple[triplane_lib.RenderedFeatures, jax.Array]:
    """(B's rendering, I_face [B, S, S, 3] in [0, 1] (unclipped))."""
    camera = frame_camera(batch["pose"], batch["K"], self.image_size)
    rendered = feature_image(self.generator, params["generator"], batch["alpha"],
                             batch["expression"], camera, sample_key)
    face = self.upsampler.apply({"params": params["upsampler"]}, rendered.image, rendered.w)
    return rendered, (face + 1.0) * 0.5

  def _terms(self, face: jax.Array, batch: Mapping[str, jax.Array]
             ) -> tuple[jax.Array, dict[str, jax.Array]]:
    loss_cfg = self.config.loss
    target = batch["image"].astype(jnp.float32) / 255.0
    mask = self.region_mask(batch)
    masked_l2 = jnp.mean(jnp.square(mask * (face - target)))
    loss, metrics = loss_cfg.l2_weight * masked_l2, {"masked_l2": masked_l2}
    if loss_cfg.perceptual_weight > 0:
      perceptual = perceptual_lib.perceptual_loss(
          self.perceptual_variables, face, mask * target, distance="l2", value_range=(0.0, 1.0))
      loss, metrics["perceptual"] = loss + loss_cfg.perceptual_weight * perceptual, perceptual
    return loss, metrics

  def loss_fn(self, params: PyTree, model_state: PyTree, batch: Mapping[str, jax.Array],
              rng: jax.Array):
    del model_state
    _, face = self.forward(params, batch, rng)
    loss, metrics = self._terms(face, batch)
    return loss, (metrics, None)

  # --------------------------------------------------------------------------- evaluation

  def _psnr_head(self, face: jax.Array, batch: Mapping[str, jax.Array]) -> jax.Array:
    mask = self.region_mask(batch)
    target = batch["image"].astype(jnp.float32) / 255.0
    return image_metrics.psnr(mask * jnp.clip(face, 0.0, 1.0), mask * target, data_range=1.0)

  def eval_step(self, state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array):
    del rng
    valid = batch["valid"].astype(jnp.float32)
    rendered, face = self.forward(state.eval_params, batch)
    target = batch["image"].astype(jnp.float32) / 255.0
    mask = self.region_mask(batch)
    mean = lambda x: jnp.sum(x * valid) / jnp.maximum(jnp.sum(valid), 1.0)
    return {"masked_l2": mean(jnp.mean(jnp.square(mask * (face - target)), axis=(1, 2, 3))),
            "psnr_head": mean(self._psnr_head(face, batch)),
            "opacity": mean(jnp.mean(rendered.opacity, axis=(1, 2))),
            "eval_weight": jnp.sum(valid)}

  def images(self, state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array):
    """Per frame, side by side: the masked frame M_h I_GT, I_face, and I_F's first 3 channels
    and opacity resized to S."""
    del rng
    n = min(4, batch["image"].shape[0])
    small = {k: batch[k][:n] for k in KEYS}
    rendered, face = self.forward(state.eval_params, small)
    s = self.image_size
    resize = lambda x: jax.image.resize(x, (n, s, s, x.shape[-1]), "nearest")
    panels = [self.region_mask(small) * small["image"].astype(jnp.float32) / 255.0,
              jnp.clip(face, 0.0, 1.0),
              resize(jnp.clip((rendered.image[..., :3] + 1.0) * 0.5, 0.0, 1.0)),
              jnp.repeat(resize(rendered.opacity[..., None]), 3, axis=-1)]
    return {"target_face_features_opacity": jnp.concatenate(panels, axis=2)}

  # --------------------------------------------------------------------------------- data

  def _options(self) -> dict[str, Any]:
    return dict(image_size=self.image_size,
                identities=parse_identities(self.config.data.identities) or None)

  def train_iterator(self, batch_size: int, shard_index: int, shard_count: int):
    if self.config.loss.perceptual_weight > 0:
      _ = self.perceptual_variables   # now, so that a missing file fails before any step
    d = self.config.data
    return heads.make_head_iterator(d.root, batch_size=batch_size, shard_index=shard_index,
                                    shard_count=shard_count, seed=self.config.seed,
                                    num_workers=d.num_workers, split="train", **self._options())

  def eval_batches(self, batch_size: int, shard_index: int, shard_count: int):
    d = self.config.data
    it = heads.make_head_eval_iterator(d.root, batch_size=batch_size, shard_index=shard_index,
                                       shard_count=shard_count, seed=d.eval_seed, num_workers=0,
                                       split=d.eval_split, stride=d.eval_stride, **self._options())
    yield from ({k: b[k] for k in KEYS + ("valid",)} for b in it)

  # ---------------------------------------------------------------------------- benchmark

  def inference(self, state: TrainState) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """I_F of `batch_size` frames (what inference needs of B: no upsampler)."""
    model, b, s = morphable.default_model(), self.config.batch_size, self.image_size
    pose = jnp.tile(jnp.asarray(morphable.default_pose(), jnp.float32)[None], (b, 1))
    K = jnp.tile(jnp.asarray(morphable.default_camera(s), jnp.float32)[None], (b, 1, 1))  # pylint: disable=invalid-name
    fn = jax.jit(lambda params, alpha, expression, pose, K: feature_image(  # pylint: disable=invalid-name
        self.generator, params["generator"], alpha, expression,
        frame_camera(pose, K, s)).image)
    return fn, (state.eval_params, jnp.zeros((b, model.num_identity)),
                jnp.zeros((b, model.num_expression)), pose, K)
