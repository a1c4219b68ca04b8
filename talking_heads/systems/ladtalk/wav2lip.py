"""Wav2Lip generator stage (LaDTalk's base model): L1 + a frozen lip-sync expert, optional GAN.

As the reference trains it (Wav2Lip `wav2lip_train.py`, `hq_wav2lip_train.py`):
  batch      5-frame windows from `pipelines.clips`: targets, their copies with the lower half
             zeroed, a reference window of the same clip, one mel window per frame (frame j uses
             frame j-1's) and the window of the first frame for the expert.
  input      faces = [masked targets | reference] on channels, /255, BGR when `data.bgr` (the
             published weights' order); the output is turned back to RGB.
  sync       BCE(cos(expert audio, expert faces), 1) of the FROZEN expert on the lower halves of
             the 5 generated frames (resized to the expert's 96 px when S differs).
  no GAN     loss = (1 - sw) L1 + sw sync                                     (Adam 1e-4)
  GAN        loss = sw sync + w_adv adv + (1 - sw - w_adv) L1, adv = BCE(D(G), 1);
             D: BCE(D(gt), 1) + BCE(D(G), 0) on G's output before its update
             (both Adam 1e-4, betas 0.5, 0.999)
  schedule   sw = 0 (the sync loss is not even computed) until an evaluation meets the switch
             rule, then `loss.sync_weight` (0.01), or `gan.sync_weight` (0.03) with the GAN; it
             never switches back. The rule (`sync_switch_due`): the published one, eval sync
             loss below `loss.sync_threshold` (0.75), OR, when set (> 0), either demo rule:
             eval sync loss below `loss.sync_truth_ratio` x the expert's eval loss on the true
             frames of the same windows (`sync_loss_truth`, an evaluation metric), or an
             evaluation at step >= `loss.sync_switch_step`. The paper config keeps only the
             published rule; the demo config documents its own.

Dimensions: B batch, T frames per window (5), S face size, N = B*T.

State: a TrainState (no GAN; `training.steps.gradient_step` on `loss_fn`) or an
AdversarialTrainState with the discriminator as player "visual" (GAN; `training.adversarial`,
"bce" family, generator weight w_adv). The generator's `model_state` holds its `batch_stats` and
`sync_weight`, the current sw as a float32 scalar: it is checkpointed with the parameters, so a resumed run keeps a switched weight; `after_eval` switches it.
Initialisation is PyTorch's Conv2d default, which the reference trains from (kernel and bias
~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = kh kw C_in, also for the transposed convs), drawn
in one call: per-parameter draws made XLA:CPU spend most of a tiny run compiling the initialiser.

Expert: `sync_expert.workdir` (a workdir of our `syncnet` stage; its eval parameters and
BatchNorm statistics) or `sync_expert.checkpoint` (Wav2Lip's public `lipsync_expert.pth`).
Its variables are host constants closed over by the jitted steps, never trainable state. They
are loaded on first use (the train iterator asks first, so a missing expert fails before any
step), so restoring a trained generator for generation needs no expert. The reference leaves the
expert's BatchNorm in training mode (batch statistics; Wav2Lip issue #482); we use its running
statistics unless `sync_expert.use_running_average` is False.

Config fields: model{width, dtype}, data{root, image_size, bgr, eval_split, eval_stride,
eval_seed, num_workers}, loss{sync_weight, sync_threshold, sync_truth_ratio, sync_switch_step},
sync_expert{workdir, checkpoint, use_running_average}, gan{enabled, adv_weight, sync_weight,
generator_b1, optimizer{...}}, optimizer{...}, plus the trainer fields (`talking_heads.training.loop`).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from talking_heads.metrics import image as image_metrics
from talking_heads.metrics import reduce
from talking_heads.models import wav2lip as wav2lip_lib
from talking_heads.pipelines import clips as clips_pipeline
from talking_heads.systems.experts import sync_expert as sync_expert_lib
from talking_heads.systems.images import pixels_to_unit
from talking_heads.training import adversarial
from talking_heads.training.optimizers import build_optimizer
from talking_heads.training.stage import LossStage
from talking_heads.training.state import AdversarialTrainState, TrainState

WINDOW = 5
EVAL_KEYS = ("frames", "masked", "reference", "mel", "indiv_mels", "valid")

PyTree = Any
# The adversarial step's metrics of the "visual" player -> this stage's names.
GAN_METRICS = {"visual/g_loss": "adv_loss", "visual/d_loss": "disc_loss",
               "visual/d_loss_real": "disc_real_loss", "visual/d_loss_fake": "disc_fake_loss",
               "visual/grad_norm": "disc_grad_norm"}


def uniform_fan_in_init(abstract: PyTree, rng: jax.Array) -> PyTree:
  """Variables for a tree of conv and BatchNorm layers, from one uniform draw.

  Conv layers ({"kernel", "bias"}): both ~ U(-b, b), b = 1/sqrt(fan_in), fan_in = the product
  of the kernel's dims but the last (PyTorch's Conv2d default). BatchNorm ({"scale", "bias"}
  params, {"mean", "var"} statistics): 1, 0, 0, 1.
  """
  leaves: list[tuple[tuple[Any, ...], Any, float]] = []   # (path, abstract leaf, bound)

  def collect(path: tuple[Any, ...], node: Any) -> None:
    if "kernel" in node:
      bound = float(np.prod(node["kernel"].shape[:-1])) ** -0.5
      leaves.extend((path + (k,), v, bound) for k, v in sorted(node.items()))
    for k, v in sorted(node.items()):
      if isinstance(v, dict) and v:
        collect(path + (k,), v)

  collect((), abstract)
  total = sum(int(np.prod(leaf.shape)) for _, leaf, _ in leaves)
  draws = jax.random.uniform(rng, (total,), jnp.float32, -1.0, 1.0)
  drawn, offset = {}, 0
  for path, leaf, bound in leaves:
    size = int(np.prod(leaf.shape))
    drawn[path] = (draws[offset:offset + size] * bound).reshape(leaf.shape).astype(leaf.dtype)
    offset += size
  constant = {"scale": 1.0, "var": 1.0}

  def value(path: tuple[Any, ...], leaf: Any) -> jax.Array:
    key = tuple(p.key for p in path)
    if key in drawn:
      return drawn[key]
    return jnp.full(leaf.shape, constant.get(key[-1], 0.0), leaf.dtype)

  return jax.tree_util.tree_map_with_path(value, abstract)


def window_psnr(generated: jax.Array, target: jax.Array) -> jax.Array:
  """PSNR of each 5-frame window as one image: [B, T, S, S, 3] x 2 in [0, 1] -> [B]."""
  b, t, size = generated.shape[:3]
  as_image = lambda x: x.reshape(b, t * size, size, 3)
  return image_metrics.psnr(as_image(generated), as_image(target), data_range=1.0)


def sync_switch_due(loss: ml_collections.ConfigDict, eval_metrics: dict[str, float],
                    step: int) -> str | None:
  """Why the sync loss switches on after this evaluation (module docstring), or None.

  `loss` holds sync_threshold and, optional (0 = off), sync_truth_ratio and sync_switch_step.
  """
  sync = eval_metrics.get("sync_loss")
  if sync is None:
    return None
  if sync < loss.sync_threshold:
    return f"eval sync loss {sync:.4f} < threshold {loss.sync_threshold:g}"
  ratio, truth = loss.get("sync_truth_ratio", 0.0), eval_metrics.get("sync_loss_truth")
  if ratio > 0 and truth is not None and sync < ratio * truth:
    return f"eval sync loss {sync:.4f} < {ratio:g} x the true frames' {truth:.4f}"
  switch_step = loss.get("sync_switch_step", 0)
  if switch_step > 0 and step >= switch_step:
    return f"step {step} >= sync_switch_step {switch_step}"
  return None


def _host_scalar(x: jax.Array) -> float:
  """A replicated scalar's value, also when the array spans other processes' devices."""
  return float(np.asarray(x.addressable_data(0)))


def _bce_logits(logits: jax.Array, label: float) -> jax.Array:
  """[N, 1] logits -> [N] BCE against a constant label."""
  return optax.sigmoid_binary_cross_entropy(logits[:, 0], jnp.full(logits.shape[:1], label))


class Wav2LipStage(LossStage):
  """Batch keys (from `pipelines.clips`): frames, masked, reference uint8 [B, 5, S, S, 3],
  mel float32 [B, 80, 16], indiv_mels float32 [B, 5, 80, 16]; eval adds valid bool [B]."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    m, d, g = config.model, config.data, config.gan
    wav2lip_lib.bottleneck_kernel(d.image_size)   # a bad size fails here, not at the first trace
    dtype = jnp.dtype(m.get("dtype", "float32"))
    self.image_size = d.image_size
    self.gan = bool(g.enabled)
    self.generator = wav2lip_lib.Wav2LipGenerator(width=m.width, image_size=d.image_size,
                                                  dtype=dtype)
    self.discriminator = wav2lip_lib.Wav2LipDiscriminator(width=m.width, image_size=d.image_size,
                                                          dtype=dtype)
    generator_optimizer = config.optimizer.to_dict()
    if self.gan:
      generator_optimizer["b1"] = g.generator_b1
    self.tx = build_optimizer(generator_optimizer, config.total_steps)
    self.disc_tx = build_optimizer(g.optimizer, config.total_steps)
    self.switched_sync_weight = float(g.sync_weight if self.gan else config.loss.sync_weight)
    self._sync_expert: sync_expert_lib.FrozenLipSyncExpert | None = None

  @property
  def sync_expert(self) -> sync_expert_lib.FrozenLipSyncExpert:
    """The frozen expert, loaded once on first use."""
    if self._sync_expert is None:
      self._sync_expert = sync_expert_lib.load_frozen_expert(self.config.sync_expert)
      logging.info("Wav2Lip: frozen lip-sync expert from %s.", self._sync_expert.source)
    return self._sync_expert

  # --------------------------------------------------------------------------- generator

  def _model_order(self, x: jax.Array) -> jax.Array:
    """RGB <-> the generator's channel order (an involution), per 3-channel group."""
    if not self.config.data.bgr:
      return x
    return x.reshape(*x.shape[:-1], -1, 3)[..., ::-1].reshape(x.shape)

  def _generate(self, variables: dict[str, Any], mels: jax.Array, masked: jax.Array,
                reference: jax.Array, train: bool) -> tuple[jax.Array, Any]:
    """RGB faces [..., S, S, 3] in [0, 1] (and BatchNorm updates when `train`)."""
    faces = self._model_order(jnp.concatenate([pixels_to_unit(masked), pixels_to_unit(reference)],
                                              axis=-1))                     # [..., S, S, 6]
    mels = jnp.asarray(mels, jnp.float32)[..., None]                       # [..., 80, 16, 1]
    if train:
      out, updates = self.generator.apply(variables, mels, faces, use_running_average=False,
                                          mutable=["batch_stats"])
    else:
      out, updates = self.generator.apply(variables, mels, faces, use_running_average=True), None
    return self._model_order(out), updates

  def generate_faces(self, variables: dict[str, Any], mels: jax.Array, faces: jax.Array,
                     reference: jax.Array | None = None) -> jax.Array:
    """Lip-synced faces for per-frame mel windows, as Wav2Lip's inference (pure; jit it).

    Args:
      variables: {"params", "batch_stats"} (`variables(state)`, or converted public weights
        with `data.bgr`).
      mels: [N, 80, 16] (or [B, T, 80, 16]) float32 mel window of each frame.
      faces: [N, S, S, 3] (or [B, T, S, S, 3]) RGB faces, uint8 or float in [0, 1]; their lower
        halves are masked here.
      reference: faces of the same shape shown unmasked (default: `faces`, as Wav2Lip's inference).

    Returns:
      float32 RGB faces in [0, 1], shaped as `faces`.
    """
    faces = jnp.asarray(faces)
    masked = faces.at[..., faces.shape[-3] // 2:, :, :].set(0)
    return self._generate(variables, mels, masked, faces if reference is None else reference,
                          train=False)[0]

  def variables(self, state: TrainState | AdversarialTrainState) -> dict[str, Any]:
    """Generator variables to evaluate and generate with."""
    g = self._generator_state(state)
    return {"params": g.eval_params, "batch_stats": g.model_state["batch_stats"]}

  def _generator_state(self, state: TrainState | AdversarialTrainState) -> TrainState:
    return state.generator if self.gan else state

  def sync_weight(self, state: TrainState | AdversarialTrainState) -> jax.Array:
    """The current sync loss weight sw (float32 scalar)."""
    return self._generator_state(state).model_state["sync_weight"]

  # --------------------------------------------------------------------------- training

  def init_state(self, rng: jax.Array) -> TrainState | AdversarialTrainState:
    s = self.image_size
    g_rng, d_rng = jax.random.split(rng)
    variables = uniform_fan_in_init(jax.eval_shape(functools.partial(
        self.generator.init, use_running_average=False), g_rng, jnp.zeros((1, 80, 16, 1)),
        jnp.zeros((1, s, s, 6))), g_rng)
    model_state = {"batch_stats": variables["batch_stats"],
                   "sync_weight": jnp.zeros((), jnp.float32)}
    generator = TrainState.create(variables["params"], self.tx, rng=rng, model_state=model_state,
                                  ema_decay=self.config.get("ema_decay", 0.0))
    if not self.gan:
      return generator
    d_params = uniform_fan_in_init(jax.eval_shape(self.discriminator.init, d_rng,
                                                  jnp.zeros((1, s, s, 3))), d_rng)["params"]
    return AdversarialTrainState.create(
        generator, {"visual": TrainState.create(d_params, self.disc_tx, rng=rng)}, rng=rng)

  def _gated_sync_loss(self, sync_weight: jax.Array, mel: jax.Array,
                       generated: jax.Array) -> jax.Array:
    # As the reference: no expert pass while sw is 0 (saves its forward and backward).
    return jax.lax.cond(sync_weight > 0, lambda: self.sync_expert.loss(mel, generated),
                        lambda: jnp.zeros((), jnp.float32))

  def _generator_terms(self, params: PyTree, model_state: PyTree, batch: dict[str, jax.Array]
                       ) -> tuple[jax.Array, jax.Array, jax.Array, dict[str, jax.Array], PyTree]:
    """(generated [B, T, S, S, 3], l1, sync, metrics, model_state after the step)."""
    sw = model_state["sync_weight"]
    generated, updates = self._generate(
        {"params": params, "batch_stats": model_state["batch_stats"]},
        batch["indiv_mels"], batch["masked"], batch["reference"], train=True)
    target = pixels_to_unit(batch["frames"])
    l1 = jnp.mean(jnp.abs(generated - target))
    sync = self._gated_sync_loss(sw, batch["mel"], generated)
    metrics = {"l1": l1, "sync_loss": sync, "sync_weight": sw,
               "psnr": jnp.mean(window_psnr(generated, target))}
    return generated, l1, sync, metrics, {**model_state, "batch_stats": updates["batch_stats"]}

  def loss_fn(self, params: PyTree, model_state: PyTree, batch: dict[str, jax.Array],
              rng: jax.Array):
    """No GAN: (1 - sw) L1 + sw sync."""
    del rng  # sampling randomness lives in the data pipeline
    _, l1, sync, metrics, model_state = self._generator_terms(params, model_state, batch)
    sw = model_state["sync_weight"]
    return (1.0 - sw) * l1 + sw * sync, (metrics, model_state)

  def _generate_adversarial(self, params: PyTree, model_state: PyTree,
                            batch: dict[str, jax.Array], rng: jax.Array
                            ) -> adversarial.GeneratorOutput:
    """GAN: sw sync + (1 - sw - w_adv) L1; the step adds w_adv BCE(D(G), 1)."""
    del rng
    generated, l1, sync, metrics, model_state = self._generator_terms(params, model_state, batch)
    sw = model_state["sync_weight"]
    loss = sw * sync + (1.0 - sw - self.config.gan.adv_weight) * l1
    return adversarial.GeneratorOutput(fake=generated, real=pixels_to_unit(batch["frames"]),
                                       loss=loss, metrics=metrics, model_state=model_state)

  def _disc_logits(self, params: PyTree, model_state: PyTree, faces: jax.Array,
                   batch: dict[str, jax.Array], rng: jax.Array) -> adversarial.DiscriminatorOutput:
    del model_state, batch, rng
    return adversarial.DiscriminatorOutput(
        self.discriminator.apply({"params": params}, faces, return_logits=True))   # [N, 1]

  def train_step(self, state: TrainState | AdversarialTrainState, batch: dict[str, jax.Array],
                 rng: jax.Array):
    if not self.gan:
      return super().train_step(state, batch, rng)
    player = adversarial.Discriminator(self._disc_logits, loss="bce",
                                       g_weight=self.config.gan.adv_weight)
    state, metrics = adversarial.adversarial_step(
        state, self._generate_adversarial, {"visual": player}, batch, rng)
    return state, {GAN_METRICS.get(k, k): v for k, v in metrics.items()
                   if "/" not in k or k in GAN_METRICS}

  def after_eval(self, state: TrainState | AdversarialTrainState,
                 eval_metrics: dict[str, float]) -> TrainState | AdversarialTrainState:
    """Switches sw on once an evaluation meets `sync_switch_due` (then keeps it)."""
    old = self.sync_weight(state)
    if _host_scalar(old) > 0:
      return state
    step = int(_host_scalar(state.step))
    reason = sync_switch_due(self.config.loss, eval_metrics, step)
    if reason is None:
      return state
    value = np.float32(self.switched_sync_weight)
    new = jax.make_array_from_callback(old.shape, old.sharding, lambda _: value)
    logging.info("Wav2Lip: %s at step %d: sync loss weight 0 -> %g.", reason, step, value)
    generator = self._generator_state(state)
    generator = generator.replace(model_state={**generator.model_state, "sync_weight": new})
    return state.replace(generator=generator) if self.gan else generator

  def _clip_args(self, batch_size: int, shard_index: int, shard_count: int) -> dict[str, Any]:
    return dict(batch_size=batch_size, shard_index=shard_index, shard_count=shard_count,
                num_frames=WINDOW, audio=clips_pipeline.WAV2LIP_AUDIO, reference_mode="window",
                image_size=self.image_size)

  def train_iterator(self, batch_size: int, shard_index: int, shard_count: int):
    _ = self.sync_expert  # loaded now, so a missing expert fails before any step
    d = self.config.data
    return clips_pipeline.make_clips_iterator(
        d.root, seed=self.config.seed, num_workers=d.num_workers, split="train",
        **self._clip_args(batch_size, shard_index, shard_count))

  # --------------------------------------------------------------------------- evaluation

  def eval_step(self, state: TrainState | AdversarialTrainState, batch: dict[str, jax.Array],
                rng: jax.Array):
    del rng
    valid = batch["valid"].astype(jnp.float32)                             # [B]
    generated, _ = self._generate(self.variables(state), batch["indiv_mels"], batch["masked"],
                                  batch["reference"], train=False)          # [B, T, S, S, 3]
    target = pixels_to_unit(batch["frames"])
    metrics = {
        "l1": reduce.weighted_mean(jnp.mean(jnp.abs(generated - target), axis=(1, 2, 3, 4)), valid),
        "sync_loss": self.sync_expert.loss(batch["mel"], generated, valid),
        # The expert on the true frames of the same windows: what the demo switch rule compares to.
        "sync_loss_truth": self.sync_expert.loss(batch["mel"], target, valid),
        "psnr": reduce.weighted_mean(window_psnr(generated, target), valid),
        "eval_weight": jnp.sum(valid),
    }
    if self.gan:
      per_window = lambda x: x.reshape(valid.shape[0], WINDOW).mean(axis=1)  # [N] -> [B]
      d_params = state.discriminators["visual"].params
      scores = lambda faces: self.discriminator.apply({"params": d_params}, faces,
                                                      return_logits=True)
      fake_scores = scores(generated)
      metrics["adv_loss"] = reduce.weighted_mean(per_window(_bce_logits(fake_scores, 1.0)), valid)
      real_scores = scores(target)
      metrics["disc_real_loss"] = reduce.weighted_mean(per_window(_bce_logits(real_scores, 1.0)), valid)
      metrics["disc_fake_loss"] = reduce.weighted_mean(per_window(_bce_logits(fake_scores, 0.0)), valid)
    return metrics

  def eval_batches(self, batch_size: int, shard_index: int, shard_count: int):
    d = self.config.data
    it = clips_pipeline.make_clips_eval_iterator(
        d.root, seed=d.eval_seed, num_workers=0, split=d.eval_split, stride=d.eval_stride,
        **self._clip_args(batch_size, shard_index, shard_count))
    yield from ({k: b[k] for k in EVAL_KEYS} for b in it)

  def images(self, state: TrainState | AdversarialTrainState, batch: dict[str, jax.Array], rng: jax.Array):
    del rng
    n = min(4, batch["frames"].shape[0])
    generated, _ = self._generate(self.variables(state), batch["indiv_mels"][:n],
                                  batch["masked"][:n], batch["reference"][:n], train=False)
    rows = [pixels_to_unit(batch["frames"][:n]), pixels_to_unit(batch["masked"][:n]), generated]
    # Each example: target / masked input / generated rows, the 5 frames side by side.
    strips = [r.transpose(0, 2, 1, 3, 4).reshape(n, self.image_size, -1, 3) for r in rows]
    return {"target_masked_generated": jnp.concatenate(strips, axis=1)}   # [n, 3S, 5S, 3]

  def inference(self, state: TrainState | AdversarialTrainState
                ) -> tuple[Callable[..., jax.Array], tuple[Any, ...]]:
    s, n = self.image_size, self.config.batch_size * WINDOW
    mels, faces = jnp.zeros((n, 80, 16)), jnp.zeros((n, s, s, 3), jnp.uint8)
    return self.generate_faces, (self.variables(state), mels, faces)
