"""The notebooks' set-up: install what the package needs, keeping the jax that is installed.

A notebook's first cell finds (or clones) the checkout, changes into it and calls `install()`.
On Colab and TPU VMs jax comes preinstalled with its accelerator plugin; `pip install -e .`
alone could replace it when another requirement asks for a newer one, so the installed jax and
jaxlib are pinned on pip's command line: pip then picks versions of the rest that work with them,
or fails saying which requirement conflicts.
"""

from __future__ import annotations

import importlib.metadata
import pathlib
import re
import subprocess
import sys
import tomllib
from typing import Sequence

KEPT = ("jax", "jaxlib")


def requirement_name(requirement: str) -> str:
  """'jax>=0.10' -> 'jax'; 'opencv-python-headless>=4.10,<5' -> 'opencv-python-headless'."""
  return re.match(r"[A-Za-z0-9_.-]+", requirement.strip()).group(0)


def missing_requirements(pyproject: str | pathlib.Path, extras: Sequence[str] = ("data",)
                         ) -> list[str]:
  """The requirements of `pyproject` (with `extras`) that have no installed distribution."""
  project = tomllib.loads(pathlib.Path(pyproject).read_text())["project"]
  requirements = list(project["dependencies"])
  for extra in extras:
    requirements += project["optional-dependencies"][extra]
  missing = []
  for requirement in requirements:
    try:
      importlib.metadata.version(requirement_name(requirement))
    except importlib.metadata.PackageNotFoundError:
      missing.append(requirement)
  return missing


def install_command(root: str | pathlib.Path, extras: Sequence[str] = ("data",)) -> list[str]:
  """pip installing the checkout at `root` (editable, with `extras`), the installed jax pinned."""
  kept = []
  for name in KEPT:
    try:
      kept.append(f"{name}=={importlib.metadata.version(name)}")
    except importlib.metadata.PackageNotFoundError:
      pass
  target = f"{pathlib.Path(root)}[{','.join(extras)}]" if extras else str(root)
  return [sys.executable, "-m", "pip", "install", "-q", "-e", target, *kept]


def install(root: str | pathlib.Path = ".", extras: Sequence[str] = ("data",)) -> list[str]:
  """Installs the checkout when any of its requirements is missing; returns the missing ones."""
  missing = missing_requirements(pathlib.Path(root) / "pyproject.toml", extras)
  if missing:
    print("installing talking_heads from its metadata (missing: " + ", ".join(missing) + ")")
    subprocess.run(install_command(root, extras), check=True)
  return missing
