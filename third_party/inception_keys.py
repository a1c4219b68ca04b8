"""Key layout of pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`.

The file is the bare state dict of pytorch-fid's `fid_inception_v3()` (torchvision Inception3,
1008 classes, no AuxLogits, FID mixed blocks). Every weighted layer is a BasicConv2d
`<block>[.<branch>].conv.weight` plus its BatchNorm `.bn.{weight,bias,running_mean,running_var}`,
and the classifier is `fc.{weight,bias}`: 94 convs, 472 tensors. The flax modules carry the same
names (`<block>/<branch>/conv`, `.../bn`, `fc`), so the map is complete by construction.
"""

from __future__ import annotations

from third_party import convert

STEM: tuple[str, ...] = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1",
                         "Conv2d_4a_3x3")

# BasicConv2d branches of each mixed-block type, in torch definition order.
BRANCHES: dict[str, tuple[str, ...]] = {
    "A": ("branch1x1", "branch5x5_1", "branch5x5_2", "branch3x3dbl_1", "branch3x3dbl_2",
          "branch3x3dbl_3", "branch_pool"),
    "B": ("branch3x3", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
    "C": ("branch1x1", "branch7x7_1", "branch7x7_2", "branch7x7_3", "branch7x7dbl_1",
          "branch7x7dbl_2", "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5", "branch_pool"),
    "D": ("branch3x3_1", "branch3x3_2", "branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3",
          "branch7x7x3_4"),
    "E": ("branch1x1", "branch3x3_1", "branch3x3_2a", "branch3x3_2b", "branch3x3dbl_1",
          "branch3x3dbl_2", "branch3x3dbl_3a", "branch3x3dbl_3b", "branch_pool"),
}

MIXED: tuple[tuple[str, str], ...] = (
    ("Mixed_5b", "A"), ("Mixed_5c", "A"), ("Mixed_5d", "A"), ("Mixed_6a", "B"),
    ("Mixed_6b", "C"), ("Mixed_6c", "C"), ("Mixed_6d", "C"), ("Mixed_6e", "C"),
    ("Mixed_7a", "D"), ("Mixed_7b", "E"), ("Mixed_7c", "E"),
)


def basic_conv_paths() -> list[tuple[str, ...]]:
  """Module path of each of the 94 BasicConv2d layers, in torch order."""
  paths = [(name,) for name in STEM]
  for block, kind in MIXED:
    paths.extend((block, branch) for branch in BRANCHES[kind])
  return paths


def inception_map() -> convert.NameMap:
  """Complete torch key -> flax target map for `fid_inception_v3()`."""
  out: convert.NameMap = {}
  for path in basic_conv_paths():
    prefix = ".".join(path)
    out.update(convert.map_conv(f"{prefix}.conv", path + ("conv",), bias=False))
    out.update(convert.map_batchnorm(f"{prefix}.bn", path + ("bn",)))
  out.update(convert.map_linear("fc", ("fc",)))
  return out
