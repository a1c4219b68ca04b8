"""Tests for talking_heads.io.dataset: writing, reading, validating and resuming datasets."""

import dataclasses
import json
import os
import pickle

import numpy as np
import pytest

from talking_heads.io import dataset as ds
from talking_heads.io import video

SIZE = 16
EXPRESSIONS = ("jaw_open", "smile", "brow_up")
NUM_ALPHA = 5
FIELDS = dict(fps=25, sample_rate=16000, image_size=SIZE, expression_names=EXPRESSIONS,
              num_identity_params=NUM_ALPHA)


def _arrays(seed: int, num_frames: int, extra_samples: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  focal = 2.0 * SIZE
  return {
      "frames": rng.integers(0, 256, (num_frames, SIZE, SIZE, 3), dtype=np.uint8),
      "audio": rng.uniform(-0.5, 0.5, 640 * num_frames + extra_samples).astype(np.float32),
      "landmarks": rng.uniform(0, SIZE, (num_frames, 68, 2)).astype(np.float32),
      "alpha": rng.standard_normal(NUM_ALPHA).astype(np.float32),
      "expression": rng.standard_normal((num_frames, len(EXPRESSIONS))).astype(np.float32),
      "pose": rng.standard_normal((num_frames, 6)).astype(np.float32),
      "K": np.array([[focal, 0, SIZE / 2], [0, focal, SIZE / 2], [0, 0, 1]], np.float32),
  }


def _meta(identity: str = "anna", split: str = "train") -> dict[str, str]:
  return dict(identity=identity, voice=identity, language="en", split=split)


def _writer(root, **overrides) -> ds.DatasetWriter:
  fields = {**FIELDS, "provenance": {"tool": "test"}, "generator": {"seed": 0}, **overrides}
  return ds.DatasetWriter(root, **fields)


@pytest.fixture()
def small(tmp_path):
  """A written three-clip dataset and the arrays that went into it."""
  root = tmp_path / "data"
  arrays = {"c0": _arrays(0, 5), "c1": _arrays(1, 4, extra_samples=-300),
            "c2": _arrays(2, 6, extra_samples=500)}
  with _writer(root) as writer:
    writer.set_identity("anna", gender="f", seed=3)
    writer.add_clip("c0", **_meta("anna"), **arrays["c0"], text="hello there", source="seed:0")
    writer.add_clip("c1", **_meta("ben", "val"), **arrays["c1"])
    writer.add_clip("c2", **_meta("anna", "heldout_voice"), **arrays["c2"])
  return root, arrays


def _edit_manifest(root, edit) -> None:
  manifest = json.loads((root / ds.MANIFEST_FILE).read_text())
  edit(manifest)
  (root / ds.MANIFEST_FILE).write_text(json.dumps(manifest))


def test_round_trip(small):
  root, arrays = small
  data = ds.Dataset(root)
  assert len(data) == 3 and "c1" in data and "zz" not in data
  assert data.splits() == ["heldout_voice", "train", "val"]
  assert [c.id for c in data.clips("train")] == ["c0"]
  assert [c.id for c in data] == ["c0", "c1", "c2"]
  assert (data.fps, data.sample_rate, data.image_size) == (25, 16000, SIZE)
  assert data.samples_per_frame == 640 and data.format_version == 1
  assert data.expression_names == EXPRESSIONS and data.num_identity_params == NUM_ALPHA
  assert data.identities == {"anna": {"gender": "f", "seed": 3}, "ben": {}}
  assert data.provenance == {"tool": "test"} and data.generator == {"seed": 0}
  for clip_id, expected in arrays.items():
    clip = data.clip(clip_id)
    for name, array in expected.items():
      np.testing.assert_array_equal(getattr(clip, name), array, err_msg=f"{clip_id}/{name}")
    assert clip.num_frames == len(expected["frames"])
    assert clip.num_samples == len(expected["audio"])
  c0 = data.clip("c0")
  assert (c0.record.text, c0.record.source, c0.identity, c0.split) == (
      "hello there", "seed:0", "anna", "train")
  assert data.clip("c1").record.text is None
  data.validate(full=True)
  with pytest.raises(KeyError, match="no clip 'zz'"):
    data.clip("zz")


def test_preview_is_written_with_the_clip(tmp_path):
  arrays = _arrays(0, 10)
  with _writer(tmp_path) as writer:
    writer.add_clip("p", **_meta(), **arrays, preview=True)
    writer.add_clip("q", **_meta(), **_arrays(1, 2))
  data = ds.Dataset(tmp_path)
  assert data.clip("q").preview_path is None
  frames, fps, audio = video.read_video_with_audio(data.clip("p").preview_path)
  assert fps == 25 and frames.shape == arrays["frames"].shape
  assert abs(len(audio) - len(arrays["audio"])) < 1024


def test_arrays_are_memory_mapped_read_only(small):
  root, _ = small
  clip = ds.Dataset(root).clip("c0")
  frames = clip.frames
  assert isinstance(frames, np.memmap)
  assert os.path.samefile(frames.filename, root / "clips" / "c0" / "frames.npy")
  assert not frames.flags.writeable
  assert isinstance(clip.audio, np.memmap) and isinstance(clip.K, np.memmap)


def test_dataset_and_clips_pickle_without_array_data(small):
  root, _ = small
  data = ds.Dataset(root)
  _ = data.clip("c0").frames
  payload = pickle.dumps(data)
  assert len(payload) < 5000  # records only; frames alone are 3.8 kB per clip
  restored = pickle.loads(payload)
  np.testing.assert_array_equal(restored.clip("c2").pose, data.clip("c2").pose)


def test_manifest_on_disk_matches_the_spec(small):
  root, _ = small
  manifest = json.loads((root / "manifest.json").read_text())
  assert manifest["format_version"] == 1 and manifest["fps"] == 25
  assert manifest["expression_names"] == list(EXPRESSIONS)
  assert manifest["clips"][0] == {
      "id": "c0", "identity": "anna", "voice": "anna", "language": "en", "split": "train",
      "num_frames": 5, "num_samples": 3200, "path": "clips/c0", "text": "hello there",
      "source": "seed:0"}
  assert "text" not in manifest["clips"][1]
  assert sorted(p.name for p in (root / "clips" / "c1").iterdir()) == [
      "K.npy", "alpha.npy", "audio.npy", "clip.json", "expression.npy", "frames.npy",
      "landmarks.npy", "pose.npy"]


def test_bad_format_version(small):
  root, _ = small
  _edit_manifest(root, lambda m: m.update(format_version=2))
  with pytest.raises(ds.DatasetError, match=r"manifest.json: unsupported format_version 2"):
    ds.Dataset(root)


def test_missing_and_invalid_manifest(tmp_path):
  with pytest.raises(ds.DatasetError, match="missing manifest.json"):
    ds.Dataset(tmp_path)
  (tmp_path / "manifest.json").write_text("{not json")
  with pytest.raises(ds.DatasetError, match="manifest.json: invalid JSON"):
    ds.Dataset(tmp_path)
  with pytest.raises(ds.DatasetError, match="is not a directory"):
    ds.Dataset(tmp_path / "absent")


def test_manifest_audio_length_mismatch(small):
  root, _ = small
  _edit_manifest(root, lambda m: m["clips"][1].update(num_samples=3200))
  with pytest.raises(ds.DatasetError, match=(
      r"manifest.json: clips\[1\] \(id 'c1'\): audio has 3200 samples for 4 frames; "
      r"expected 2560 \+- 640")):
    ds.Dataset(root)


def test_audio_file_shorter_than_manifest(small):
  root, _ = small
  np.save(root / "clips" / "c0" / "audio.npy", np.zeros(3000, np.float32))
  clip = ds.Dataset(root).clip("c0")
  with pytest.raises(ds.DatasetError, match=(
      r"clip 'c0': audio.npy: shape \(3000,\), expected \(3200,\) = \[N\] with T=5, N=3200")):
    _ = clip.audio
  np.testing.assert_array_equal(clip.frames.shape, (5, SIZE, SIZE, 3))  # others still load


def test_wrong_frames_shape_and_dtype(small):
  root, _ = small
  frames_path = root / "clips" / "c2" / "frames.npy"
  np.save(frames_path, np.zeros((6, SIZE, SIZE + 1, 3), np.uint8))
  data = ds.Dataset(root)
  with pytest.raises(ds.DatasetError, match=(
      r"clip 'c2': frames.npy: shape \(6, 16, 17, 3\), expected \(6, 16, 16, 3\) = "
      r"\[T, S, S, 3\] with T=6, N=4340, S=16")):
    data.validate(full=False)
  np.save(frames_path, np.zeros((6, SIZE, SIZE, 3), np.float32))
  with pytest.raises(ds.DatasetError, match="clip 'c2': frames.npy: dtype float32, expected uint8"):
    _ = data.clip("c2").frames


def test_image_size_mismatch(small):
  root, _ = small
  _edit_manifest(root, lambda m: m.update(image_size=32))
  with pytest.raises(ds.DatasetError, match=r"clip 'c0': frames.npy: shape .* S=32"):
    ds.Dataset(root).validate(full=False)


@pytest.mark.parametrize("name,bad_shape", [("landmarks", (4, 68, 2)), ("expression", (6, 3)),
                                            ("pose", (4, 6))])
def test_per_frame_arrays_must_have_length_t(small, name, bad_shape):
  root, _ = small
  np.save(root / "clips" / "c0" / f"{name}.npy", np.zeros(bad_shape, np.float32))
  with pytest.raises(ds.DatasetError, match=rf"clip 'c0': {name}.npy: shape .* T=5"):
    ds.Dataset(root).validate(full=False)


def test_missing_and_truncated_array_files(small):
  root, _ = small
  os.remove(root / "clips" / "c1" / "landmarks.npy")
  data = ds.Dataset(root)
  with pytest.raises(ds.DatasetError, match=r"clip 'c1': landmarks.npy: missing file"):
    data.validate()
  pose = root / "clips" / "c2" / "pose.npy"
  pose.write_bytes(pose.read_bytes()[:100])
  with pytest.raises(ds.DatasetError, match=r"clip 'c2': pose.npy: not a readable .npy file"):
    _ = data.clip("c2").pose


def test_full_validation_reads_values(small):
  root, _ = small
  pose = np.zeros((6, 6), np.float32)
  pose[2, 1] = np.nan
  np.save(root / "clips" / "c2" / "pose.npy", pose)
  data = ds.Dataset(root)
  data.validate(full=False)  # headers are fine
  with pytest.raises(ds.DatasetError, match=r"clip 'c2': pose.npy: contains NaN"):
    data.validate(full=True)


@pytest.mark.parametrize("edit,message", [
    (lambda m: m["clips"][2].update(id="c0"), r"clips\[2\] \(id 'c0'\): duplicate clip id"),
    (lambda m: m["clips"][0].update(identity="zoe"), "identity 'zoe' is not listed"),
    (lambda m: m["clips"][0].update(num_frame=3), r"unknown field\(s\) \['num_frame'\]"),
    (lambda m: m["clips"][0].pop("split"), r"missing field\(s\) \['split'\]"),
    (lambda m: m["clips"][0].update(path="../elsewhere"), "relative directory inside"),
    (lambda m: m.update(fps=25.0), "fps must be a positive integer"),
    (lambda m: m.pop("generator"), r"missing field\(s\) \['generator'\]"),
])
def test_manifest_field_errors(small, edit, message):
  root, _ = small
  _edit_manifest(root, edit)
  with pytest.raises(ds.DatasetError, match=message):
    ds.Dataset(root)


def test_add_clip_rejects_bad_arrays_before_writing(tmp_path):
  root = tmp_path / "data"
  with _writer(root) as writer:
    with pytest.raises(ds.DatasetError, match="clip 'x': audio has 3260 samples for 4 frames"):
      writer.add_clip("x", **_meta(), **_arrays(0, 4, extra_samples=700))
    bad = _arrays(0, 4)
    bad["frames"] = bad["frames"].astype(np.float32) / 255
    with pytest.raises(ds.DatasetError, match="clip 'x': frames.npy: frames must be uint8"):
      writer.add_clip("x", **_meta(), **bad)
    bad = _arrays(0, 4)
    bad["audio"] = bad["audio"] * 3
    with pytest.raises(ds.DatasetError, match=r"audio.npy: samples outside \[-1, 1\]"):
      writer.add_clip("x", **_meta(), **bad)
    with pytest.raises(ds.DatasetError, match="clip '.x': id '.x' is not a valid clip id"):
      writer.add_clip(".x", **_meta(), **_arrays(0, 4))
    writer.add_clip("x", **_meta(), **_arrays(0, 4))
    with pytest.raises(ds.DatasetError, match="clip 'x': already in the dataset"):
      writer.add_clip("x", **_meta(), **_arrays(0, 4))
  assert sorted(os.listdir(root / "clips")) == ["x"]


def test_float64_inputs_are_stored_as_float32(tmp_path):
  arrays = {k: (v.astype(np.float64) if v.dtype == np.float32 else v)
            for k, v in _arrays(0, 3).items()}
  with _writer(tmp_path) as writer:
    writer.add_clip("a", **_meta(), **arrays)
  clip = ds.Dataset(tmp_path).clip("a")
  assert clip.pose.dtype == np.float32
  np.testing.assert_array_equal(clip.pose, arrays["pose"].astype(np.float32))


def test_resume_appends_without_duplicates(small):
  root, arrays = small
  with _writer(root, provenance={"resumed": True}) as writer:
    assert len(writer) == 3 and writer.has_clip("c1") and not writer.has_clip("c3")
    writer.add_clip("c3", **_meta("cleo", "test"), **_arrays(3, 2))
  data = ds.Dataset(root)
  assert [c.id for c in data] == ["c0", "c1", "c2", "c3"]
  assert data.provenance == {"tool": "test", "resumed": True}
  assert data.identities["anna"] == {"gender": "f", "seed": 3}  # kept across the resume
  np.testing.assert_array_equal(data.clip("c0").frames, arrays["c0"]["frames"])


@pytest.mark.parametrize("overrides,field", [({"fps": 30}, "fps"),
                                             ({"image_size": 32}, "image_size"),
                                             ({"generator": {"seed": 1}}, "generator")])
def test_resume_with_different_fields_is_refused(small, overrides, field):
  root, _ = small
  with pytest.raises(ds.DatasetError, match=f"cannot append: the dataset has {field}="):
    _writer(root, **overrides)


def test_resume_after_crash_recovers_finished_clips_and_drops_half_written(tmp_path):
  root = tmp_path / "data"
  writer = _writer(root)
  writer.add_clip("done", **_meta(), **_arrays(0, 3))
  # A crash: the writer is never closed, and a clip was mid-write in its temporary directory.
  half = root / "clips" / ".tmp-next-abc123"
  half.mkdir()
  np.save(half / "frames.npy", np.zeros((3, SIZE, SIZE, 3), np.uint8))
  assert len(ds.Dataset(root)) == 0  # the manifest on disk predates the clip
  with _writer(root) as resumed:
    assert resumed.has_clip("done") and not resumed.has_clip("next")
    assert not half.exists()
    resumed.add_clip("next", **_meta(), **_arrays(1, 3))
  data = ds.Dataset(root)
  assert [c.id for c in data] == ["done", "next"]
  data.validate()


def test_failed_write_leaves_no_clip(tmp_path, monkeypatch):
  root = tmp_path / "data"
  writer = _writer(root)
  calls = []

  def failing_save(file, array, allow_pickle):
    calls.append(array.shape)
    if len(calls) == 3:
      raise OSError("disk full")
    np.lib.format.write_array(file, array, allow_pickle=allow_pickle)

  monkeypatch.setattr(ds.np, "save", failing_save)
  with pytest.raises(OSError, match="disk full"):
    writer.add_clip("c", **_meta(), **_arrays(0, 3))
  monkeypatch.undo()
  assert not writer.has_clip("c") and os.listdir(root / "clips") == []
  writer.add_clip("c", **_meta(), **_arrays(0, 3))
  writer.close()
  assert [c.id for c in ds.Dataset(root)] == ["c"]


def test_context_manager_writes_manifest_on_error(tmp_path):
  with pytest.raises(RuntimeError, match="generator crashed"):
    with _writer(tmp_path) as writer:
      writer.add_clip("a", **_meta(), **_arrays(0, 2))
      raise RuntimeError("generator crashed")
  assert [c.id for c in ds.Dataset(tmp_path)] == ["a"]
  with pytest.raises(ds.DatasetError, match="add_clip after close"):
    writer.add_clip("b", **_meta(), **_arrays(1, 2))


def test_stray_directory_is_reported_not_deleted(tmp_path):
  _writer(tmp_path).close()
  (tmp_path / "clips" / "mine").mkdir()
  with pytest.raises(ds.DatasetError, match="mine is not a clip written by DatasetWriter"):
    _writer(tmp_path)
  assert (tmp_path / "clips" / "mine").is_dir()


def test_writer_rejects_bad_fields(tmp_path):
  with pytest.raises(ValueError, match="image_size must be a positive integer"):
    _writer(tmp_path, image_size=0)
  with pytest.raises(ValueError, match="expression_names must be distinct"):
    _writer(tmp_path, expression_names=["a", "a"])
  with pytest.raises(ValueError, match="generator must be JSON-serialisable"):
    _writer(tmp_path, generator={"rng": np.random.default_rng(0)})


def test_clip_record_round_trip_and_errors():
  record = ds.ClipRecord(id="a-1.b_2", identity="x", voice="y", language="en", split="custom",
                         num_frames=3, num_samples=1920, path="clips/a-1.b_2", text="hi")
  assert ds.ClipRecord.from_dict(record.to_dict()) == record
  assert "source" not in record.to_dict()
  with pytest.raises(ValueError, match="num_frames must be a positive integer"):
    ds.ClipRecord.from_dict({**record.to_dict(), "num_frames": 0})
  with pytest.raises(ValueError, match="id 'a/b' is not a valid clip id"):
    ds.ClipRecord.from_dict({**record.to_dict(), "id": "a/b"})
  assert "phonemes" not in record.to_dict()
  spoken = dataclasses.replace(record, phonemes=[["h", 0.0, 0.05], ["i", 0.05, 0.12]])
  assert ds.ClipRecord.from_dict(json.loads(json.dumps(spoken.to_dict()))) == spoken
  with pytest.raises(ValueError, match="phoneme 1 .* is out of time order"):
    dataclasses.replace(record, phonemes=[["h", 0.0, 0.05], ["i", 0.01, 0.12]])
  with pytest.raises(ValueError, match=r"phoneme 0 must be \[symbol, start_s, end_s\]"):
    dataclasses.replace(record, phonemes=[["h", 0.0]])


def test_optional_head_mask_round_trips_and_old_clips_stay_readable(small, tmp_path):
  root, _ = small
  clip = ds.Dataset(root).clip("c0")
  assert not clip.has("head_mask")          # written without one: still valid, no mask
  clip.validate(check_values=True)
  with pytest.raises(ds.DatasetError, match="missing file"):
    clip.head_mask
  other = tmp_path / "masked"
  arrays = _arrays(3, 4)
  mask = np.random.default_rng(0).integers(0, 2, (4, SIZE, SIZE)).astype(bool)
  with _writer(other) as writer:
    writer.add_clip("m0", **_meta(), **arrays, head_mask=mask)
    with pytest.raises(ds.DatasetError, match=r"clip 'm1': head_mask.npy: values other than 0"):
      writer.add_clip("m1", **_meta(), **arrays, head_mask=2 * mask.astype(np.uint8))
    with pytest.raises(ds.DatasetError, match=r"head_mask.npy: shape \(3, 16, 16\)"):
      writer.add_clip("m2", **_meta(), **arrays, head_mask=mask[:3])
  clip = ds.Dataset(other).clip("m0")
  assert clip.has("head_mask") and clip.head_mask.dtype == np.uint8
  np.testing.assert_array_equal(clip.head_mask, mask)
  clip.validate(check_values=True)
  np.save(clip.directory / "head_mask.npy", np.full((4, SIZE, SIZE), 3, np.uint8))
  with pytest.raises(ds.DatasetError, match="values other than 0 and 1"):
    ds.Dataset(other).validate(full=True)


def test_identity_clips_of_a_split_or_a_named_error(tmp_path):
  from talking_heads.pipelines import testing  # pylint: disable=g-import-not-at-top
  testing.write_random_dataset(tmp_path, [6, 6, 6], image_size=16, splits=["train", "train", "val"])
  data = ds.Dataset(tmp_path)
  assert [c.id for c in data.identity_clips("train", "id0")] == [
      c.id for c in data.clips("train") if c.identity == "id0"] != []
  with pytest.raises(ValueError, match="no clips of identity 'id9' in split 'val'"):
    data.identity_clips("val", "id9")
