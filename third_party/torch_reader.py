"""Reads PyTorch checkpoint files (`.pth`, `.pt`, `.model`) into numpy without importing torch.

Two on-disk formats exist:

* zip (torch >= 1.6): a zip archive with one top folder holding `data.pkl` (the pickled object,
  tensors as persistent ids naming a storage record), `data/<key>` (each storage's raw bytes) and
  `byteorder` ("little" or "big"; absent means little).
* legacy (older files and `_use_new_zipfile_serialization=False`): consecutive pickles in one
  file -- magic number, protocol version, system info, the object, the list of storage keys --
  followed by each storage as an int64 element count and its little-endian bytes.

A tensor is pickled as a call to a rebuild function with (storage, offset, size, stride, ...), so
several tensors may view one storage with arbitrary strides. The pickle is read with a
whitelist: only those rebuild functions, the storage types and `collections.OrderedDict` are
resolved; any other global (a pickled nn.Module, numpy objects, arbitrary callables) is refused
with a `CheckpointError`, so a malicious file cannot run code.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
import struct
import tarfile
import zipfile
from typing import Any, BinaryIO, Callable

import ml_dtypes
import numpy as np

_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype(np.float32),
    "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
    "ComplexFloatStorage": np.dtype(np.complex64),
    "ComplexDoubleStorage": np.dtype(np.complex128),
}


class CheckpointError(ValueError):
  """A checkpoint file is unreadable, malformed or uses something the reader refuses."""


@dataclasses.dataclass(eq=False)
class _Storage:
  """One storage record: a flat typed buffer, filled once its bytes are read."""
  key: str
  dtype: np.dtype
  numel: int
  data: np.ndarray | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class _StorageView:
  """What a persistent id resolves to: a storage, or (legacy) an element range of one."""
  storage: _Storage
  start: int
  numel: int


@dataclasses.dataclass(frozen=True, eq=False)
class _TensorRef:
  """A tensor as pickled: a strided view into a storage, materialised after all bytes are read."""
  view: _StorageView
  offset: int
  size: tuple[int, ...]
  stride: tuple[int, ...]


class _TypeMarker:
  """Stands in for whitelisted classes that only appear as arguments (e.g. `torch.Tensor`)."""

  def __init__(self, name: str):
    self.name = name


def _as_ints(value: Any, what: str) -> tuple[int, ...]:
  if not isinstance(value, (tuple, list)) or not all(isinstance(v, int) for v in value):
    raise CheckpointError(f"tensor {what} is not a tuple of ints: {value!r}")
  return tuple(value)


def _rebuild_tensor(view: Any, offset: Any, size: Any, stride: Any, *unused: Any) -> _TensorRef:
  """Covers `_rebuild_tensor` (4 args) and `_rebuild_tensor_v2` (+ requires_grad, hooks, meta)."""
  if not isinstance(view, _StorageView):
    raise CheckpointError(f"tensor rebuilt from {type(view).__name__}, expected a storage")
  if not isinstance(offset, int):
    raise CheckpointError(f"tensor storage offset is not an int: {offset!r}")
  if len(unused) >= 3 and unused[2]:
    # Lazy conj/neg bits: the stored bytes are not the tensor's values.
    raise CheckpointError(f"tensor carries metadata {unused[2]!r} (lazy conj/neg); resolve it "
                          "before saving")
  size, stride = _as_ints(size, "size"), _as_ints(stride, "stride")
  if len(size) != len(stride):
    raise CheckpointError(f"tensor size {size} and stride {stride} differ in rank")
  return _TensorRef(view, offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any, hooks: Any, state: Any = None) -> Any:
  """Covers `_rebuild_parameter` and `_rebuild_parameter_with_state`: the data is the tensor."""
  return data


def _rebuild_from_type_v2(func: Callable[..., Any], new_type: Any, args: Any, state: Any) -> Any:
  """Tensors with a Python subclass or attributes: rebuild the plain tensor, drop the extras."""
  if not isinstance(new_type, _TypeMarker):
    raise CheckpointError(f"tensor subclass {new_type!r} is not supported")
  return func(*args)


def _torch_size(dims: Any) -> tuple[int, ...]:
  return _as_ints(dims, "size")


def _build_whitelist() -> dict[tuple[str, str], Any]:
  allowed: dict[tuple[str, str], Any] = {
      ("collections", "OrderedDict"): collections.OrderedDict,
      ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
      ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
      ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
      ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
      ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
      ("torch", "Size"): _torch_size,
  }
  for module, name in (("torch", "Tensor"), ("torch._tensor", "Tensor"),
                       ("torch.nn.parameter", "Parameter"), ("torch.nn", "Parameter")):
    allowed[(module, name)] = _TypeMarker(f"{module}.{name}")
  # GPU-saved legacy files name `torch.cuda.FloatStorage`; the bytes are the same.
  for name in _STORAGE_DTYPES:
    allowed[("torch", name)] = _TypeMarker(name)
    allowed[("torch.cuda", name)] = _TypeMarker(name)
  return allowed


_WHITELIST = _build_whitelist()


class _Unpickler(pickle.Unpickler):
  """Resolves only whitelisted globals and turns storage persistent ids into `_StorageView`s."""

  def __init__(self, file: BinaryIO, source: str, storages: dict[str, _Storage]):
    super().__init__(file)
    self._source = source
    self._storages = storages

  def find_class(self, module: str, name: str) -> Any:
    found = _WHITELIST.get((module, name))
    if found is None:
      raise CheckpointError(
          f"{self._source}: the pickle references {module}.{name}, which the torch-free reader "
          "refuses (only tensors, storages and dicts are allowed; save a state_dict of plain "
          "tensors instead)")
    return found

  def persistent_load(self, pid: Any) -> _StorageView:
    if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
      raise CheckpointError(f"{self._source}: unsupported persistent id {pid!r}")
    storage_type, key, _, numel = pid[1:5]
    if not isinstance(storage_type, _TypeMarker) or storage_type.name not in _STORAGE_DTYPES:
      raise CheckpointError(f"{self._source}: storage {key!r} has unsupported type "
                            f"{storage_type!r}")
    if not isinstance(numel, int) or numel < 0:
      raise CheckpointError(f"{self._source}: storage {key!r} has invalid size {numel!r}")
    key = str(key)
    dtype = _STORAGE_DTYPES[storage_type.name]
    storage = self._storages.get(key)
    if storage is None:
      storage = self._storages[key] = _Storage(key, dtype, numel)
    elif storage.dtype != dtype or storage.numel != numel:
      raise CheckpointError(f"{self._source}: storage {key!r} is declared twice with different "
                            f"dtype/size ({storage.dtype}/{storage.numel} vs {dtype}/{numel})")
    view_metadata = pid[5] if len(pid) > 5 else None
    if view_metadata is None:
      return _StorageView(storage, 0, numel)
    # Pre-1.0 legacy files can pickle storage slices: (view key, element offset, element count).
    _, start, count = view_metadata
    if start < 0 or start + count > numel:
      raise CheckpointError(f"{self._source}: storage view [{start}, {start + count}) exceeds "
                            f"storage {key!r} of {numel} elements")
    return _StorageView(storage, start, count)


def _unpickle(file: BinaryIO, source: str, storages: dict[str, _Storage]) -> Any:
  try:
    return _Unpickler(file, source, storages).load()
  except CheckpointError as e:
    if str(e).startswith(source):
      raise
    raise CheckpointError(f"{source}: {e}") from e  # Raised by a rebuild function: add the file.
  except Exception as e:  # Truncated or corrupt pickles raise many exception types.
    raise CheckpointError(f"{source}: corrupt pickle ({type(e).__name__}: {e})") from e


def _fill(storage: _Storage, raw: bytes, byteorder: str, source: str) -> None:
  nbytes = storage.numel * storage.dtype.itemsize
  if len(raw) < nbytes:
    raise CheckpointError(f"{source}: storage {storage.key!r} holds {len(raw)} bytes, expected "
                          f"{nbytes} ({storage.numel} x {storage.dtype})")
  dtype = storage.dtype.newbyteorder("<" if byteorder == "little" else ">")
  data = np.frombuffer(raw, dtype=dtype, count=storage.numel)
  storage.data = data.astype(storage.dtype.newbyteorder("="), copy=False)


def _read_zip(path: str) -> Any:
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
      raise CheckpointError(f"{path}: zip archive is not a PyTorch checkpoint (expected one "
                            f"'<folder>/data.pkl', found {pickles or 'none'})")
    prefix = pickles[0][:-len("data.pkl")]
    byteorder = "little"
    if prefix + "byteorder" in names:
      byteorder = archive.read(prefix + "byteorder").decode("ascii").strip()
      if byteorder not in ("little", "big"):
        raise CheckpointError(f"{path}: unknown byteorder record {byteorder!r}")
    storages: dict[str, _Storage] = {}
    obj = _unpickle(io.BytesIO(archive.read(pickles[0])), path, storages)
    for key, storage in storages.items():
      record = f"{prefix}data/{key}"
      if record not in names:
        raise CheckpointError(f"{path}: storage record {record!r} is missing")
      _fill(storage, archive.read(record), byteorder, path)
  return obj


def _read_legacy(path: str) -> Any:
  with open(path, "rb") as f:
    header = []
    for what in ("magic number", "protocol version", "system info"):
      header.append(_unpickle(f, f"{path} ({what})", {}))
    if header[0] != _LEGACY_MAGIC:
      raise CheckpointError(f"{path}: not a PyTorch checkpoint (no zip archive, no legacy magic "
                            "number)")
    if header[1] != _LEGACY_PROTOCOL:
      raise CheckpointError(f"{path}: unsupported legacy protocol version {header[1]!r}")
    storages: dict[str, _Storage] = {}
    obj = _unpickle(f, path, storages)
    keys = _unpickle(f, f"{path} (storage keys)", {})
    if not isinstance(keys, list):
      raise CheckpointError(f"{path}: storage key list is {type(keys).__name__}, not a list")
    for key in keys:
      storage = storages.get(str(key))
      if storage is None:
        raise CheckpointError(f"{path}: storage {key!r} listed but never referenced")
      count_bytes = f.read(8)
      if len(count_bytes) != 8:
        raise CheckpointError(f"{path}: file ends before storage {key!r}")
      (count,) = struct.unpack("<q", count_bytes)
      if count != storage.numel:
        raise CheckpointError(f"{path}: storage {key!r} has {count} elements on disk, pickle "
                              f"says {storage.numel}")
      # The legacy writer always stores little-endian bytes.
      _fill(storage, f.read(count * storage.dtype.itemsize), "little", path)
    missing = [k for k, s in storages.items() if s.data is None]
    if missing:
      raise CheckpointError(f"{path}: storages {missing} are referenced but have no data")
  return obj


def _materialise(ref: _TensorRef, source: str) -> np.ndarray:
  view = ref.view
  data = view.storage.data
  assert data is not None  # Filled before materialising.
  size, stride, start = ref.size, ref.stride, view.start + ref.offset
  if any(d < 0 for d in size) or any(s < 0 for s in stride) or ref.offset < 0:
    raise CheckpointError(f"{source}: tensor on storage {view.storage.key!r} has negative "
                          f"size/stride/offset ({size}, {stride}, {ref.offset})")
  if 0 in size:
    return np.zeros(size, dtype=data.dtype)
  last = ref.offset + sum((d - 1) * s for d, s in zip(size, stride))
  if last >= view.numel:
    raise CheckpointError(f"{source}: tensor of size {size}, stride {stride}, offset {ref.offset} "
                          f"reads past storage {view.storage.key!r} ({view.numel} elements)")
  itemsize = data.dtype.itemsize
  strided = np.lib.stride_tricks.as_strided(
      data[start:], shape=size, strides=tuple(s * itemsize for s in stride), writeable=False)
  return np.array(strided, order="C")  # A contiguous, writeable copy, independent of other views.


def _resolve(obj: Any, source: str) -> Any:
  if isinstance(obj, _TensorRef):
    return _materialise(obj, source)
  if isinstance(obj, dict):
    return {k: _resolve(v, source) for k, v in obj.items()}
  if isinstance(obj, list):
    return [_resolve(v, source) for v in obj]
  if isinstance(obj, tuple):
    return tuple(_resolve(v, source) for v in obj)
  if isinstance(obj, (_StorageView, _TypeMarker)):
    raise CheckpointError(f"{source}: a bare storage or type object is not a tensor")
  return obj


def load_torch_object(path: str | os.PathLike[str]) -> Any:
  """Reads a checkpoint into its Python structure, tensors as numpy arrays.

  Dicts (including OrderedDicts) come back as plain dicts in file order; lists, tuples and Python
  scalars are kept. bfloat16 tensors use `ml_dtypes.bfloat16`.

  Args:
    path: a file written by `torch.save`, zip or legacy format.

  Returns:
    The saved object with every tensor replaced by a contiguous `np.ndarray` copy.

  Raises:
    CheckpointError: the file is missing, malformed, truncated, or references a non-whitelisted
      global.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise CheckpointError(f"{path}: no such checkpoint file")
  if zipfile.is_zipfile(path):
    obj = _read_zip(path)
  elif tarfile.is_tarfile(path):
    raise CheckpointError(f"{path}: tar-format checkpoints (PyTorch < 0.1.10) are not supported")
  else:
    obj = _read_legacy(path)
  return _resolve(obj, path)


