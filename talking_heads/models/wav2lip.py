"""Wav2Lip's generator and visual-quality discriminator (Wav2Lip `models/wav2lip.py`).

Dimensions: B batch, T frames per window (5 in training, folded into the batch), N = B*T,
S face size (96 published; any multiple of 32), M mel bins (80), F mel frames per window (16). NHWC.

Generator (weights `wav2lip.pth` / `wav2lip_gan.pth`):
  mels  [B, T, 80, 16, 1] or [N, 80, 16, 1]   one mel window per frame
  faces [B, T, S, S, 6] or [N, S, S, 6]       channels 0-2 target frame with rows S/2..S-1 zeroed,
                                              3-5 a reference frame; BGR / 255 for the
                                              published weights
  -> frames [B, T, S, S, 3] or [N, S, S, 3] in [0, 1].
A face encoder (7 blocks, 96 -> 1) keeps every block's output; the decoder starts from the audio
embedding and after each block concatenates the matching encoder output (deepest first).

Other sizes and widths (`image_size`, `width`; the defaults give exactly the published parameter
tree): five stride-2 stages take S to S/32, so the encoder's last 3x3 pad-0 conv becomes an
(S/32)x(S/32) conv that still ends at 1x1, the decoder's first transposed conv an (S/32)x(S/32)
stride-1 one (1 -> S/32), and the discriminator's last 3x3 pad-0 conv likewise. `width` multiplies
every layer's channels (at least 8) except the 3-channel output and the discriminator's logit.
The decoder's transposed convs run through `conv_transpose` (the variables and outputs of
`conv_blocks.ConvTransposeBlock`, with kernel gradients XLA:CPU computes several times faster).

Visual-quality discriminator (`visual_quality_disc.pth`):
  faces [B, T, S, S, 3] or [N, S, S, 3] full faces; it scores their lower halves
  -> [N, 1] probability of "real" (or logits), frames in batch-major order (b * T + t).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talking_heads.models import conv_blocks
from talking_heads.models.conv_blocks import ConvSpec
from talking_heads.models.conv_blocks import ConvTransposeSpec
from talking_heads.models.conv_blocks import res

FACE_SIZE = 96
SIZE_STEP = 32   # five stride-2 stages reduce a face by this factor
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
DiscSpec = tuple[int, int, int | tuple[int, int], int]   # features, kernel, stride, padding
DISC_BLOCKS: tuple[tuple[DiscSpec, ...], ...] = (
    ((32, 7, 1, 3),),
    ((64, 5, (1, 2), 2), (64, 5, 1, 2)),
    ((128, 5, 2, 2), (128, 5, 1, 2)),
    ((256, 5, 2, 2), (256, 5, 1, 2)),
    ((512, 3, 2, 1), (512, 3, 1, 1)),
    ((512, 3, 2, 1), (512, 3, 1, 1)),
    ((512, 3, 1, 0), (512, 1, 1, 0)),
)


def bottleneck_kernel(image_size: int) -> int:
  """Kernel of the convs that take S/32 to 1 (and back): 3 at the published 96 px.

  Raises:
    ValueError: `image_size` is not a positive multiple of 32.
  """
  if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < SIZE_STEP \
      or image_size % SIZE_STEP:
    raise ValueError(f"Wav2Lip image_size must be a positive multiple of {SIZE_STEP} "
                     f"(96 published), got {image_size!r}")
  return image_size // SIZE_STEP


def _scaled(features: int, width: float) -> int:
  """One layer's width under `conv_blocks.scale_widths`' rule."""
  return conv_blocks.scale_widths((ConvSpec(features, 1),), width)[0].features


def face_encoder_blocks(image_size: int = FACE_SIZE, width: float = 1.0
                        ) -> tuple[tuple[ConvSpec, ...], ...]:
  """FACE_ENCODER_BLOCKS for faces of `image_size` with channels scaled by `width`."""
  k = bottleneck_kernel(image_size)
  *body, last = FACE_ENCODER_BLOCKS
  blocks = (*body, (last[0]._replace(kernel=k), *last[1:]))
  return tuple(conv_blocks.scale_widths(b, width) for b in blocks)


def face_decoder_blocks(image_size: int = FACE_SIZE, width: float = 1.0
                        ) -> tuple[tuple[ConvSpec | ConvTransposeSpec, ...], ...]:
  """FACE_DECODER_BLOCKS for faces of `image_size` with channels scaled by `width`."""
  k = bottleneck_kernel(image_size)
  first, up, *rest = FACE_DECODER_BLOCKS
  blocks = (first, (up[0]._replace(kernel=k), *up[1:]), *rest)
  return tuple(conv_blocks.scale_widths(b, width) for b in blocks)


def disc_blocks(image_size: int = FACE_SIZE, width: float = 1.0
                ) -> tuple[tuple[DiscSpec, ...], ...]:
  """DISC_BLOCKS for faces of `image_size` with channels scaled by `width`."""
  k = bottleneck_kernel(image_size)
  *body, last = DISC_BLOCKS
  blocks = (*body, ((last[0][0], k, *last[0][2:]), *last[1:]))
  return tuple(tuple((_scaled(f, width), *rest) for f, *rest in block) for block in blocks)


def conv_transpose(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
                   padding: tuple[int, int], output_padding: tuple[int, int]) -> jax.Array:
  """PyTorch's ConvTranspose2d (no bias) as one stride-1 conv over the input's phases.

  `kernel` [kh, kw, C, D] is applied as a forward kernel to the stride-dilated input, as in
  `conv_blocks.ConvTransposeBlock` (same variables, same outputs). Output pixel s*i + a (phase a)
  only meets the taps t with (a + t - lo) % s == 0, lo = k - 1 - padding, each reading input
  pixel i + (a + t - lo) // s; so every phase is an ordinary conv of the undilated input, and all
  s*s phases are one conv with s*s*D output channels, interleaved afterwards. XLA:CPU computes
  the kernel gradient of this about 7x faster than that of the lhs-dilated conv behind
  `nn.ConvTranspose` (3.1 s -> 0.4 s for a 48 -> 96 px decoder layer at batch 80).

  Args:
    x: [B, H, W, C].
    kernel: [kh, kw, C, D].
    strides, padding, output_padding: PyTorch's arguments per spatial axis.

  Returns:
    [B, H', W', D], H' = (H - 1) * sh - 2 * ph + kh + oh (likewise W').
  """
  tables, pads, sizes = [], [], []
  for n, k, s, p, op in zip(x.shape[1:3], kernel.shape[:2], strides, padding, output_padding):
    lo = k - 1 - p
    size = (n - 1) * s - 2 * p + k + op
    taps = [(a, t, (a + t - lo) // s) for a in range(s) for t in range(k) if (a + t - lo) % s == 0]
    first, last = min(m for _, _, m in taps), max(m for _, _, m in taps)
    rows = -(-size // s)
    # table[m - first, a] = tap t read by phase a at input offset m (k: no tap, a zero kernel).
    table = np.full((last - first + 1, s), k)
    for a, t, m in taps:
      table[m - first, a] = t
    tables.append(table)
    pads.append((-first, rows - 1 + last - (n - 1)))
    sizes.append((rows, size))
  (th, tw), ((rows, height), (cols, width)) = tables, sizes
  sh, sw = strides
  b, c, d = x.shape[0], kernel.shape[2], kernel.shape[3]
  padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
  phases = padded[th[:, None, :, None], tw[None, :, None, :]]          # [Mh, Mw, sh, sw, C, D]
  phases = phases.transpose(0, 1, 4, 2, 3, 5).reshape(*phases.shape[:2], c, sh * sw * d)
  y = jax.lax.conv_general_dilated(x, phases.astype(x.dtype), (1, 1), pads,
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  y = y.reshape(b, rows, cols, sh, sw, d).transpose(0, 1, 3, 2, 4, 5)  # [B, rows, sh, cols, sw, D]
  return y.reshape(b, rows * sh, cols * sw, d)[:, :height, :width]


class _ConvTransposeLayer(nn.Module):
  """`conv_transpose` with a bias; variables named and initialised as `nn.ConvTranspose`'s."""
  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int]
  padding: tuple[int, int]
  output_padding: tuple[int, int]
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (*self.kernel_size, x.shape[-1], self.features), self.param_dtype)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), self.param_dtype)
    y = conv_transpose(x.astype(self.dtype), kernel.astype(self.dtype), self.strides,
                       self.padding, self.output_padding)
    return y + bias.astype(self.dtype)


