"""Test setup: 8 fake CPU devices, the persistent compilation cache, parsed absl flags (grain
reads flags at runtime), an untrained-workdir fixture, parity-test guards."""

import os
import re

import pytest

DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


def _with_device_count(xla_flags: str, count: int) -> str:
  """`xla_flags` with the host device count set to `count` (an earlier count is replaced)."""
  kept = [flag for flag in xla_flags.split() if not flag.startswith(DEVICE_COUNT_FLAG)]
  return " ".join(kept + [f"{DEVICE_COUNT_FLAG}={count}"])


# Must be set before jax is imported anywhere; flags the caller set (even an empty XLA_FLAGS) stay.
os.environ["XLA_FLAGS"] = _with_device_count(os.environ.get("XLA_FLAGS", ""), 8)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from absl import flags  # noqa: E402

from talking_heads import compilation_cache  # noqa: E402

# Tests compile the same tiny programs again and again (and in their subprocesses, which enable it
# too): the persistent cache roughly halves the suite. TALKING_HEADS_COMPILATION_CACHE=off disables it.
compilation_cache.enable()

if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()


@pytest.fixture
def untrained_workdir(tmp_path):
  """Writes a workdir of a config's stage holding only checkpoint 0 of zeros, as a run that
  failed before its first step used to leave, and returns its path (loaders must refuse it
  before reading weights)."""
  from talking_heads.training import state_workdirs as workdirs  # pylint: disable=g-import-not-at-top

  def write(config, name="untrained"):
    return workdirs.write_state_workdir(tmp_path / name, config, step=0, fill=workdirs.zeros)
  return write


# Reference packages only the extras environment has (requirements-extras.txt); a test that needs
# one is a parity test, which CI runs there (experiments/test_parity.sh).
_MISSING_REFERENCE = re.compile(r"could not import '(torch|diffusers|cpbd|dlib)'")


def pytest_addoption(parser):
  parser.addoption("--strict-parity", action="store_true",
                   help="fail parity tests that skip (a reference package or model is missing)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
  del call
  report = (yield).get_result()
  if not report.skipped or hasattr(report, "wasxfail"):
    return
  reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
  is_parity = item.get_closest_marker("parity") is not None
  if is_parity and item.config.getoption("strict_parity"):
    problem = f"parity test skipped under --strict-parity: {reason}"
  elif not is_parity and _MISSING_REFERENCE.search(reason):
    problem = (f"{reason}; a test that needs a reference package must be marked "
               "@pytest.mark.parity (CI runs those in .venv-extras)")
  else:
    return
  report.outcome, report.longrepr = "failed", problem
