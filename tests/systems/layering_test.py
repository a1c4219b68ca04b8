"""The import structure the design promises: the library stands alone, and no paper system
imports another (shared code lives in shared modules and the experts package)."""

import ast
import pathlib

from talking_heads.systems import api

ROOT = pathlib.Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "talking_heads"


def imported_modules(path: pathlib.Path) -> set[str]:
  tree = ast.parse(path.read_text())
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      names.add(node.module)
      names.update(f"{node.module}.{a.name}" for a in node.names)
  return names


def test_library_imports_neither_experiments_nor_data():
  offenders = {str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p)
                                                 if m.split(".")[0] in ("experiments", "data"))
               for p in LIBRARY.rglob("*.py")}
  assert {p: m for p, m in offenders.items() if m} == {}


def test_no_paper_system_imports_another_system():
  systems = api.systems()
  papers = {name for name, s in systems.items() if s.paper}
  assert {"ladtalk", "dae_talker"} <= papers
  violations = {}
  for name in systems:
    for path in (LIBRARY / "systems" / name).rglob("*.py"):
      others = sorted(m for m in imported_modules(path)
                      if m.startswith("talking_heads.systems.")
                      and m.split(".")[2] in papers and m.split(".")[2] != name)
      if others:
        violations[str(path.relative_to(ROOT))] = others
  assert violations == {}


def test_training_and_lower_layers_name_no_system():
  """The trainer finds stages through the declarations; nothing below systems/ names one."""
  for folder in ("training", "models", "nn", "losses", "metrics", "pipelines", "diffusion", "audio",
                 "face", "io", "analysis"):
    for path in (LIBRARY / folder).rglob("*.py"):
      assert not any(m.startswith("talking_heads.systems") for m in imported_modules(path)), path
      text = path.read_text()
      for system in api.systems():
        assert f"systems.{system}" not in text, (path, system)


def test_every_declared_stage_generator_and_part_resolves():
  for system in api.systems().values():
    for path in system.stages.values():
      assert isinstance(api.resolve(path), type)
    for generator in system.generators:
      assert callable(generator.loader())
    if system.main_part is not None:
      assert callable(api.resolve(system.main_part.run))