class ConvTransposeBlock(nn.Module):
  """`conv_blocks.ConvTransposeBlock` (same variables and outputs) through `conv_transpose`.

  The generator's decoder trains with this one: its kernel gradients are several times cheaper
  on CPU (see `conv_transpose`).
  """
  features: int
  kernel_size: conv_blocks.IntPair
  strides: conv_blocks.IntPair = 1
  padding: conv_blocks.IntPair = 0
  output_padding: conv_blocks.IntPair = 0
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, use_running_average: bool) -> jax.Array:
    pair = conv_blocks.pair
    y = _ConvTransposeLayer(self.features, pair(self.kernel_size), pair(self.strides),
                            pair(self.padding), pair(self.output_padding), dtype=self.dtype,
                            param_dtype=self.param_dtype, name="conv")(x)
    y = conv_blocks.batch_norm(use_running_average, self.param_dtype, "bn")(y).astype(self.dtype)
    return nn.relu(y)                                                 # [B, H', W', D]


def _blocks(specs: tuple[ConvSpec | ConvTransposeSpec, ...], dtype: jnp.dtype,
            param_dtype: jnp.dtype) -> list[nn.Module]:
  """`conv_blocks.conv_blocks` with this module's `ConvTransposeBlock` for transposed convs."""
  return [ConvTransposeBlock(*s, dtype=dtype, param_dtype=param_dtype)
          if isinstance(s, ConvTransposeSpec)
          else conv_blocks.ConvBlock(*s, dtype=dtype, param_dtype=param_dtype) for s in specs]