def _flatten(obj: Any, prefix: str, out: dict[str, np.ndarray], source: str) -> None:
  if isinstance(obj, np.ndarray):
    if prefix in out:
      raise CheckpointError(f"{source}: two entries flatten to the same key {prefix!r}")
    out[prefix] = obj
    return
  if isinstance(obj, dict):
    items = ((str(k), v) for k, v in obj.items())
  elif isinstance(obj, (list, tuple)):
    items = ((str(i), v) for i, v in enumerate(obj))
  else:
    return  # Non-tensor leaves (step counters, hyperparameters) are not weights.
  for key, value in items:
    _flatten(value, f"{prefix}.{key}" if prefix else key, out, source)


def load_torch_file(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
  """Reads every tensor of a checkpoint into a flat dict keyed by dotted paths.

  Nested dicts (and lists, by index) are joined with "."; prefixes such as 'state_dict.' or
  'module.' are kept (see `third_party.convert.strip_prefix`). Non-tensor values are left out;
  `load_torch_object` returns them.

  Args:
    path: a file written by `torch.save`, zip or legacy format.

  Returns:
    {dotted key: contiguous np.ndarray}.

  Raises:
    CheckpointError: as `load_torch_object`, or when two entries flatten to the same key.
  """
  out: dict[str, np.ndarray] = {}
  _flatten(load_torch_object(path), "", out, os.fspath(path))
  return out
