"""Tests for third_party.torch_reader: PyTorch checkpoints read without torch.

The fixtures under fixtures/ were written by torch 2.13 (regenerate them with
`PYTHONPATH=. python tests/third_party/torch_reader_test.py`); their expected values are in
fixtures/expected.npz, so these tests need no torch. A torch-gated test rewrites the fixtures
in a temporary folder and compares again. Files in the pre-1.0 style (4-argument
`_rebuild_tensor`, storage views, CUDA storage types) are built opcode by opcode, since current
torch no longer writes them.
"""

import os
import pathlib
import pickle
import struct
import zipfile

import ml_dtypes
import numpy as np
import pytest

from third_party import torch_reader as tr

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
FORMATS = {"zip": "checkpoint_zip.pth", "legacy": "checkpoint_legacy.pth"}


def _build_checkpoint(torch):
  """The checkpoint both fixture files hold: nested dicts, shared storages, views, many dtypes."""
  gen = torch.Generator().manual_seed(0)
  base = torch.randn(4, 5, generator=gen)
  half = torch.randn(3, 4, generator=gen).half()
  conv = torch.nn.Conv2d(3, 2, 3)
  bn = torch.nn.BatchNorm2d(2)
  with torch.no_grad():
    for p in list(conv.parameters()) + [bn.running_mean, bn.running_var]:
      p.copy_(torch.randn(p.shape, generator=gen))
  model = torch.nn.Sequential(conv, bn)
  return {
      "state_dict": model.state_dict(),  # OrderedDict with _metadata, num_batches_tracked.
      "shared": {
          "base": base,
          "transposed": base.t(),                # Strides (1, 5).
          "slice": base[1:3, ::2],               # Offset 5, strides (5, 2).
          "row": base[2],                        # Offset 10.
          "broadcast": base[0:1].expand(3, 5),   # Stride 0.
      },
      "dtypes": {
          "float64": torch.randn(2, 3, generator=gen).double(),
          "float16": half,
          "float16_view": half.t()[1:],
          "bfloat16": torch.randn(5, generator=gen).bfloat16(),
          "int64": torch.arange(-3, 3, dtype=torch.int64).reshape(2, 3),
          "int32": torch.tensor([2**31 - 1, -2**31], dtype=torch.int32),
          "int8": torch.tensor([-128, 127], dtype=torch.int8),
          "uint8": torch.arange(250, 256, dtype=torch.uint8),
          "bool": torch.tensor([[True, False], [False, True]]),
          "scalar": torch.tensor(3.5),
          "empty": torch.zeros(0, 3),
      },
      "parameter": torch.nn.Parameter(torch.ones(3)),
      "list": [torch.full((2,), 7.0), {"deep": torch.tensor([1, 2], dtype=torch.int64)}],
      "meta": {"global_step": 123, "name": "fixture"},
  }


