"""`third_party/` is the low level: it imports nothing from the library (`talking_heads`), nor
from `experiments` or `data`, so the library can depend on it and not the other way round."""

import ast
import pathlib

THIRD_PARTY = pathlib.Path(__file__).parents[2] / "third_party"
FORBIDDEN = ("talking_heads", "experiments", "data", "tests")


def _imported_modules(path: pathlib.Path) -> list[tuple[int, str]]:
  out = []
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      out.extend((node.lineno, alias.name) for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      out.append((node.lineno, node.module))
  return out


def test_third_party_imports_nothing_from_the_library():
  files = sorted(THIRD_PARTY.glob("**/*.py"))
  assert len(files) >= 8, files   # reader, convert, weights and the key layouts
  bad = [f"{path.relative_to(THIRD_PARTY.parent)}:{line} imports {module}"
         for path in files for line, module in _imported_modules(path)
         if module.split(".")[0] in FORBIDDEN]
  assert not bad, "\n".join(bad)
