"""RADIO's grayscale sync discriminator S = (S_v, S_a) (§3.3, supp. A; spec
`shared/reference/systems/radio.md` §2.6).

Dimensions: B batch, N frames per window (5), H, W crop size (144 in the paper), M mel bins,
F mel frames per window (20 = the 5 frames at 100 mel frames/s), E embedding width (512).

  S_v  `nn.se_resnet.VisualEncoder`: the N grayscale frames stacked as channels [B, H, W, N] ->
       stem 7x7 stride 2 -> SE-ResNet stages (BatchNorm + ReLU) -> CBAM (channel and spatial
       attention "instead of self-attention", §2.6 / §8 item 6) -> global average pool -> FC E.
  S_a  `nn.se_resnet.SpeakerEncoder`: ResNetSE34L with SAP as in [8] (BatchNorm + ReLU, the
       voxceleb input instance norm) on the window's mel [B, M, F] -> FC E.
  p    the cosine similarity of the two embeddings made a probability for BCE (§8 item 5):
       "relu" (default; Wav2Lip's SyncNet, which RADIO's sync training follows): both
       embeddings pass a ReLU, so cos lies in [0, 1] and an off-sync pair needs only
       orthogonal embeddings; "shifted": p = (cos + 1) / 2 on the raw embeddings.
       Norms are floored at 1e-8, so an all-zero embedding gives p = 0 (relu) or 1/2 (shifted);
       the loss clamps p (spec §3).

Input (`sync_window`, spec §8 item 4): RADIO's faces are aligned crops, so the tight mouth crop
is a fixed box of every frame, rows [0.35 S, 0.85 S) and columns [0.25 S, 0.75 S) (`CROP_BOX`,
about brows to chin), resized bilinearly to H x W and made grayscale (`grayscale_window`,
ITU-R 601 luma). Slicing and resizing are differentiable, so the generator's sync loss reaches
its output; the sync stage trains on crops made by the same function.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from talking_heads.nn import se_resnet

Probability = Literal["relu", "shifted"]

PROBABILITIES = ("relu", "shifted")
LUMA = (0.299, 0.587, 0.114)
NORM_FLOOR = 1e-8
# (top, bottom, left, right) of the tight crop as fractions of the face size (spec §8 item 4).
CROP_BOX = (0.35, 0.85, 0.25, 0.75)


def grayscale_window(frames: jax.Array) -> jax.Array:
  """RGB frames [B, N, H, W, 3] -> luma with the frames as channels [B, H, W, N] (any range)."""
  if frames.ndim != 5 or frames.shape[-1] != 3:
    raise ValueError(f"grayscale_window: frames must be [B, N, H, W, 3], got {frames.shape}")
  gray = frames.astype(jnp.float32) @ jnp.asarray(LUMA, jnp.float32)   # [B, N, H, W]
  return gray.transpose(0, 2, 3, 1)


def crop_rows_cols(size: int, box: Sequence[float] = CROP_BOX) -> tuple[slice, slice]:
  """The rows and columns of `box` (fractions, module docstring) in an S = `size` face."""
  top, bottom, left, right = (int(round(f * size)) for f in box)
  if not 0 <= top < bottom <= size or not 0 <= left < right <= size:
    raise ValueError(f"sync crop box {tuple(box)} is empty or outside a {size} px face")
  return slice(top, bottom), slice(left, right)


def sync_window(frames: jax.Array, crop_size: int, box: Sequence[float] = CROP_BOX) -> jax.Array:
  """Faces [B, N, S, S, 3] in [0, 1] -> the sync discriminator's input [B, H, H, N] (H =
  crop_size): the fixed tight box, bilinear resize, luma (module docstring); differentiable."""
  if frames.ndim != 5 or frames.shape[2] != frames.shape[3]:
    raise ValueError(f"sync_window: frames must be square faces [B, N, S, S, 3], got "
                     f"{frames.shape}")
  rows, cols = crop_rows_cols(frames.shape[2], box)
  crops = frames[:, :, rows, cols].astype(jnp.float32)                 # [B, N, h, w, 3]
  b, n = crops.shape[:2]
  if crops.shape[2:4] != (crop_size, crop_size):
    crops = jax.image.resize(crops, (b, n, crop_size, crop_size, 3), "linear")
  return grayscale_window(crops)                                        # [B, H, H, N]


def cosine_probability(visual: jax.Array, audio: jax.Array,
                       probability: Probability = "relu") -> jax.Array:
  """Embeddings [B, E], [B, E] -> p [B] in [0, 1] (module docstring), float32."""
  visual, audio = visual.astype(jnp.float32), audio.astype(jnp.float32)
  if probability == "relu":
    visual, audio = jax.nn.relu(visual), jax.nn.relu(audio)
  elif probability != "shifted":
    raise ValueError(f"probability must be one of {PROBABILITIES}, got {probability!r}")
  norms = (jnp.maximum(jnp.linalg.norm(visual, axis=-1), NORM_FLOOR)
           * jnp.maximum(jnp.linalg.norm(audio, axis=-1), NORM_FLOOR))
  cos = jnp.sum(visual * audio, axis=-1) / norms
  return cos if probability == "relu" else (cos + 1.0) / 2.0


class SyncDiscriminator(nn.Module):
  """(faces [B, H, W, N] grayscale, mel [B, M, F]) -> p [B] in [0, 1] (module docstring).

  `embed_visual` and `embed_audio` give the raw embeddings [B, E] (for offset search).
  train=True uses batch statistics and updates `batch_stats` (mutable); frozen use is
  train=False.

  Attributes:
    embed_dim: E.
    visual_channels, visual_blocks, visual_strides: S_v's SE-ResNet stages (paper: (32, 64,
      128, 256), (3, 4, 6, 3), (1, 2, 2, 2): 144 -> 72 -> 72 -> 36 -> 18 -> 9).
    audio_channels, audio_blocks, audio_strides: S_a's ResNetSE stages (ResNetSE34L).
    probability: "relu" or "shifted".
  """
  embed_dim: int = 512
  visual_channels: Sequence[int] = (32, 64, 128, 256)
  visual_blocks: Sequence[int] = (3, 4, 6, 3)
  visual_strides: Sequence[int] = (1, 2, 2, 2)
  audio_channels: Sequence[int] = (16, 32, 64, 128)
  audio_blocks: Sequence[int] = (3, 4, 6, 3)
  audio_strides: Sequence[int] = (1, 2, 2, 1)
  probability: Probability = "relu"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def setup(self):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    self.visual = se_resnet.VisualEncoder(self.embed_dim, self.visual_channels,
                                          self.visual_blocks, self.visual_strides, **kw)
    self.audio = se_resnet.SpeakerEncoder(self.embed_dim, self.audio_channels, self.audio_blocks,
                                          self.audio_strides, **kw)

  def embed_visual(self, faces: jax.Array, train: bool = False) -> jax.Array:
    return self.visual(faces, train)                                    # [B, E]

  def embed_audio(self, mel: jax.Array, train: bool = False) -> jax.Array:
    return self.audio(mel, train)                                       # [B, E]

  def __call__(self, faces: jax.Array, mel: jax.Array, train: bool = False) -> jax.Array:
    if faces.shape[0] != mel.shape[0]:
      raise ValueError(f"SyncDiscriminator: {faces.shape[0]} face windows but {mel.shape[0]} mel "
                       "windows")
    return cosine_probability(self.visual(faces, train), self.audio(mel, train),
                              self.probability)                         # [B]