def _expected(torch, checkpoint) -> dict[str, np.ndarray]:
  """Flattened numpy values; bfloat16 kept as float32 (exact) since npz cannot store it."""
  out = {}

  def walk(obj, prefix):
    if isinstance(obj, torch.Tensor):
      value = obj.detach()
      out[prefix] = (value.float() if value.dtype == torch.bfloat16 else value).numpy().copy()
    elif isinstance(obj, dict):
      for k, v in obj.items():
        walk(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
      for i, v in enumerate(obj):
        walk(v, f"{prefix}.{i}" if prefix else str(i))

  walk(checkpoint, "")
  return out


def write_fixtures(torch, folder: pathlib.Path) -> None:
  folder.mkdir(parents=True, exist_ok=True)
  checkpoint = _build_checkpoint(torch)
  torch.save(checkpoint, folder / FORMATS["zip"])
  torch.save(checkpoint, folder / FORMATS["legacy"], _use_new_zipfile_serialization=False)
  np.savez(folder / "expected.npz", **_expected(torch, checkpoint))


def _check_against_expected(folder: pathlib.Path, fmt: str) -> None:
  loaded = tr.load_torch_file(folder / FORMATS[fmt])
  with np.load(folder / "expected.npz") as expected:
    assert sorted(loaded) == sorted(expected.files)
    for key in expected.files:
      want, got = expected[key], loaded[key]
      assert got.shape == want.shape, key
      if key == "dtypes.bfloat16":
        assert got.dtype == ml_dtypes.bfloat16
        got = got.astype(np.float32)
      else:
        assert got.dtype == want.dtype, key
      np.testing.assert_array_equal(got, want, err_msg=key)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_fixture_matches_values_torch_saved(fmt):
  _check_against_expected(FIXTURES, fmt)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_views_are_independent_contiguous_copies(fmt):
  loaded = tr.load_torch_file(FIXTURES / FORMATS[fmt])
  base, transposed = loaded["shared.base"], loaded["shared.transposed"]
  np.testing.assert_array_equal(transposed, base.T)
  np.testing.assert_array_equal(loaded["shared.slice"], base[1:3, ::2])
  np.testing.assert_array_equal(loaded["shared.broadcast"], np.broadcast_to(base[:1], (3, 5)))
  assert transposed.flags.c_contiguous and transposed.flags.writeable
  transposed[0, 0] = 1e6
  assert base[0, 0] != 1e6


def test_object_keeps_non_tensor_values_and_order():
  obj = tr.load_torch_object(FIXTURES / FORMATS["zip"])
  assert obj["meta"] == {"global_step": 123, "name": "fixture"}
  assert list(obj["state_dict"]) == ["0.weight", "0.bias", "1.weight", "1.bias",
                                     "1.running_mean", "1.running_var", "1.num_batches_tracked"]
  assert isinstance(obj["list"], list) and obj["list"][1]["deep"].dtype == np.int64


@pytest.mark.parity
def test_regenerated_fixtures_match(tmp_path):
  torch = pytest.importorskip("torch")
  write_fixtures(torch, tmp_path)
  for fmt in FORMATS:
    _check_against_expected(tmp_path, fmt)
    np.testing.assert_array_equal(  # The reader agrees with torch.load on the same file.
        tr.load_torch_file(tmp_path / FORMATS[fmt])["shared.slice"],
        torch.load(tmp_path / FORMATS[fmt])["shared"]["slice"].numpy())


class _Op:
  """A pickle-opcode emitter for hand-built legacy files."""

  def __init__(self):
    self.out = bytearray(b"\x80\x02")

  def glob(self, module, name):
    self.out += b"c" + f"{module}\n{name}\n".encode()
    return self

  def raw(self, code):
    self.out += code
    return self

  def str(self, s):
    data = s.encode()
    self.out += b"X" + struct.pack("<I", len(data)) + data
    return self

  def int(self, i):
    self.out += b"J" + struct.pack("<i", i)
    return self

  def ints(self, values):
    self.raw(b"(")
    for v in values:
      self.int(v)
    return self.raw(b"t")

  def bytes(self):
    return bytes(self.out + b".")


def _legacy_file(path, body: bytes, storages: list[tuple[str, bytes, int]]) -> None:
  """Writes the legacy layout: magic, protocol, sys info, body pickle, keys, then storages."""
  with open(path, "wb") as f:
    pickle.dump(0x1950a86a20f9469cfc6c, f, protocol=2)
    pickle.dump(1001, f, protocol=2)
    pickle.dump({"protocol_version": 1001, "little_endian": True}, f, protocol=2)
    f.write(body)
    pickle.dump([key for key, _, _ in storages], f, protocol=2)
    for _, data, count in storages:
      f.write(struct.pack("<q", count) + data)


def _old_style_tensor(op, storage_module, key, numel, view, offset, size, stride):
  op.glob("torch._utils", "_rebuild_tensor").raw(b"(")          # func, MARK of the args tuple
  op.raw(b"(").str("storage").glob(storage_module, "FloatStorage").str(key).str("cuda:0")
  op.int(numel)
  if view is None:
    op.raw(b"N")
  else:
    op.raw(b"(").str(view[0]).int(view[1]).int(view[2]).raw(b"t")
  op.raw(b"tQ")                                                  # persistent id -> storage
  op.int(offset).ints(size).ints(stride).raw(b"tR")


def test_pre_1_0_legacy_file_with_storage_views_and_cuda_storages(tmp_path):
  values = np.arange(10, dtype=np.float32)
  op = _Op().raw(b"}")
  op.str("whole")
  _old_style_tensor(op, "torch.cuda", "k0", 10, None, 0, (2, 5), (5, 1))
  op.raw(b"s").str("view")
  _old_style_tensor(op, "torch.cuda", "k0", 10, ("v0", 4, 6), 1, (2, 2), (1, 2))
  op.raw(b"s")
  path = tmp_path / "old.model"
  _legacy_file(path, op.bytes(), [("k0", values.tobytes(), 10)])
  loaded = tr.load_torch_file(path)
  np.testing.assert_array_equal(loaded["whole"], values.reshape(2, 5))
  # Storage view starts at element 4; tensor offset 1 -> elements 5,7 / 6,8 (column-major 2x2).
  np.testing.assert_array_equal(loaded["view"], [[5, 7], [6, 8]])


def test_refuses_globals_outside_the_whitelist(tmp_path):
  marker = tmp_path / "pwned"
  body = (_Op().glob("os", "system").raw(b"(").str(f"touch {marker}").raw(b"tR")).bytes()
  path = tmp_path / "evil.pth"
  _legacy_file(path, body, [])
  with pytest.raises(tr.CheckpointError, match=r"os\.system.*refuses"):
    tr.load_torch_file(path)
  assert not marker.exists()
  zipped = tmp_path / "evil_zip.pth"
  with zipfile.ZipFile(zipped, "w") as archive:
    archive.writestr("archive/data.pkl", body)
  with pytest.raises(tr.CheckpointError, match=r"evil_zip\.pth.*os\.system"):
    tr.load_torch_file(zipped)


def test_tensor_reading_past_its_storage_is_an_error(tmp_path):
  op = _Op().raw(b"}").str("w")
  _old_style_tensor(op, "torch", "k0", 4, None, 2, (3,), (1,))
  path = tmp_path / "bad.pth"
  _legacy_file(path, op.raw(b"s").bytes(), [("k0", np.zeros(4, np.float32).tobytes(), 4)])
  with pytest.raises(tr.CheckpointError, match=r"bad\.pth.*reads past storage 'k0'"):
    tr.load_torch_file(path)
  op = _Op().raw(b"}").str("w").glob("torch._utils", "_rebuild_tensor")
  op.raw(b"(").int(3).int(0).ints((1,)).ints((1,)).raw(b"tRs")   # an int where a storage goes
  _legacy_file(path, op.bytes(), [])
  with pytest.raises(tr.CheckpointError, match=r"bad\.pth: tensor rebuilt from int"):
    tr.load_torch_file(path)


def test_truncated_and_foreign_files_are_errors(tmp_path):
  data = (FIXTURES / FORMATS["legacy"]).read_bytes()
  truncated = tmp_path / "truncated.pth"
  truncated.write_bytes(data[:-7])
  with pytest.raises(tr.CheckpointError, match="truncated.pth.*bytes, expected"):
    tr.load_torch_file(truncated)
  foreign = tmp_path / "notes.pth"
  foreign.write_bytes(b"hello, not a checkpoint")
  with pytest.raises(tr.CheckpointError, match="notes.pth"):
    tr.load_torch_file(foreign)
  with pytest.raises(tr.CheckpointError, match="no such checkpoint file"):
    tr.load_torch_file(tmp_path / "absent.pth")


def test_zip_with_a_missing_storage_record_is_an_error(tmp_path):
  broken = tmp_path / "broken.pth"
  with zipfile.ZipFile(FIXTURES / FORMATS["zip"]) as src, zipfile.ZipFile(broken, "w") as dst:
    for name in src.namelist():
      if not name.endswith("/data/0"):
        dst.writestr(name, src.read(name))
  with pytest.raises(tr.CheckpointError, match=r"broken\.pth.*data/0' is missing"):
    tr.load_torch_file(broken)


def test_big_endian_zip_records_are_swapped(tmp_path):
  op = _Op().raw(b"}").str("w")
  _old_style_tensor(op, "torch", "0", 3, None, 0, (3,), (1,))
  path = tmp_path / "big.pth"
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("archive/data.pkl", op.raw(b"s").bytes())
    archive.writestr("archive/byteorder", "big")
    archive.writestr("archive/data/0", np.array([1.5, -2.0, 3.25], ">f4").tobytes())
  got = tr.load_torch_file(path)["w"]
  assert got.dtype == np.float32 and got.dtype.isnative
  np.testing.assert_array_equal(got, [1.5, -2.0, 3.25])


if __name__ == "__main__":
  import torch as _torch
  write_fixtures(_torch, FIXTURES)
  print("wrote", sorted(os.listdir(FIXTURES)))
