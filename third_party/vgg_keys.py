"""Key layout of torchvision's VGG16/VGG19 and AlexNet checkpoints (`features.<index>.*`).

torchvision builds `features` as one `nn.Sequential`: each VGG conv is followed by a ReLU (two
indices) and each "M" is a max-pool (one index), so the index of every conv follows from the
configuration lists in `torchvision/models/vgg.py` (`cfgs["D"]` for VGG16, `cfgs["E"]` for
VGG19). Convs are named by block and position, conv<block>_<i>, as in the VGG paper. The
`classifier.*` keys (the fully connected ImageNet head) are never used by perceptual networks.
"""

from __future__ import annotations

from typing import Collection, Mapping, Sequence

from third_party import convert

# torchvision `cfgs`: output channels per conv, "M" for a 2x2 max-pool.
VGG_CONFIGS: dict[str, tuple[int | str, ...]] = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"),
}
ALEXNET_INDICES: dict[str, int] = {"conv1": 0, "conv2": 3, "conv3": 6, "conv4": 8, "conv5": 10}
CLASSIFIER_KEYS = r"classifier\..*"


def vgg_indices(variant: str) -> dict[str, int]:
  """{conv<block>_<i>: torchvision `features` index} of every conv of `variant`."""
  if variant not in VGG_CONFIGS:
    raise ValueError(f"VGG variant must be one of {sorted(VGG_CONFIGS)}, got {variant!r}")
  out: dict[str, int] = {}
  index, block, position = 0, 1, 1
  for item in VGG_CONFIGS[variant]:
    if item == "M":
      index, block, position = index + 1, block + 1, 1
      continue
    out[f"conv{block}_{position}"] = index
    index, position = index + 2, position + 1   # conv, ReLU
  return out


def features_name_map(indices: Mapping[str, int], layers: Collection[str],
                      source: str) -> tuple[convert.NameMap, Sequence[str]]:
  """Name map and ignore patterns for a trunk whose flax params are the convs in `layers`.

  Convs of the checkpoint beyond the trunk's deepest layer and the classifier are ignored (a
  trunk built for shallow taps has no parameters for them).

  Raises:
    ConversionError: `layers` names a conv the torchvision trunk does not have.
  """
  unknown = sorted(set(layers) - set(indices))
  if unknown:
    raise convert.ConversionError(f"{source}: flax model has layers {unknown} that the "
                                  "torchvision trunk does not")
  mapping: convert.NameMap = {}
  ignore = [CLASSIFIER_KEYS]
  for name, index in indices.items():
    if name in layers:
      mapping.update(convert.map_conv(f"features.{index}", (name,)))
    else:
      ignore.append(rf"features\.{index}\.(weight|bias)")
  return mapping, ignore
