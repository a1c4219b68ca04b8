"""LaDTalk's SOVQAE stage: a per-identity VQ autoencoder that turns blurry faces into sharp ones.

LaDTalk (§4, Eq. 11-12, App. F) trains one SOVQAE per identity on a few minutes of that
identity's face crops; at inference Wav2Lip's 96 px faces are upscaled and passed through
encode -> quantise -> decode, which snaps blurred latents back to the identity's codes.

Generator loss (per step):
  nll   = L2(x_hat, x) (paper; L1 option) + perceptual_weight * LPIPS-VGG or VGG16 features
  vq    = Eq. 12's codebook + commitment terms (beta, legacy switch; `losses.vq`)
  reg   = Eq. 11: |d_C - theta| on the codebook (minimal / average distance, or off)
  gan   = lambda * -mean D(x_hat), lambda = the adaptive weight on the decoder's conv_out
          kernel (`losses.gan.adaptive_weight`) times `loss.disc_weight`
  total = nll + codebook_weight * vq + regulariser.weight * reg + disc_factor * gan
The PatchGAN discriminator (player "patchgan" of `training.adversarial`, BatchNorm statistics
threaded real -> fake) trains with disc_factor * the hinge (or vanilla) loss. disc_factor is 0
before `loss.disc_start` and 1 after; as in taming both players run the discriminator from the
start with the factor 0 (a lax.cond that skipped it made XLA:CPU steps 2-3x slower), and a zero
gradient leaves Adam's parameters unchanged. Two Adam optimisers (taming: betas 0.5, 0.9); the
state is an AdversarialTrainState. `loss.disc_weight = 0` removes the discriminator altogether:
the state is the generator's TrainState and the step `training.steps.gradient_step`.

Perceptual loss: only with public weights (`perceptual.weights_dir`: LPIPS-VGG needs
vgg16-397923af.pth and lpips/weights/v0.1/vgg.pth, "vgg16" only the first). With no folder the
term is off (logged); a folder without the files raises MissingWeightsError naming them.
Nothing runs with random perceptual weights.

Data: frames of `data.identities` (comma-separated; LaDTalk: one identity) from the train split,
resized to `data.image_size`, in [-1, 1]; with `data.degrade` the input is randomly degraded
(`pipelines.frames.Degradations`) and the clean frame is the target (off in the paper, which
trains on clean faces). Evaluation: every `data.eval_stride`-th frame of `data.eval_split` of
the same identities: PSNR (reconstruction clipped to [0, 1]), L2, codebook statistics.

Config fields: model{channels, num_codes, code_dim, dtype}, quantizer{beta, legacy},
regulariser{mode, theta, weight}, loss{reconstruction, perceptual_weight, codebook_weight,
disc_weight, disc_start, disc_loss}, perceptual{weights_dir, net}, discriminator{base_features,
num_layers}, data{root, identities, image_size, degrade, eval_split, eval_stride, eval_seed,
num_workers}, optimizer{...}, disc_optimizer{...}, plus the trainer fields.

Dimensions: B batch, H = W = image_size, h, w latent size, c code width, N codes.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from talking_heads.losses import gan as gan_losses
from talking_heads.losses import perceptual as perceptual_lib
from talking_heads.losses import vq as vq_losses
from talking_heads.metrics import image as image_metrics
from talking_heads.metrics import lpips as lpips_lib
from talking_heads.metrics import reduce
from talking_heads.models.patchgan import PatchGAN
from talking_heads.models.vq import SOVQAE
from talking_heads.io.dataset import parse_identities
from talking_heads.pipelines import frames as frames_pipeline
from talking_heads.systems.images import to_model_range, to_unit_range
from talking_heads.training import adversarial
from talking_heads.training.optimizers import build_optimizer
from talking_heads.training.stage import LossStage
from talking_heads.training.state import AdversarialTrainState, TrainState

PERCEPTUAL_NETS = ("lpips", "vgg16")
RECONSTRUCTION_LOSSES = ("l2", "l1")
State = TrainState | AdversarialTrainState   # without / with the discriminator
# The adversarial step's metrics of the "patchgan" player -> this stage's names.
GAN_METRICS = {"patchgan/g_loss": "g_loss", "patchgan/adaptive_weight": "d_weight",
               "patchgan/d_loss": "d_loss", "patchgan/logits_real": "logits_real",
               "patchgan/logits_fake": "logits_fake"}


def load_perceptual_variables(weights_dir: str, net: str) -> Mapping[str, Any]:
  """The frozen perceptual network's variables from the public files in `weights_dir`."""
  if net not in PERCEPTUAL_NETS:
    raise ValueError(f"perceptual.net must be one of {PERCEPTUAL_NETS}, got {net!r}")
  return perceptual_lib.make_perceptual_loss(net, weights_dir).variables


