"""The test setup itself: fake devices whatever XLA_FLAGS holds, and the parity-test guards."""

import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).parents[1]


def _pytest(args: list[str], **env: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly", *args], cwd=REPO,
                        env={**os.environ, **env}, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("xla_flags", [
    "",  # set but empty
    "--xla_cpu_enable_fast_math=false --xla_force_host_platform_device_count=1"])
def test_sharding_test_sees_8_devices_with_xla_flags_preset(xla_flags):
  run = _pytest(["-q", "tests/training/sharding_test.py::test_batch_sharding_splits_over_both_axes"],
                XLA_FLAGS=xla_flags)
  assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


_GUARDED = '''
import pytest

def test_needs_torch_unmarked():
  pytest.skip("could not import 'torch': No module named 'torch'")

def test_skips_for_another_reason():
  pytest.skip("nothing to do here")

@pytest.mark.parity
def test_parity_reference_missing():
  pytest.skip("could not import 'cpbd': No module named 'cpbd'")
'''


@pytest.mark.parametrize("strict", [False, True])
def test_reference_skips_fail_unless_marked_and_strict_parity_fails_parity_skips(tmp_path, strict):
  (tmp_path / "guarded_test.py").write_text(_GUARDED)
  run = _pytest([str(tmp_path / "guarded_test.py"), "-p", "tests.conftest", "-m", "", "-v",
                 *(["--strict-parity"] if strict else [])])
  out = run.stdout
  assert "test_needs_torch_unmarked FAILED" in out and "must be marked @pytest.mark.parity" in out
  assert "test_skips_for_another_reason SKIPPED" in out, out
  assert f"test_parity_reference_missing {'FAILED' if strict else 'SKIPPED'}" in out, out
  assert (f"{2 if strict else 1} failed, {1 if strict else 2} skipped") in out, out
