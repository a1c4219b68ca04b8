"""The notebooks of experiments/notebooks/ run top to bottom, and each .ipynb matches its source.

Each notebook's jupytext source (`<name>.py`, percent format) is converted and executed in a fresh
IPython kernel of this Python (`sys.executable`), with the parameters cell (tag "parameters",
papermill's convention) followed by an injected cell: `VARIANT = "tiny"` and one `WORKDIR` shared
by the notebooks of the run, so the corpus and the expert the first notebook builds are reused
(each notebook still builds what is missing). A cell that raises fails the test with its
traceback. The checked-in `<name>.ipynb` (what Colab opens) must hold the source's cells, without
outputs. Run by `bash experiments/test_notebooks.sh` (marker `notebook`; not in the default suite).
"""

import importlib
import json
import os
import pathlib
import re
import sys
import time
import types

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "experiments" / "notebooks"
# Run order: later notebooks reuse the corpus and expert of earlier ones in the shared WORKDIR.
NAMES = ("quickstart", "ladtalk", "dae_talker", "fd2talk", "pir", "radio", "scale_out")
# Under `pytest -n 2 --dist loadgroup` (experiments/test_notebooks.sh) the notebooks that share a
# corpus and expert run in order in one worker, scale_out (its own corpus) beside them.
RUNS = [pytest.param(name, marks=pytest.mark.xdist_group(
    "scale_out" if name == "scale_out" else "shared_corpus")) for name in NAMES]
CELL_TIMEOUT_S = 3600   # generous: a shared, loaded machine is many times slower
# Appended to each run: the kernel's CPU seconds (its own and its finished children's).
CPU_CELL = """import resource
print("kernel cpu seconds:", sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, (
    resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))))"""

pytestmark = pytest.mark.notebook


@pytest.fixture(scope="module")
def tools() -> types.SimpleNamespace:
  """jupytext, nbclient, nbformat and jupyter_client (requirements-notebooks.txt)."""
  names = ("jupytext", "nbclient", "nbformat", "jupyter_client.kernelspec",
           "jupyter_client.manager")
  try:
    modules = [importlib.import_module(name) for name in names]
  except ImportError as e:
    pytest.fail(f"{e.name} is missing: run `bash experiments/test_notebooks.sh`, which installs "
                "requirements-notebooks.txt")
  return types.SimpleNamespace(**{name.split(".")[-1]: m for name, m in zip(names, modules)})


def test_every_notebook_is_listed():
  """Every jupytext source (a .py with cell markers; not the helper modules) runs here."""
  sources = [p.stem for p in NOTEBOOKS.glob("*.py") if "\n# %%" in p.read_text()]
  assert sorted(sources) == sorted(NAMES)


def with_parameters(notebook, values: dict[str, object], nbformat: types.ModuleType):
  """`notebook` with a cell setting `values` after its "parameters" cell, which must define each."""
  index = next((i for i, cell in enumerate(notebook.cells)
                if "parameters" in cell.metadata.get("tags", [])), None)
  assert index is not None, "the notebook has no cell tagged 'parameters'"
  defined = notebook.cells[index].source
  for name in values:
    assert f"\n{name} = " in f"\n{defined}", f"the parameters cell does not define {name}"
  source = "\n".join(f"{name} = {value!r}" for name, value in values.items())
  cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
  notebook.cells.insert(index + 1, cell)
  return notebook


def kernel_manager(directory: pathlib.Path, tools: types.SimpleNamespace):
  """A kernel of this Python, whatever kernelspecs the machine has."""
  spec_dir = directory / "kernels" / "talking_heads"
  spec_dir.mkdir(parents=True, exist_ok=True)
  (spec_dir / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      "display_name": f"Python {sys.version.split()[0]} (talking_heads tests)",
      "language": "python"}))
  specs = tools.kernelspec.KernelSpecManager(kernel_dirs=[str(directory / "kernels")])
  return tools.manager.KernelManager(kernel_name="talking_heads", kernel_spec_manager=specs)


def kernel_environment() -> dict[str, str]:
  """This process's environment less the fake-device flag conftest adds: notebooks choose their
  own devices (scale_out asks for 8 CPU devices before importing jax)."""
  env = dict(os.environ)
  flags = [f for f in env.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  env["XLA_FLAGS"] = " ".join(flags)
  env.setdefault("JAX_PLATFORMS", "cpu")
  return env


@pytest.fixture(scope="session")
def shared_workdir(tmp_path_factory):
  return tmp_path_factory.mktemp("notebooks_workdir")


@pytest.mark.parametrize("name", RUNS)
def test_notebook_runs(name, tools, shared_workdir, tmp_path, record_property):
  """Every cell runs without error; the wall time and the kernel's CPU time are recorded
  (conftest prints them after the run)."""
  notebook = with_parameters(tools.jupytext.read(NOTEBOOKS / f"{name}.py"),
                             {"VARIANT": "tiny", "WORKDIR": str(shared_workdir)}, tools.nbformat)
  notebook.cells.append(tools.nbformat.v4.new_code_cell(CPU_CELL))
  km = kernel_manager(tmp_path, tools)
  client = tools.nbclient.NotebookClient(notebook, km=km, timeout=CELL_TIMEOUT_S,
                                         resources={"metadata": {"path": str(ROOT)}})
  start = time.perf_counter()
  try:
    client.execute(env=kernel_environment())   # raises CellExecutionError on a failing cell
  finally:
    if km.has_kernel:   # a client given its kernel manager leaves the kernel running
      km.shutdown_kernel(now=True)
  record_property("wall_s", round(time.perf_counter() - start, 1))
  errors = [o for cell in notebook.cells for o in cell.get("outputs", [])
            if o.output_type == "error"]
  assert not errors
  printed = "".join(o.get("text", "") for o in notebook.cells[-1].outputs)
  record_property("kernel_cpu_s", round(float(re.search(r"kernel cpu seconds: (\S+)",
                                                        printed).group(1)), 1))


@pytest.mark.parametrize("name", NAMES)
def test_ipynb_matches_its_source(name, tools):
  """The .ipynb beside each source is its jupytext conversion, outputs stripped: regenerate it
  with `jupytext --to ipynb experiments/notebooks/<name>.py`."""
  source = tools.jupytext.read(NOTEBOOKS / f"{name}.py")
  stored = tools.nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)

  def cells(notebook):
    return [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in notebook.cells]

  assert cells(stored) == cells(source), (
      f"{name}.ipynb is out of date: run `jupytext --to ipynb experiments/notebooks/{name}.py`")
  leftovers = [i for i, c in enumerate(stored.cells)
               if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
  assert not leftovers, f"{name}.ipynb keeps outputs in cells {leftovers}: strip them"
