"""Key layout of syncnet_python's `syncnet_v2.model` (network S).

A bare state dict whose towers are `nn.Sequential`s with ReLU/max-pool entries between the
weighted layers: in `netcnnaud` and `netcnnlip` the convs sit at indices 0, 4, 8, 11, 14, 18,
each followed by its BatchNorm; `netfcaud`/`netfclip` are Linear (0), BatchNorm1d (1), ReLU,
Linear (3). The flax names are `{aud,lip}_conv_<k>`, `{aud,lip}_bn_<k>`, `{aud,lip}_fc1`,
`{aud,lip}_fc_bn`, `{aud,lip}_fc2`. (Wav2Lip's SyncNet_color uses the Wav2Lip block layout,
`third_party.wav2lip_keys`.)
"""

from __future__ import annotations

from third_party import convert

# Indices of the weighted layers in S's conv towers (BatchNorm at index + 1).
S_CONV_INDICES = (0, 4, 8, 11, 14, 18)


def syncnet_s_map() -> convert.NameMap:
  """Complete torch key -> flax target map for syncnet_python `S`."""
  out: convert.NameMap = {}
  for tower, flax_tower in (("netcnnaud", "aud"), ("netcnnlip", "lip")):
    for k, i in enumerate(S_CONV_INDICES):
      out.update(convert.map_conv(f"{tower}.{i}", (f"{flax_tower}_conv_{k}",)))
      out.update(convert.map_batchnorm(f"{tower}.{i + 1}", (f"{flax_tower}_bn_{k}",)))
  for tower, flax_tower in (("netfcaud", "aud"), ("netfclip", "lip")):
    out.update(convert.map_linear(f"{tower}.0", (f"{flax_tower}_fc1",)))
    out.update(convert.map_batchnorm(f"{tower}.1", (f"{flax_tower}_fc_bn",)))
    out.update(convert.map_linear(f"{tower}.3", (f"{flax_tower}_fc2",)))
  return out
