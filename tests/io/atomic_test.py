"""Atomic outputs respect the umask (as open and mkdir do), here and at every writer that uses them."""

import os
import stat

import numpy as np
import pytest

from data import ingest as ingest_lib
from talking_heads.io import atomic
from talking_heads.io import audio as audio_io
from talking_heads.io import dataset as dataset_lib
from talking_heads.io import video as video_io
from talking_heads.pipelines import base as pipelines_base
from talking_heads.pipelines import testing as pipeline_testing


@pytest.fixture
def umask():
  """Sets the process umask for the test (given back afterwards)."""
  previous = os.umask(0o077)
  yield lambda mask: os.umask(mask)
  os.umask(previous)


def _mode(path):
  return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_file_and_directory_modes_follow_the_umask(tmp_path, umask, mask):
  umask(mask)
  with atomic.output(tmp_path / "out" / "a.json") as tmp:
    tmp.write_text("{}")
  with atomic.output(tmp_path / "clip", directory=True, suffix="") as tmp:
    (tmp / "x.npy").write_bytes(b"x")
  assert (tmp_path / "out" / "a.json").read_text() == "{}"
  assert _mode(tmp_path / "out" / "a.json") == 0o666 & ~mask
  assert _mode(tmp_path / "clip") == 0o777 & ~mask
  assert sorted(p.name for p in tmp_path.iterdir()) == ["clip", "out"]   # no temporaries left


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
  (tmp_path / "a.json").write_text("old")
  for directory, path in ((False, tmp_path / "a.json"), (True, tmp_path / "clip")):
    with pytest.raises(RuntimeError, match="disk full"):
      with atomic.output(path, directory=directory) as tmp:
        (tmp / "half" if directory else tmp).write_text("half")
        raise RuntimeError("disk full")
  assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
  assert (tmp_path / "a.json").read_text() == "old"


def test_videos_audio_datasets_features_and_ingest_summaries_respect_the_umask(tmp_path, umask):
  """Written through mkstemp/mkdtemp they used to be 0600/0700 whatever the umask."""
  umask(0o022)
  frames = np.zeros((4, 16, 16, 3), np.uint8)
  audio = np.zeros(4 * 640, np.float32)
  video_io.write_video(tmp_path / "silent.mp4", frames)
  video_io.write_video_with_audio(tmp_path / "talk.mp4", frames, audio)
  audio_io.write_wav(tmp_path / "speech.wav", audio)
  root = tmp_path / "dataset"
  pipeline_testing.write_random_dataset(root, [12], image_size=16)
  pipelines_base.precompute_features(root)
  ingest_lib.ingest([str(tmp_path / "gone.mp4")], tmp_path / "ingested",
                    ingest_lib.IngestConfig(size=64, landmarks=False), log=lambda line: None)
  clip = root / dataset_lib.CLIPS_DIR / "clip000"
  features = sorted((root / pipelines_base.FEATURES_DIR / "clip000").iterdir())
  files = [tmp_path / "silent.mp4", tmp_path / "talk.mp4", tmp_path / "speech.wav",
           root / dataset_lib.MANIFEST_FILE, *clip.iterdir(), *features,
           tmp_path / "ingested" / ingest_lib.SUMMARY_FILE]
  assert features and {str(f): oct(_mode(f)) for f in files} == {str(f): "0o644" for f in files}
  assert oct(_mode(clip)) == "0o755"
