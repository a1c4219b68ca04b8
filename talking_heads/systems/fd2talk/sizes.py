"""FD2Talk's network sizes per variant: keyword arguments of `models.fd2talk_motion.MotionDiT`,
`models.fd2talk_lip_expert.LipExpert`, `models.fd2talk_autoencoder.FrameAutoencoder` and
`models.fd2talk_unet.LatentUNet`, with the frame size and clip length they are built for. The
widths that come from the data (audio features A, expression coefficients E, mouth points N)
are not set here; `PAPER_INPUTS` gives the paper's for counting.

  tiny   32 px frames (8 x 8 latent), 8-frame clips: every block of the paper's structure at
         widths of 4-32 (tests, CI).
  demo   64 px frames (16 x 16 latent, f = 4 as the paper), 25-frame clips: the paper's depth
         for the DiTs (6 layers) at width 64; a three-level UNet of width 32 with both
         cross-attentions at its two lower levels.
  paper  256 px frames (64 x 64 x 3 latent), 25-frame clips: spec §2 (DiT W 256, 8 heads, 6
         layers; lip expert MLPs 1024-512-512 -> 512; UNet 256 x (1, 2, 3, 4), 2 ResBlocks,
         cross-attention at 32, 16 and 8 px, 32-channel heads, Q = 128). The autoencoder is
         `models.vq`'s two-level f = 4 stand-in at widths (128, 256) (see
         `models.fd2talk_autoencoder`), not LDM's vq-f4.

Parameters at paper size with `PAPER_INPUTS` (`parameter_counts("paper")`, by jax.eval_shape,
nothing allocated; `PAPER_PARAMETERS`, which a test keeps true):
  Exp Transformer (D = 64)          6,813,760
  Pose Transformer (D = 6)          6,784,006
  joint DiT (D = 70)                6,816,838
  lip expert                        7,660,544   (audio MLP on 5 x 1024 features: 6.3 M)
  frame autoencoder                 9,653,022   (codebook 8192 x 3 included)
  latent UNet, two attentions     569,728,259
  latent UNet, concatenated       545,376,771
The UNet is LDM's at DiffTalk's width (spec §2.6) with FD2Talk's second cross-attention and a
self-attention in each of its 16 SpatialTransformers; 1024-channel blocks at 8 px hold most of it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

VARIANTS = ("tiny", "demo", "paper")

# The paper's data widths: wav2vec 2.0 XLSR-53 features, Deep3D expression and pose, and the
# library's morphable model's 20 mouth landmarks (the paper's BFM mouth vertex set is not given).
PAPER_INPUTS = dict(audio_dim=1024, expression_dim=64, pose_dim=6, mouth_points=20)
PAPER_PARAMETERS = dict(motion_expression=6_813_760, motion_pose=6_784_006,
                        motion_joint=6_816_838, lip_expert=7_660_544, autoencoder=9_653_022,
                        unet_two_attentions=569_728_259, unet_concatenated=545_376_771)


@dataclasses.dataclass(frozen=True)
class NetworkSizes:
  """Attributes:
    image_size: H = W of the frames.
    num_frames: F of a stage-1 training clip.
    motion, lip_expert, autoencoder, unet: the modules' keyword arguments.
  """
  image_size: int
  num_frames: int
  motion: dict[str, Any]
  lip_expert: dict[str, Any]
  autoencoder: dict[str, Any]
  unet: dict[str, Any]

  @property
  def latent_size(self) -> int:
    """h = w of the autoencoder's latent."""
    return self.image_size // 2 ** len(self.autoencoder["channels"])