def _fold(x: jax.Array, frame_rank: int, expected: tuple[int, ...],
          what: str) -> tuple[jax.Array, tuple[int, ...]]:
  """[B, T, *frame] or [N, *frame] -> ([N, *frame], leading dims), checking the frame shape."""
  if x.ndim not in (frame_rank + 1, frame_rank + 2) or tuple(x.shape[-frame_rank:]) != expected:
    raise ValueError(f"{what}: expected [B, T, {', '.join(map(str, expected))}] or "
                     f"[N, {', '.join(map(str, expected))}], got {tuple(x.shape)}")
  lead = tuple(x.shape[:-frame_rank])
  return x.reshape((-1, *expected)), lead


class Wav2LipGenerator(nn.Module):
  """Wav2Lip's generator (the `Wav2Lip` class); see the module docstring for inputs and outputs.

  Attributes:
    width: channel multiplier of every layer (1.0: the published network).
    image_size: S, a multiple of 32 (96: the published network).
  """
  width: float = 1.0
  image_size: int = FACE_SIZE
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  def setup(self):
    blocks = lambda specs: _blocks(specs, self.dtype, self.param_dtype)
    self.face_encoder_blocks = [blocks(b) for b in face_encoder_blocks(self.image_size, self.width)]
    self.audio_encoder = blocks(conv_blocks.scale_widths(AUDIO_ENCODER, self.width))
    self.face_decoder_blocks = [blocks(b) for b in face_decoder_blocks(self.image_size, self.width)]
    self.output_block = [
        conv_blocks.ConvBlock(_scaled(32, self.width), 3, 1, 1, dtype=self.dtype,
                              param_dtype=self.param_dtype),
        nn.Conv(3, (1, 1), dtype=self.dtype, param_dtype=self.param_dtype),
    ]

  def __call__(self, mels: jax.Array, faces: jax.Array, *, use_running_average: bool) -> jax.Array:
    s = self.image_size
    mels, mel_lead = _fold(mels, 3, (MEL_BINS, MEL_STEP, 1), "Wav2LipGenerator mels")
    faces, lead = _fold(faces, 3, (s, s, 6), "Wav2LipGenerator faces")
    if mel_lead != lead:
      raise ValueError(f"Wav2LipGenerator: mels lead dims {mel_lead} != faces lead dims {lead}")
    run = lambda blocks, x: conv_blocks.apply_blocks(blocks, x, use_running_average)

    x = faces.astype(self.dtype)
    feats = []
    for blocks in self.face_encoder_blocks:
      x = run(blocks, x)
      feats.append(x)                                          # [N, S .. 1, S .. 1, 16 .. 512]

    x = run(self.audio_encoder, mels.astype(self.dtype))      # [N, 1, 1, 512]
    for blocks, skip in zip(self.face_decoder_blocks, reversed(feats)):
      x = jnp.concatenate([run(blocks, x), skip], axis=-1)    # [N, s, s, 1024 .. 80]

    x = self.output_block[0](x, use_running_average=use_running_average)   # [N, S, S, 32]
    x = nn.sigmoid(self.output_block[1](x).astype(jnp.float32))           # [N, S, S, 3]
    return x.reshape((*lead, s, s, 3))


class Wav2LipDiscriminator(nn.Module):
  """Wav2Lip's visual-quality discriminator (`Wav2Lip_disc_qual`); see the module docstring.

  Attributes:
    width: channel multiplier of every layer but the logit (1.0: the published network).
    image_size: S, a multiple of 32 (96: the published network).
  """
  width: float = 1.0
  image_size: int = FACE_SIZE
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  def setup(self):
    self.face_encoder_blocks = [
        [conv_blocks.PlainConvBlock(*spec, dtype=self.dtype, param_dtype=self.param_dtype)
         for spec in block] for block in disc_blocks(self.image_size, self.width)]
    self.binary_pred = nn.Conv(1, (1, 1), dtype=self.dtype, param_dtype=self.param_dtype)

  def __call__(self, faces: jax.Array, *, return_logits: bool = False) -> jax.Array:
    """faces [B, T, S, S, 3] or [N, S, S, 3] -> [N, 1] P(real), or logits if `return_logits`."""
    s = self.image_size
    x, _ = _fold(faces, 3, (s, s, 3), "Wav2LipDiscriminator faces")
    x = x[:, s // 2:].astype(self.dtype)                      # [N, S/2, S, 3]
    for block in self.face_encoder_blocks:
      for layer in block:
        x = layer(x)
    logits = self.binary_pred(x).astype(jnp.float32).reshape(x.shape[0], 1)  # [N, 1]
    return logits if return_logits else nn.sigmoid(logits)
