"""Writes float32 state dicts as PyTorch zip checkpoints without torch (for converter tests).

The file is what `torch.save(state_dict)` writes for contiguous float32 tensors: a zip with
`archive/data.pkl` (a protocol-2 pickle of the dict, each tensor a `_rebuild_tensor_v2` call on a
persistent storage id), `archive/byteorder` and one `archive/data/<key>` record per storage.
"""

import os
import struct
import zipfile
from typing import Mapping

import numpy as np


def _str(s: str) -> bytes:
  data = s.encode("utf-8")
  return b"X" + struct.pack("<I", len(data)) + data


def _int(i: int) -> bytes:
  return b"J" + struct.pack("<i", i)


def _ints(values: tuple[int, ...]) -> bytes:
  return b"(" + b"".join(_int(v) for v in values) + b"t"


def write_state_dict(path: str | os.PathLike[str], state_dict: Mapping[str, np.ndarray]) -> None:
  """Saves {key: float32 array} where `third_party.torch_reader.load_torch_file` reads it back."""
  body, records = [b"\x80\x02}("], {}
  for index, (key, value) in enumerate(state_dict.items()):
    value = np.ascontiguousarray(value, dtype="<f4")
    strides = tuple(s // 4 for s in value.strides)
    body += [_str(key), b"ctorch._utils\n_rebuild_tensor_v2\n(",
             b"(" + _str("storage") + b"ctorch\nFloatStorage\n" + _str(str(index)) + _str("cpu")
             + _int(value.size) + b"tQ",
             _int(0), _ints(value.shape), _ints(strides),
             b"\x89ccollections\nOrderedDict\n)RtR"]          # requires_grad, hooks; call
    records[f"archive/data/{index}"] = value.tobytes()
  body.append(b"u.")
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("archive/data.pkl", b"".join(body))
    archive.writestr("archive/byteorder", "little")
    for name, data in records.items():
      archive.writestr(name, data)
