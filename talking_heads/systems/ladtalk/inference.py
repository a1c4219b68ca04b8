"""LaDTalk inference: Wav2Lip faces -> upscale -> SOVQAE latent denoising -> paste-back -> mp4.

Dimension legend: T output frames, S Wav2Lip face size (96), R SOVQAE image size (256 in the
paper), h = R / f latent size.

LaDTalk §3 and App. D: the base model's low-quality faces are upscaled to the SOVQAE resolution
("we upscale them to 256x256"; the interpolation is not stated: we use bicubic, OpenCV's
INTER_CUBIC, a = -0.75, on the uint8 faces) and passed through the identity's SOVQAE:
encode -> nearest codes -> decode, which maps blurry and noisy inputs back onto codes learnt
from that identity's sharp frames. The decoded faces (from [-1, 1], clipped, to uint8) are
pasted back into the original frames with the Wav2Lip pipeline's feathered mask, at the same
boxes Wav2Lip's crops were cut from, and muxed with the audio. Everything before and after the
SOVQAE step is `wav2lip_pipeline` (its `run` with a `refine` step).
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
from talking_heads.systems import ladtalk
from talking_heads.systems import wav2lip_pipeline

PathLike = wav2lip_pipeline.PathLike


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


def load_sovqae_workdir(workdir: PathLike, step: int | None = None) -> SOVQAEModel:
  """The SOVQAE of a trained `sovqae` stage workdir (newest checkpoint, or `step`).

  Raises:
    FileNotFoundError: not a workdir, or no checkpoint in it.
    ValueError: the workdir's stage has no (or several) SOVQAE networks.
  """
  from talking_heads.training import restore  # pylint: disable=g-import-not-at-top
  workdir = os.fspath(workdir)
  stage, state, restored = restore.restore_stage(workdir, step)
  module = wav2lip_pipeline.find_module(stage, vq_lib.SOVQAE, workdir)
  variables = wav2lip_pipeline.generator_variables(stage, state)
  return SOVQAEModel(module, variables, int(stage.config.data.image_size),
                     source=f"{workdir} step {restored}")


def upscale(faces: np.ndarray, size: int) -> np.ndarray:
  """uint8 faces [T, S, S, 3] -> [T, size, size, 3], bicubic (INTER_AREA when shrinking)."""
  if faces.shape[1] == size:
    return faces
  interpolation = cv2.INTER_CUBIC if size > faces.shape[1] else cv2.INTER_AREA
  return np.stack([cv2.resize(f, (size, size), interpolation=interpolation) for f in faces])


@functools.lru_cache(maxsize=8)
def _reconstruct_fn(module: nn.Module) -> Callable[..., tuple[jax.Array, jax.Array]]:
  def fn(variables: Any, faces: jax.Array) -> tuple[jax.Array, jax.Array]:
    x_hat, aux = module.apply(variables, ladtalk.to_model_range(faces))   # [B, R, R, 3]
    out = jnp.round(ladtalk.to_unit_range(x_hat) * 255.0).astype(jnp.uint8)
    return out, aux["indices"]                                            # [B, h, w]
  return jax.jit(fn)


def denoise_faces(model: SOVQAEModel, faces: np.ndarray, batch_size: int = 16, *,
                  return_indices: bool = False,
                  on_first_batch: Callable[[float], None] | None = None
                  ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
  """Faces uint8 [T, S, S, 3] -> SOVQAE reconstructions uint8 [T, R, R, 3] (and code indices
  [T, h, w] with `return_indices`); `on_first_batch` as in `wav2lip_pipeline.batched`."""
  faces = upscale(np.asarray(faces, np.uint8), model.image_size)
  fn = _reconstruct_fn(model.module)
  variables = jax.device_put(model.variables)
  out, indices = wav2lip_pipeline.batched(fn, lambda index: (variables, faces[index]),
                                         faces.shape[0], batch_size, on_first_batch=on_first_batch)
  return (out, indices) if return_indices else out


def run(wav2lip: wav2lip_pipeline.Wav2LipModel, sovqae: SOVQAEModel,
        inputs: wav2lip_pipeline.Inputs,
        options: wav2lip_pipeline.Options = wav2lip_pipeline.Options()) -> wav2lip_pipeline.Result:
  """LaDTalk on prepared inputs (`wav2lip_pipeline.prepare` at `wav2lip.image_size`):
  `Result.faces` are the SOVQAE outputs [T, R, R, 3], `Result.stage_faces["wav2lip"]` the
  Wav2Lip faces [T, S, S, 3] before it."""
  refine = functools.partial(denoise_faces, sovqae, batch_size=options.batch_size)
  return wav2lip_pipeline.run(wav2lip, inputs, options, refine=refine, refine_name="sovqae")
