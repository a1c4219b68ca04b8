"""PIR's network sizes per variant: keyword arguments of `models.pir_audio2exp.Audio2Expression`,
`models.triplane.TriplaneGenerator` and `ProxyUpsampler`, `models.pir_renderer.InpaintingRenderer`
and `MultiscaleDiscriminator`, with the frame size they are built for. The identity and
expression widths come from the data (the morphable model's A and E), not from here.

  tiny   32 px frames: every block of the paper's structure at widths of 4-32 (tests, CI).
  demo   128 px frames of one identity: I_F 16 x 32 x 32 (the paper's r = S / 8 and its 2x
         pooling to the renderer's bottleneck), tri-planes 3 x 16 x 64 x 64, 24 + 24 samples,
         a 128-wide one-layer decoder for A, the renderer's global generator alone (no local
         enhancer at 128 px) with F = 16.
  paper  512 px frames: spec §2 (A: D 1024, 4 heads, FFN 2048, 1 layer; B: Z 512, planes
         3 x 32 x 256 x 256, I_F 32 x 64 x 64, 48 + 48 samples, upsampler 64 -> 512; C: LocalEnhancer
         F 32 (global 64), 3 down-samplings, 4 + 3 residual blocks; D: 3 scales, 3 layers, 64).
"""

from __future__ import annotations

import dataclasses
from typing import Any

VARIANTS = ("tiny", "demo", "paper")


@dataclasses.dataclass(frozen=True)
class NetworkSizes:
  """Attributes:
    image_size: S of the frames, I_face and the renderer's output.
    audio2exp, triplane, upsampler, renderer, discriminator: the modules' keyword arguments.
  """
  image_size: int
  audio2exp: dict[str, Any]
  triplane: dict[str, Any]
  upsampler: dict[str, Any]
  renderer: dict[str, Any]
  discriminator: dict[str, Any]


def sizes(variant: str) -> NetworkSizes:
  """The sizes of `variant` (fresh dicts: callers may update them)."""
  if variant == "tiny":
    return NetworkSizes(
        image_size=32,
        audio2exp=dict(width=16, num_heads=4, mlp_dim=32, num_layers=1),
        triplane=dict(style_dim=16, plane_resolution=16, plane_channels=4, channel_base=128,
                      channel_max=32, decoder_hidden=8, neural_resolution=8, num_coarse=6,
                      num_fine=6),
        upsampler=dict(channels=(16,)),
        renderer=dict(base_features=4, num_downsamples=2, global_blocks=1, local_enhancer=True,
                      local_blocks=1),
        discriminator=dict(base_features=4, num_layers=2, num_scales=3))
  if variant == "demo":
    return NetworkSizes(
        image_size=128,
        audio2exp=dict(width=128, num_heads=4, mlp_dim=256, num_layers=1),
        triplane=dict(style_dim=128, plane_resolution=64, plane_channels=16, channel_base=4096,
                      channel_max=128, decoder_hidden=32, neural_resolution=32, num_coarse=24,
                      num_fine=24),
        upsampler=dict(channels=(64,)),
        renderer=dict(base_features=16, num_downsamples=3, global_blocks=4,
                      local_enhancer=False),
        discriminator=dict(base_features=32, num_layers=3, num_scales=3))
  if variant == "paper":
    return NetworkSizes(image_size=512, audio2exp={}, triplane={}, upsampler={}, renderer={},
                        discriminator={})
  raise ValueError(f"unknown PIR variant {variant!r}; one of {VARIANTS}")
