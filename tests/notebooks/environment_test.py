"""The notebooks' set-up (experiments/notebooks/environment.py): what is missing, and a pip
command that keeps the installed jax."""

import importlib.metadata
import sys

from experiments.notebooks import environment


def write_pyproject(tmp_path, dependencies, data_extra):
  path = tmp_path / "pyproject.toml"
  quoted = lambda names: ", ".join(f'"{n}"' for n in names)  # noqa: E731
  path.write_text(f"[project]\nname = \"x\"\ndependencies = [{quoted(dependencies)}]\n"
                  f"[project.optional-dependencies]\ndata = [{quoted(data_extra)}]\n")
  return path


def test_missing_requirements_lists_uninstalled_ones_with_the_extra(tmp_path):
  pyproject = write_pyproject(tmp_path, ["numpy>=2.0", "no-such-package-th>=1"],
                              ["another-missing-th>=0.2", "jax>=0.10"])
  assert environment.missing_requirements(pyproject) == ["no-such-package-th>=1",
                                                         "another-missing-th>=0.2"]
  assert environment.missing_requirements(pyproject, extras=()) == ["no-such-package-th>=1"]


def test_the_repository_requirements_are_installed_here():
  """This environment (requirements.txt) has everything, so the notebooks install nothing."""
  assert environment.missing_requirements("pyproject.toml") == []


def test_install_command_pins_the_installed_jax(tmp_path):
  command = environment.install_command(tmp_path)
  assert command[:5] == [sys.executable, "-m", "pip", "install", "-q"]
  assert command[5:7] == ["-e", f"{tmp_path}[data]"]
  assert f"jax=={importlib.metadata.version('jax')}" in command
  assert f"jaxlib=={importlib.metadata.version('jaxlib')}" in command


def test_install_runs_pip_only_when_something_is_missing(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(environment.subprocess, "run", lambda cmd, check: calls.append(cmd))
  write_pyproject(tmp_path, ["numpy>=2.0"], [])
  assert environment.install(tmp_path) == [] and calls == []
  write_pyproject(tmp_path, ["numpy>=2.0", "no-such-package-th>=1"], [])
  assert environment.install(tmp_path) == ["no-such-package-th>=1"]
  assert calls == [environment.install_command(tmp_path)]


def test_requirement_names():
  assert environment.requirement_name("opencv-python-headless>=4.10,<5") == "opencv-python-headless"
  assert environment.requirement_name(" orbax-checkpoint>=0.11") == "orbax-checkpoint"
