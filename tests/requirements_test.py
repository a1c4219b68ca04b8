"""The three dependency lists agree: every package the metadata needs (pyproject.toml's
dependencies and `test` extra) is pinned in requirements.txt (the 3.11 suite) and in
requirements-colab.txt (the Python 3.13 lock), so a new dependency fails here in seconds
instead of at CI's Colab step (experiments/setup_colab_env.sh refuses a stale lock)."""

import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
  """'opencv-python-headless>=4.10,<5' -> 'opencv-python-headless' (PEP 503 normalised)."""
  name = re.match(r"\s*([A-Za-z0-9._-]+)", requirement).group(1)
  return re.sub(r"[-_.]+", "-", name).lower()


def _pinned(path: pathlib.Path) -> dict[str, str]:
  pins = {}
  for line in path.read_text().splitlines():
    line = line.split("#", 1)[0].strip()
    if "==" in line and not line.startswith("-"):
      pins[_name(line)] = line.split("==", 1)[1].strip()
  return pins


def _metadata_requirements() -> set[str]:
  project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
  return {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}


def test_every_metadata_dependency_is_pinned_for_the_suite_and_for_colab():
  needed = _metadata_requirements()
  for lock in ("requirements.txt", "requirements-colab.txt"):
    missing = sorted(needed - set(_pinned(ROOT / lock)))
    assert not missing, (f"{lock} does not pin {missing} (pyproject.toml needs them); "
                         + ("add a pin" if lock == "requirements.txt" else
                            "run 'bash experiments/setup_colab_env.sh --relock'"))


def test_the_name_parser_normalises_as_pip_does(tmp_path):
  assert _name("opencv-python-headless>=4.10,<5") == "opencv-python-headless"
  assert _name("python_speech_features>=0.6") == "python-speech-features"
  lock = tmp_path / "r.txt"
  lock.write_text("# c\n-r other.txt\nJAX==0.10.2   # why\ntorch==2.13.0+cpu\nfoo>=1\n")
  assert _pinned(lock) == {"jax": "0.10.2", "torch": "2.13.0+cpu"}