class SOVQAEStage(LossStage):
  """Trains `SOVQAE` against a `PatchGAN` (module docstring).

  Batch keys (from `pipelines.frames`): image uint8 [B, H, W, 3], degraded uint8 [B, H, W, 3];
  eval batches also carry valid [B].
  """

  def __init__(self, config: ml_collections.ConfigDict,
               perceptual_variables: Mapping[str, Any] | None = None):
    """`perceptual_variables` overrides loading them from `perceptual.weights_dir` (tests)."""
    super().__init__(config)
    m, loss = config.model, config.loss
    dtype = jnp.dtype(m.get("dtype", "float32"))
    self.model = SOVQAE(channels=tuple(m.channels), num_codes=m.num_codes, code_dim=m.code_dim,
                        dtype=dtype)
    d = config.discriminator
    self.discriminator = PatchGAN(base_features=d.base_features, num_layers=d.num_layers,
                                  dtype=dtype)
    if loss.reconstruction not in RECONSTRUCTION_LOSSES:
      raise ValueError(f"loss.reconstruction must be one of {RECONSTRUCTION_LOSSES}, "
                       f"got {loss.reconstruction!r}")
    if loss.disc_loss not in gan_losses.D_LOSSES:
      raise ValueError(f"loss.disc_loss must be one of {gan_losses.D_LOSSES}, got {loss.disc_loss!r}")
    if config.regulariser.mode not in vq_losses.REGULARISER_MODES:
      raise ValueError(f"regulariser.mode must be one of {vq_losses.REGULARISER_MODES}, "
                       f"got {config.regulariser.mode!r}")
    self.perceptual_net = config.perceptual.net
    if perceptual_variables is None and loss.perceptual_weight > 0:
      if config.perceptual.weights_dir:
        perceptual_variables = load_perceptual_variables(config.perceptual.weights_dir,
                                                         self.perceptual_net)
      else:
        logging.warning("SOVQAE: perceptual loss off (loss.perceptual_weight=%g but "
                        "perceptual.weights_dir is empty).", loss.perceptual_weight)
    self.perceptual_variables = perceptual_variables if loss.perceptual_weight > 0 else None
    self.use_gan = loss.disc_weight > 0
    self.tx = build_optimizer(config.optimizer, config.total_steps)
    self.disc_tx = build_optimizer(config.disc_optimizer, config.total_steps)

  # ------------------------------------------------------------------------------------ state

  def init_state(self, rng: jax.Array) -> State:
    g_rng, d_rng = jax.random.split(rng)
    size = self.config.data.image_size
    x = jnp.zeros((1, size, size, 3), jnp.float32)
    params = self.model.init(g_rng, x)["params"]
    generator = TrainState.create(params, self.tx, rng=g_rng,
                                  ema_decay=self.config.get("ema_decay", 0.0))
    if not self.use_gan:
      return generator
    d_vars = self.discriminator.init(d_rng, x, train=False)
    discriminator = TrainState.create(d_vars["params"], self.disc_tx, rng=d_rng,
                                      model_state={"batch_stats": d_vars["batch_stats"]})
    return AdversarialTrainState.create(generator, {"patchgan": discriminator}, rng)

  # ----------------------------------------------------------------------------------- losses

  def _reconstruction(self, x_hat: jax.Array, target: jax.Array) -> jax.Array:
    diff = x_hat.astype(jnp.float32) - target
    if self.config.loss.reconstruction == "l2":
      return jnp.mean(jnp.square(diff))
    return jnp.mean(jnp.abs(diff))

  def _perceptual(self, x_hat: jax.Array, target: jax.Array) -> jax.Array:
    if self.perceptual_net == "lpips":
      return jnp.mean(lpips_lib.LPIPS(net="vgg").apply(self.perceptual_variables, x_hat, target))
    return perceptual_lib.perceptual_loss(self.perceptual_variables, x_hat, target,
                                          value_range=(-1.0, 1.0))

  def _nll(self, x_hat: jax.Array, target: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Reconstruction (+ perceptual) loss, taming's "nll"."""
    rec = self._reconstruction(x_hat, target)
    if self.perceptual_variables is None:
      return rec, {"reconstruction": rec}
    perceptual = self._perceptual(x_hat, target)
    return rec + self.config.loss.perceptual_weight * perceptual, {
        "reconstruction": rec, "perceptual": perceptual}

  def _logits(self, params: Any, model_state: Any, images: jax.Array, batch: Any = None,
              rng: jax.Array | None = None) -> adversarial.DiscriminatorOutput:
    """PatchGAN logits with batch statistics, and the updated `batch_stats`."""
    del batch, rng
    logits, updates = self.discriminator.apply({"params": params, **model_state}, images,
                                               train=True, mutable=["batch_stats"])
    return adversarial.DiscriminatorOutput(logits, model_state={
        "batch_stats": updates["batch_stats"]})

  def _inputs(self, batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """(model inputs, target), [B, H, W, 3] in [-1, 1]."""
    target = to_model_range(batch["image"])
    return (to_model_range(batch["degraded"]) if self.config.data.degrade else target), target

  def _generate(self, params: Any, model_state: Any, batch: dict[str, jax.Array],
                rng: jax.Array) -> adversarial.GeneratorOutput:
    """x_hat and the non-adversarial loss nll + codebook_weight vq + regulariser.weight reg."""
    del model_state, rng  # sampling and degradation randomness live in the data pipeline
    cfg = self.config
    inputs, target = self._inputs(batch)
    x_hat, aux = self.model.apply({"params": params}, inputs)
    nll, metrics = self._nll(x_hat, target)
    codebook_loss, commitment_loss = vq_losses.codebook_and_commitment(aux["z_e"], aux["z_q"])
    vq = vq_losses.vq_loss(codebook_loss, commitment_loss, cfg.quantizer.beta,
                           cfg.quantizer.legacy)
    codebook = params["quantizer"]["codebook"]
    reg, reg_distance = vq_losses.codebook_regulariser(codebook, cfg.regulariser.mode,
                                                       cfg.regulariser.theta)
    metrics.update(
        nll=nll, vq_loss=vq, codebook_loss=codebook_loss, commitment_loss=commitment_loss,
        reg_loss=reg, reg_distance=reg_distance,
        d_C=jax.lax.stop_gradient(vq_losses.minimal_distance(codebook)),
        psnr=jnp.mean(image_metrics.psnr(to_unit_range(x_hat), to_unit_range(target),
                                         data_range=1.0)),
        **vq_losses.codebook_stats(aux["indices"], cfg.model.num_codes))
    total = nll + cfg.loss.codebook_weight * vq + cfg.regulariser.weight * reg
    return adversarial.GeneratorOutput(fake=x_hat, real=target, loss=total, metrics=metrics,
                                       reference_loss=nll)

  # ------------------------------------------------------------------------------------- steps

  def loss_fn(self, params: Any, model_state: Any, batch: dict[str, jax.Array], rng: jax.Array):
    """Without the discriminator (`loss.disc_weight` = 0)."""
    out = self._generate(params, model_state, batch, rng)
    return out.loss, (out.metrics, None)

  def train_step(self, state: State, batch: dict[str, jax.Array],
                 rng: jax.Array):
    if not self.use_gan:
      return super().train_step(state, batch, rng)
    loss = self.config.loss
    player = adversarial.Discriminator(self._logits, loss=loss.disc_loss,
                                       g_weight=loss.disc_weight, start=loss.disc_start,
                                       adaptive=True)
    factor = gan_losses.disc_factor(state.step, loss.disc_start)
    state, metrics = adversarial.adversarial_step(
        state, self._generate, {"patchgan": player}, batch, rng,
        adaptive_layer=lambda p: p["decoder"]["conv_out"]["kernel"])
    metrics = {GAN_METRICS.get(k, k): v for k, v in metrics.items()
               if "/" not in k or k in GAN_METRICS}
    return state, {**metrics, "disc_factor": factor}

  def reconstruct(self, params: Any, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """uint8 [B, H, W, 3] -> (reconstruction in [0, 1] [B, H, W, 3], code indices [B, h, w])."""
    x_hat, aux = self.model.apply({"params": params}, to_model_range(images))
    return to_unit_range(x_hat), aux["indices"]

  def eval_step(self, state: State, batch: dict[str, jax.Array], rng: jax.Array):
    del rng
    params = state.eval_params
    recon, indices = self.reconstruct(params, batch["image"])
    target = batch["image"].astype(jnp.float32) / 255.0
    w = reduce.example_weights(batch, target.shape[0])
    mean = lambda per_example: reduce.weighted_mean(per_example, w)
    # L2 in the model's [-1, 1] range, like the training loss.
    l2 = mean(4.0 * jnp.mean(jnp.square(recon - target), axis=(1, 2, 3)))
    return {"psnr": mean(image_metrics.psnr(recon, target, data_range=1.0)), "l2": l2,
            "d_C": vq_losses.minimal_distance(params["quantizer"]["codebook"]),
            **vq_losses.codebook_stats(indices, self.config.model.num_codes, w),
            "eval_weight": jnp.sum(w)}

  # -------------------------------------------------------------------------------------- data

  def _identities(self) -> tuple[str, ...]:
    names = parse_identities(self.config.data.identities)
    if not names:
      raise ValueError("SOVQAE trains per identity: set data.identities (e.g. "
                       "--config.data.identities=id01)")
    return names

  def _degradations(self) -> frames_pipeline.Degradations | None:
    return frames_pipeline.Degradations() if self.config.data.degrade else None

  def train_iterator(self, batch_size: int, shard_index: int, shard_count: int):
    d = self.config.data
    return frames_pipeline.make_frames_iterator(
        d.root, batch_size=batch_size, shard_index=shard_index, shard_count=shard_count,
        seed=self.config.seed, num_workers=d.num_workers, split="train", image_size=d.image_size,
        degradations=self._degradations(), identities=self._identities())

  def eval_batches(self, batch_size: int, shard_index: int, shard_count: int):
    return frames_pipeline.image_eval_batches(self.config.data, batch_size, shard_index,
                                              shard_count, self._identities())

  # --------------------------------------------------------------------------- images, bench

  def images(self, state: State, batch: dict[str, jax.Array], rng: jax.Array):
    """input | reconstruction (| clean target when inputs are degraded), [N, H, k W, 3]."""
    inputs = batch["degraded" if self.config.data.degrade else "image"][:8]
    recon, _ = self.reconstruct(state.eval_params, inputs)
    panels = [inputs.astype(jnp.float32) / 255.0, recon]
    if self.config.data.degrade:
      panels.append(batch["image"][:8].astype(jnp.float32) / 255.0)
    return {"reconstruction": jnp.concatenate(panels, axis=2)}

  def inference(self, state: State) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    size = self.config.data.image_size
    images = jnp.zeros((self.config.batch_size, size, size, 3), jnp.uint8)
    return jax.jit(self.reconstruct), (state.eval_params, images)
