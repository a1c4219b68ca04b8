"""Wav2Lip's generator and visual-quality discriminator (Wav2Lip `models/wav2lip.py`).

Dimensions: B batch, T frames per window (5 in training, folded into the batch), N = B*T,
S face size (96), M mel bins (80), F mel frames per window (16). NHWC.

Generator (weights `wav2lip.pth` / `wav2lip_gan.pth`):
  mels  [B, T, 80, 16, 1] or [N, 80, 16, 1]   one mel window per frame
  faces [B, T, 96, 96, 6] or [N, 96, 96, 6]   channels 0-2 target frame with rows 48..95 zeroed,
                                              3-5 a reference frame; BGR / 255 for the
                                              published weights
  -> frames [B, T, 96, 96, 3] or [N, 96, 96, 3] in [0, 1].
A face encoder (7 blocks, 96 -> 1) keeps every block's output; the decoder starts from the audio
embedding and after each block concatenates the matching encoder output (deepest first).

Visual-quality discriminator (`visual_quality_disc.pth`):
  faces [B, T, 96, 96, 3] or [N, 96, 96, 3] full faces; it scores their lower halves
  -> [N, 1] probability of "real" (or logits), frames in batch-major order (b * T + t).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from talking_heads.models import conv_blocks
from talking_heads.models.conv_blocks import ConvSpec
from talking_heads.models.conv_blocks import ConvTransposeSpec
from talking_heads.models.conv_blocks import res

FACE_SIZE = 96
MEL_BINS = 80
MEL_STEP = 16

# Wav2Lip.face_encoder_blocks: output sizes 96, 48, 24, 12, 6, 3, 1.
FACE_ENCODER_BLOCKS: tuple[tuple[ConvSpec, ...], ...] = (
    (ConvSpec(16, 7, 1, 3),),
    (ConvSpec(32, 3, 2, 1), *res(32, 2)),
    (ConvSpec(64, 3, 2, 1), *res(64, 3)),
    (ConvSpec(128, 3, 2, 1), *res(128, 2)),
    (ConvSpec(256, 3, 2, 1), *res(256, 2)),
    (ConvSpec(512, 3, 2, 1), *res(512, 1)),
    (ConvSpec(512, 3, 1, 0), ConvSpec(512, 1, 1, 0)),
)

# Wav2Lip.audio_encoder: as SyncNet_color's but one residual block at 256; 80x16 -> 1x1.
AUDIO_ENCODER: tuple[ConvSpec, ...] = (
    ConvSpec(32, 3, 1, 1), *res(32, 2),
    ConvSpec(64, 3, (3, 1), 1), *res(64, 2),
    ConvSpec(128, 3, 3, 1), *res(128, 2),
    ConvSpec(256, 3, (3, 2), 1), *res(256, 1),
    ConvSpec(512, 3, 1, 0),
    ConvSpec(512, 1, 1, 0),
)

# Wav2Lip.face_decoder_blocks: output sizes 1, 3, 6, 12, 24, 48, 96; each output is then
# concatenated with the encoder output of the same size (widths 1024, 1024, 768, 512, 320, 160, 80).
FACE_DECODER_BLOCKS: tuple[tuple[ConvSpec | ConvTransposeSpec, ...], ...] = (
    (ConvSpec(512, 1, 1, 0),),
    (ConvTransposeSpec(512, 3, 1, 0, 0), *res(512, 1)),
    (ConvTransposeSpec(512, 3, 2, 1, 1), *res(512, 2)),
    (ConvTransposeSpec(384, 3, 2, 1, 1), *res(384, 2)),
    (ConvTransposeSpec(256, 3, 2, 1, 1), *res(256, 2)),
    (ConvTransposeSpec(128, 3, 2, 1, 1), *res(128, 2)),
    (ConvTransposeSpec(64, 3, 2, 1, 1), *res(64, 2)),
)

# Wav2Lip_disc_qual.face_encoder_blocks as (features, kernel, stride, padding) of plain
# conv + LeakyReLU(0.01) layers; a 48x96 lower half goes to 48, 48, 24, 12, 6, 3, 1.
DISC_BLOCKS: tuple[tuple[tuple[int, int, int | tuple[int, int], int], ...], ...] = (
    ((32, 7, 1, 3),),
    ((64, 5, (1, 2), 2), (64, 5, 1, 2)),
    ((128, 5, 2, 2), (128, 5, 1, 2)),
    ((256, 5, 2, 2), (256, 5, 1, 2)),
    ((512, 3, 2, 1), (512, 3, 1, 1)),
    ((512, 3, 2, 1), (512, 3, 1, 1)),
    ((512, 3, 1, 0), (512, 1, 1, 0)),
)


def _fold(x: jax.Array, frame_rank: int, expected: tuple[int, ...],
          what: str) -> tuple[jax.Array, tuple[int, ...]]:
  """[B, T, *frame] or [N, *frame] -> ([N, *frame], leading dims), checking the frame shape."""
  if x.ndim not in (frame_rank + 1, frame_rank + 2) or tuple(x.shape[-frame_rank:]) != expected:
    raise ValueError(f"{what}: expected [B, T, {', '.join(map(str, expected))}] or "
                     f"[N, {', '.join(map(str, expected))}], got {tuple(x.shape)}")
  lead = tuple(x.shape[:-frame_rank])
  return x.reshape((-1, *expected)), lead


class Wav2LipGenerator(nn.Module):
  """Wav2Lip's generator (the `Wav2Lip` class); see the module docstring for inputs and outputs."""
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  def setup(self):
    blocks = lambda specs: conv_blocks.conv_blocks(specs, self.dtype, self.param_dtype)
    self.face_encoder_blocks = [blocks(b) for b in FACE_ENCODER_BLOCKS]
    self.audio_encoder = blocks(AUDIO_ENCODER)
    self.face_decoder_blocks = [blocks(b) for b in FACE_DECODER_BLOCKS]
    self.output_block = [
        conv_blocks.ConvBlock(32, 3, 1, 1, dtype=self.dtype, param_dtype=self.param_dtype),
        nn.Conv(3, (1, 1), dtype=self.dtype, param_dtype=self.param_dtype),
    ]

  def __call__(self, mels: jax.Array, faces: jax.Array, *, use_running_average: bool) -> jax.Array:
    mels, mel_lead = _fold(mels, 3, (MEL_BINS, MEL_STEP, 1), "Wav2LipGenerator mels")
    faces, lead = _fold(faces, 3, (FACE_SIZE, FACE_SIZE, 6), "Wav2LipGenerator faces")
    if mel_lead != lead:
      raise ValueError(f"Wav2LipGenerator: mels lead dims {mel_lead} != faces lead dims {lead}")
    run = lambda blocks, x: conv_blocks.apply_blocks(blocks, x, use_running_average)

    x = faces.astype(self.dtype)
    feats = []
    for blocks in self.face_encoder_blocks:
      x = run(blocks, x)
      feats.append(x)                                          # [N, 96 .. 1, 96 .. 1, 16 .. 512]

    x = run(self.audio_encoder, mels.astype(self.dtype))      # [N, 1, 1, 512]
    for blocks, skip in zip(self.face_decoder_blocks, reversed(feats)):
      x = jnp.concatenate([run(blocks, x), skip], axis=-1)    # [N, s, s, 1024 .. 80]

    x = self.output_block[0](x, use_running_average=use_running_average)   # [N, 96, 96, 32]
    x = nn.sigmoid(self.output_block[1](x).astype(jnp.float32))           # [N, 96, 96, 3]
    return x.reshape((*lead, FACE_SIZE, FACE_SIZE, 3))


class Wav2LipDiscriminator(nn.Module):
  """Wav2Lip's visual-quality discriminator (`Wav2Lip_disc_qual`); see the module docstring."""
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  def setup(self):
    self.face_encoder_blocks = [
        [conv_blocks.PlainConvBlock(*spec, dtype=self.dtype, param_dtype=self.param_dtype)
         for spec in block] for block in DISC_BLOCKS]
    self.binary_pred = nn.Conv(1, (1, 1), dtype=self.dtype, param_dtype=self.param_dtype)

  def __call__(self, faces: jax.Array, *, return_logits: bool = False) -> jax.Array:
    """faces [B, T, 96, 96, 3] or [N, 96, 96, 3] -> [N, 1] P(real), or logits if `return_logits`."""
    x, _ = _fold(faces, 3, (FACE_SIZE, FACE_SIZE, 3), "Wav2LipDiscriminator faces")
    x = x[:, FACE_SIZE // 2:].astype(self.dtype)              # [N, 48, 96, 3]
    for block in self.face_encoder_blocks:
      for layer in block:
        x = layer(x)
    logits = self.binary_pred(x).astype(jnp.float32).reshape(x.shape[0], 1)  # [N, 1]
    return logits if return_logits else nn.sigmoid(logits)
