"""RADIO's network sizes per variant: keyword arguments of `models.radio.RadioGenerator`, the
StyleGAN2 `nn.stylegan.Discriminator` and `models.radio_sync.SyncDiscriminator`, with the image
and sync-crop sizes they are built for. One source for the stage configs and the tests.

  tiny   32 px faces, 16 px sync crops: every layer of the paper's structure at widths of 4-32
         (tests and CI, seconds on a CPU).
  demo   96 px (the paper's ablation scale, Tables 2-3), 48 px sync crops (the spec's crop box,
         half the face, at its native size): the paper's depth (L = 6, ViT(2, 2) with 8 heads,
         ResNetSE34L stages) at 1/8 of its widths (1/16 at 96 px), so that a step trains in
         about a second on 2 CPU cores. ViT patches 3 at 48 px and 6 at 96 px: 16 x 16 grids
         (128 lower-half tokens), not the paper's 32 x 32 (spec §8 item 1 recommends 3 at 96 px
         too): 512 tokens tripled the generator's step (fwd+bwd of 10 frames: 2.5 s vs 0.83 s;
         0.61 s without ViT; measured before the upsampling convs took StyleGAN2's transposed
         order, which XLA:CPU runs slower).
  paper  192 px, 144 px sync crops: the spec's §2 widths (f_c 12x12x512, Z = 512, ViT D = 512 with
         8 heads and patches 3 and 6, ResNetSE34L audio, S_v (32, 64, 128, 256)).
"""

from __future__ import annotations

import dataclasses
from typing import Any

VARIANTS = ("tiny", "demo", "paper")


@dataclasses.dataclass(frozen=True)
class NetworkSizes:
  """Attributes:
    image_size: S of the generator and the discriminator.
    sync_crop_size: H = W of the sync discriminator's grayscale crops.
    generator, discriminator, sync: the modules' keyword arguments.
  """
  image_size: int
  sync_crop_size: int
  generator: dict[str, Any]
  discriminator: dict[str, Any]
  sync: dict[str, Any]


def sizes(variant: str) -> NetworkSizes:
  """The sizes of `variant` (fresh dicts: callers may update them)."""
  if variant == "tiny":
    return NetworkSizes(
        image_size=32, sync_crop_size=16,
        generator=dict(encoder_channels=(8, 16, 16, 32, 32),
                       decoder_channels=(32, 32, 32, 16, 16, 8), style_dim=16,
                       audio_channels=(4, 8, 8, 16), audio_blocks=(1, 1, 1, 1),
                       vit_patch_sizes=(2, 4), vit_dim=16, vit_heads=2),
        discriminator=dict(channel_base=256, channel_max=32),
        sync=dict(embed_dim=16, visual_channels=(4, 8, 8, 16), visual_blocks=(1, 1, 1, 1),
                  audio_channels=(4, 8, 8, 16), audio_blocks=(1, 1, 1, 1)))
  if variant == "demo":
    return NetworkSizes(
        image_size=96, sync_crop_size=48,
        generator=dict(encoder_channels=(8, 16, 32, 64, 64),
                       decoder_channels=(64, 64, 64, 32, 16, 8), style_dim=64,
                       audio_channels=(8, 16, 32, 64), audio_blocks=(3, 4, 6, 3),
                       vit_patch_sizes=(3, 6), vit_dim=64, vit_heads=8),
        discriminator=dict(channel_base=1024, channel_max=64),
        sync=dict(embed_dim=128, visual_channels=(8, 16, 32, 64), visual_blocks=(3, 4, 6, 3),
                  audio_channels=(8, 16, 32, 64), audio_blocks=(3, 4, 6, 3)))
  if variant == "paper":
    return NetworkSizes(image_size=192, sync_crop_size=144, generator={}, discriminator={},
                        sync={})
  raise ValueError(f"unknown RADIO variant {variant!r}; one of {VARIANTS}")
