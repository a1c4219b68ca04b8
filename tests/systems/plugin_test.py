"""A system package outside the library (tests/fixtures/fake_systems) trains, generates and is
found by every launcher through its declaration alone; the main job's report with it is checked
in tests/experiments/main_test.py."""

import pathlib
import sys

import numpy as np
import pytest

from experiments import generate as generate_command
from experiments import main as main_command
from talking_heads.io import audio as audio_io
from talking_heads.io import video as video_io
from talking_heads.systems import api
from talking_heads.training import loop, registry

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def fake_system():
  sys.path.insert(0, str(FIXTURES))
  api.add_package("fake_systems")
  yield api.get("fake_talker")
  api._PACKAGES.remove("fake_systems")   # pylint: disable=protected-access
  sys.path.remove(str(FIXTURES))


def test_fake_system_trains_and_generates(fake_system, tmp_path):
  assert "fake_talker" in registry.names() and "fake_talker" in api.generators()
  config = main_command.stage_config("fake_talker", "tiny", "")
  result = loop.train_and_evaluate(config, str(tmp_path / "workdir"))
  assert result.step == 50 and result.history[-1]["loss"] < result.history[0]["loss"]

  t = np.arange(16000 * 2) / 16000
  audio = (0.5 * np.sin(2 * np.pi * 220 * t) * (t > 1.0)).astype(np.float32)  # silent, then loud
  audio_io.write_wav(tmp_path / "speech.wav", audio, 16000)
  out = tmp_path / "out.mp4"
  made = generate_command.generate(generate_command.Request(
      system="fake_talker", audio=str(tmp_path / "speech.wav"), video=None, out=str(out),
      weights={"fake_talker_workdir": str(tmp_path / "workdir")}))
  frames = made.result.frames
  assert made.summary["sources"]["fake_talker"].endswith("step 50")
  # The learnt map (grey = 0.2 + 0.6 loudness) shows in the frames: dark when silent, bright when loud.
  assert frames[:20].mean() < 80 and frames[-20:].mean() > 180
  assert video_io.read_video(out)[0].shape[0] == frames.shape[0]


def test_main_job_orders_and_selects_parts(fake_system):
  names = [s.name for s, _ in api.main_parts()]
  assert names.index("experts") < names.index("ladtalk") and "fake_talker" in names
  selected = [s.name for s, _ in main_command.selected_parts(["ladtalk"])]
  assert selected == ["experts", "ladtalk"]   # a selected part brings the parts it needs
  assert [s.name for s, _ in main_command.selected_parts(["fake_talker"])] == ["fake_talker"]