def sizes(variant: str) -> NetworkSizes:
  """The sizes of `variant` (fresh dicts: callers may update them)."""
  if variant == "tiny":
    return NetworkSizes(
        image_size=32, num_frames=8,
        motion=dict(width=16, num_heads=2, num_layers=2, mlp_ratio=2.0),
        lip_expert=dict(embed_dim=16, mouth_hidden=(32,), audio_hidden=(32,)),
        autoencoder=dict(channels=(8, 16), latent_channels=3, num_codes=32),
        unet=dict(width=8, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(0, 1),
                  head_channels=4, context_dim=8))
  if variant == "demo":
    return NetworkSizes(
        image_size=64, num_frames=25,
        motion=dict(width=64, num_heads=4, num_layers=6),
        lip_expert=dict(embed_dim=64, mouth_hidden=(256, 128), audio_hidden=(256, 128)),
        autoencoder=dict(channels=(32, 64), latent_channels=3, num_codes=512),
        unet=dict(width=32, channel_mult=(1, 2, 2), num_res_blocks=2, attention_levels=(1, 2),
                  head_channels=16, context_dim=32))
  if variant == "paper":
    return NetworkSizes(
        image_size=256, num_frames=25,
        motion=dict(width=256, num_heads=8, num_layers=6, mlp_ratio=4.0),
        lip_expert=dict(embed_dim=512, mouth_hidden=(1024, 512, 512),
                        audio_hidden=(1024, 512, 512)),
        autoencoder=dict(channels=(128, 256), latent_channels=3, num_codes=8192),
        unet=dict(width=256, channel_mult=(1, 2, 3, 4), num_res_blocks=2,
                  attention_levels=(1, 2, 3), head_channels=32, context_dim=128))
  raise ValueError(f"unknown FD2Talk variant {variant!r}; one of {VARIANTS}")


def _count(module: Any, *inputs: jax.ShapeDtypeStruct) -> int:
  shapes = jax.eval_shape(lambda *xs: module.init(jax.random.key(0), *xs), *inputs)
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(shapes["params"])))


def parameter_counts(variant: str, audio_dim: int = PAPER_INPUTS["audio_dim"],
                     expression_dim: int = PAPER_INPUTS["expression_dim"],
                     pose_dim: int = PAPER_INPUTS["pose_dim"],
                     mouth_points: int = PAPER_INPUTS["mouth_points"]) -> dict[str, int]:
  """Parameter counts of every network of `variant`, by `jax.eval_shape` (nothing allocated)."""
  from talking_heads.models import (  # pylint: disable=g-import-not-at-top
      fd2talk_autoencoder, fd2talk_lip_expert, fd2talk_motion, fd2talk_unet)
  s = sizes(variant)
  spec = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
  f, size, latent = s.num_frames, s.image_size, s.latent_size
  counts = {}
  for motion, d in (("expression", expression_dim), ("pose", pose_dim),
                    ("joint", expression_dim + pose_dim)):
    dit = fd2talk_motion.MotionDiT(motion, expression_dim=expression_dim, pose_dim=pose_dim,
                                   **s.motion)
    counts[f"motion_{motion}"] = _count(dit, spec(1, f, d), jax.ShapeDtypeStruct((1,), jnp.int32),
                                        spec(1, f, audio_dim))
  expert = fd2talk_lip_expert.LipExpert(**s.lip_expert)
  counts["lip_expert"] = _count(expert, spec(1, expert.window, mouth_points, 3),
                                spec(1, expert.window, audio_dim))
  ae = fd2talk_autoencoder.FrameAutoencoder(**s.autoencoder)
  counts["autoencoder"] = _count(ae, spec(1, size, size, 3), spec(1, size, size, 3))
  c = s.autoencoder["latent_channels"]
  for conditioning in fd2talk_unet.CONDITIONINGS:
    net = fd2talk_unet.LatentUNet(latent_channels=c, motion_dim=expression_dim + pose_dim,
                                  conditioning=conditioning, **s.unet)
    counts[f"unet_{conditioning}"] = _count(
        net, spec(1, latent, latent, c), jax.ShapeDtypeStruct((1,), jnp.int32),
        spec(1, expression_dim + pose_dim), spec(1, latent, latent, c))
  return counts
