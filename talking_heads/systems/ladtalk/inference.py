"""LaDTalk and Wav2Lip inference: Wav2Lip faces -> upscale -> SOVQAE latent denoising -> paste-back.

Dimension legend: T output frames, S Wav2Lip face size (96), R SOVQAE image size (256 in the
paper), h = R / f latent size.

Wav2Lip (LaDTalk's base model, and the baseline of its tables): the crops of
`video_inference.prepare` at the generator's S, with rows S/2..S-1 zeroed (channels 0-2) and the
same crop unmasked as reference (3-5), / 255, BGR when the generator was trained on BGR (the
published weights are); output rounded to uint8 (the reference truncates). The generator comes
from a trained `wav2lip` workdir or the public `wav2lip.pth` / `wav2lip_gan.pth`.

LaDTalk §3 and App. D: the base model's low-quality faces are upscaled to the SOVQAE resolution
("we upscale them to 256x256"; the interpolation is not stated: we use bicubic, OpenCV's
INTER_CUBIC, a = -0.75, on the uint8 faces) and passed through the identity's SOVQAE:
encode -> nearest codes -> decode, which maps blurry and noisy inputs back onto codes learnt
from that identity's sharp frames. The decoded faces (from [-1, 1], clipped, to uint8) are
pasted back into the original frames at the boxes Wav2Lip's crops were cut from
(`video_inference.stream` / `run` with the two face steps, `ladtalk_steps`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable

import cv2
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talking_heads.models import vq as vq_lib
from talking_heads.models import wav2lip as wav2lip_lib
from talking_heads.pretrained import wav2lip as wav2lip_convert
from talking_heads.systems import api
from talking_heads.systems import video_inference
from talking_heads.systems.images import to_model_range, to_unit_range
from third_party import weights as weights_lib

PathLike = video_inference.PathLike


@dataclasses.dataclass(frozen=True)
class Wav2LipModel:
  """A Wav2Lip generator ready for inference.

  Attributes:
    module: a `Wav2LipGenerator` (its `image_size` field, when it has one, gives S).
    variables: {"params": ..., "batch_stats": ...}.
    bgr: the generator takes and returns BGR channels (True for the published weights).
    source: where the weights come from, for logs and reports.
  """
  module: nn.Module
  variables: Any
  bgr: bool
  source: str

  @property
  def image_size(self) -> int:
    return int(getattr(self.module, "image_size", wav2lip_lib.FACE_SIZE))


def load_wav2lip(workdir: PathLike | None = None, checkpoint: PathLike | None = None,
                 step: int | None = None) -> Wav2LipModel:
  """The Wav2Lip generator from a trained `wav2lip` workdir (its newest checkpoint, or `step`) or
  the public checkpoint (one of them).

  Raises:
    ValueError: neither or both given, or the workdir trained another stage.
    weights_lib.MissingWeightsError: the checkpoint file does not exist.
    FileNotFoundError: the workdir has no config or checkpoint.
  """
  if (workdir is None) == (checkpoint is None):
    raise ValueError("the Wav2Lip generator needs exactly one of --wav2lip_workdir (a trained "
                     "workdir) and --wav2lip_checkpoint (wav2lip.pth / wav2lip_gan.pth)")
  if workdir is not None:
    module, variables, config, source = video_inference.restore_network(
        workdir, wav2lip_lib.Wav2LipGenerator, "wav2lip", step)
    return Wav2LipModel(module, variables, bgr=bool(config.data.get("bgr", True)), source=source)
  if not os.path.isfile(checkpoint):
    entry = weights_lib.WEIGHTS["wav2lip_gan"]
    raise weights_lib.MissingWeightsError(
        f"missing {checkpoint}: expected Wav2Lip's public generator checkpoint (wav2lip.pth or "
        f"{entry.filename}); get it from {entry.source_url}")
  # The published generator takes BGR faces (it was trained on cv2-read frames).
  return Wav2LipModel(wav2lip_lib.Wav2LipGenerator(), wav2lip_convert.load_generator(checkpoint),
                      bgr=True, source=os.fspath(checkpoint))


@functools.lru_cache(maxsize=8)
def _generator_fn(module: nn.Module) -> Callable[..., jax.Array]:
  return jax.jit(functools.partial(module.apply, use_running_average=True))


def generator_inputs(crops: np.ndarray, bgr: bool) -> np.ndarray:
  """Face crops uint8 [B, S, S, 3] RGB -> generator input float32 [B, S, S, 6]: the crop with
  its lower half zeroed, then the crop itself as reference; channels flipped to BGR if `bgr`."""
  reference = crops.astype(np.float32) / 255.0
  if bgr:
    reference = reference[..., ::-1]
  masked = reference.copy()
  masked[:, crops.shape[1] // 2:] = 0.0
  return np.concatenate([masked, reference], axis=-1)


def generate_faces(model: Wav2LipModel, inputs: video_inference.Inputs, batch_size: int = 16, *,
                   on_first_batch: Callable[[float], None] | None = None) -> np.ndarray:
  """Lip-synced faces [T, S, S, 3] RGB uint8, one per output frame (`on_first_batch`: see
  `batched`)."""
  if inputs.image_size != model.image_size:
    raise ValueError(f"crops are {inputs.image_size} px but the generator ({model.source}) takes "
                     f"{model.image_size} px")
  fn = _generator_fn(model.module)
  variables = jax.device_put(model.variables)   # once, not with every batch (no-op if there)

  def make_batch(index: np.ndarray) -> tuple[Any, ...]:
    mels = inputs.mel_chunks[index][..., None]                           # [B, 80, 16, 1]
    return variables, mels, generator_inputs(inputs.crops[inputs.order[index]], model.bgr)

  faces = video_inference.batched(fn, make_batch, inputs.num_frames, batch_size,
                                  on_first_batch=on_first_batch)        # [T, S, S, 3] in [0, 1]
  if model.bgr:
    faces = faces[..., ::-1]
  return np.clip(np.rint(faces * 255.0), 0, 255).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class SOVQAEModel:
  """A trained SOVQAE ready for inference.

  Attributes:
    module: a `models.vq.SOVQAE`.
    variables: {"params": ...}.
    image_size: R, the square size it was trained on.
    source: where the weights come from.
  """
  module: nn.Module
  variables: Any
  image_size: int
  source: str


def load_sovqae(workdir: PathLike, step: int | None = None) -> SOVQAEModel:
  """The SOVQAE of a trained `sovqae` stage workdir (newest checkpoint, or `step`).

  Raises:
    FileNotFoundError: not a workdir, or no checkpoint in it.
    ValueError: the workdir trained another stage.
  """
  module, variables, config, source = video_inference.restore_network(
      workdir, vq_lib.SOVQAE, "sovqae", step)
  return SOVQAEModel(module, variables, int(config.data.image_size), source)


def upscale(faces: np.ndarray, size: int) -> np.ndarray:
  """uint8 faces [T, S, S, 3] -> [T, size, size, 3], bicubic (INTER_AREA when shrinking)."""
  if faces.shape[1] == size:
    return faces
  interpolation = cv2.INTER_CUBIC if size > faces.shape[1] else cv2.INTER_AREA
  return np.stack([cv2.resize(f, (size, size), interpolation=interpolation) for f in faces])


@functools.lru_cache(maxsize=8)
def _reconstruct_fn(module: nn.Module) -> Callable[..., tuple[jax.Array, jax.Array]]:
  def fn(variables: Any, faces: jax.Array) -> tuple[jax.Array, jax.Array]:
    x_hat, aux = module.apply(variables, to_model_range(faces))   # [B, R, R, 3]
    out = jnp.round(to_unit_range(x_hat) * 255.0).astype(jnp.uint8)
    return out, aux["indices"]                                            # [B, h, w]
  return jax.jit(fn)


def denoise_faces(model: SOVQAEModel, faces: np.ndarray, batch_size: int = 16, *,
                  return_indices: bool = False,
                  on_first_batch: Callable[[float], None] | None = None
                  ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
  """Faces uint8 [T, S, S, 3] -> SOVQAE reconstructions uint8 [T, R, R, 3] (and code indices
  [T, h, w] with `return_indices`); `on_first_batch` as in `video_inference.batched`."""
  faces = upscale(np.asarray(faces, np.uint8), model.image_size)
  fn = _reconstruct_fn(model.module)
  variables = jax.device_put(model.variables)
  out, indices = video_inference.batched(fn, lambda index: (variables, faces[index]),
                                         faces.shape[0], batch_size, on_first_batch=on_first_batch)
  return (out, indices) if return_indices else out


def wav2lip_steps(model: Wav2LipModel, options: video_inference.Options
                  ) -> list[tuple[str, video_inference.FaceStep]]:
  """Wav2Lip's face step for `video_inference.stream` / `run` (its weights put on the device
  once, not with every chunk)."""
  model = dataclasses.replace(model, variables=jax.device_put(model.variables))
  return [("wav2lip", functools.partial(generate_faces, model, batch_size=options.batch_size))]


def ladtalk_steps(wav2lip: Wav2LipModel, sovqae: SOVQAEModel, options: video_inference.Options
                  ) -> list[tuple[str, video_inference.FaceStep]]:
  """LaDTalk's face steps: Wav2Lip, then the SOVQAE's latent denoising."""
  sovqae = dataclasses.replace(sovqae, variables=jax.device_put(sovqae.variables))
  refine = functools.partial(denoise_faces, sovqae, batch_size=options.batch_size)
  return [*wav2lip_steps(wav2lip, options), ("sovqae", refine)]


def run_wav2lip(model: Wav2LipModel, inputs: video_inference.Inputs,
                options: video_inference.Options = video_inference.Options()
                ) -> video_inference.Result:
  """Wav2Lip on prepared inputs (`video_inference.prepare` at `model.image_size`), in memory."""
  return video_inference.run(inputs, wav2lip_steps(model, options), options)


def run_ladtalk(wav2lip: Wav2LipModel, sovqae: SOVQAEModel, inputs: video_inference.Inputs,
                options: video_inference.Options = video_inference.Options()
                ) -> video_inference.Result:
  """LaDTalk on prepared inputs (`video_inference.prepare` at `wav2lip.image_size`), in memory:
  `Result.faces` are the SOVQAE outputs [T, R, R, 3], `Result.stage_faces["wav2lip"]` the
  Wav2Lip faces [T, S, S, 3] before it."""
  return video_inference.run(inputs, ladtalk_steps(wav2lip, sovqae, options), options)


# ------------------------------------------------------------------------------ entries


def load_wav2lip_generator(weights: dict[str, str | None],
                           options: dict[str, str]) -> api.LoadedGenerator:
  """The `wav2lip` inference entry (`SYSTEM.generators`)."""
  del options
  model = load_wav2lip(weights.get("wav2lip_workdir"), weights.get("wav2lip_checkpoint"))

  def generate(audio: str, video: str | None,
               video_options: video_inference.Options) -> video_inference.Stream:
    inputs = video_inference.prepare(audio, video, model.image_size, video_options)
    return video_inference.stream(inputs, wav2lip_steps(model, video_options), video_options)

  return api.LoadedGenerator(generate, {"wav2lip": model.source})


def load_ladtalk_generator(weights: dict[str, str | None],
                           options: dict[str, str]) -> api.LoadedGenerator:
  """The `ladtalk` inference entry (`SYSTEM.generators`)."""
  del options
  if not weights.get("sovqae_workdir"):
    raise ValueError("--system=ladtalk needs --sovqae_workdir (the identity's trained SOVQAE)")
  wav2lip = load_wav2lip(weights.get("wav2lip_workdir"), weights.get("wav2lip_checkpoint"))
  sovqae = load_sovqae(weights["sovqae_workdir"])

  def generate(audio: str, video: str | None,
               video_options: video_inference.Options) -> video_inference.Stream:
    inputs = video_inference.prepare(audio, video, wav2lip.image_size, video_options)
    return video_inference.stream(inputs, ladtalk_steps(wav2lip, sovqae, video_options),
                                  video_options)

  return api.LoadedGenerator(generate, {"wav2lip": wav2lip.source, "sovqae": sovqae.source})
