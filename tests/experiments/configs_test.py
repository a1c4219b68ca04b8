"""Every config builds for every variant, and names a registered stage."""

import importlib.util
import json
import pathlib
import re

import jax
import pytest

from experiments.configs import common
from talking_heads.training import registry

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "configs"
CONFIG_FILES = sorted(p for p in CONFIG_DIR.rglob("*.py") if p.name not in ("__init__.py", "common.py"))
SNAPSHOT = pathlib.Path(__file__).resolve().parent / "fixtures" / "config_snapshot.json"


def load(path):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_there_are_configs():
  assert CONFIG_FILES


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.stem)
@pytest.mark.parametrize("variant", common.VARIANTS)
def test_config_builds(path, variant):
  module = load(path)
  assert "python -m experiments.train" in module.__doc__, "launch command belongs in the docstring"
  config = module.get_config(variant)
  assert config.variant == variant
  assert config.stage in registry.names()
  for key in ("total_steps", "batch_size", "log_every", "checkpoint_every", "mesh", "optimizer"):
    assert key in config
  stage = registry.build(config)
  abstract = jax.eval_shape(stage.init_state, jax.random.PRNGKey(0))
  assert int(abstract.step.size) == 1


def test_overrides_in_the_config_argument():
  module = load(CONFIG_DIR / "frame_autoencoder.py")
  config = module.get_config("tiny,total_steps=7,optimizer.learning_rate=0.5")
  assert config.total_steps == 7 and config.optimizer.learning_rate == 0.5
  with pytest.raises(ValueError, match="variant"):
    module.get_config("huge")


def test_config_argument_tuples_keep_their_commas():
  parsed = common.parse_arg("tiny,model.channels=(8,16),seed=3")
  assert parsed == common.ParsedArg("tiny", {"model.channels": (8, 16), "seed": 3})


def test_trainer_defaults_table_is_documented():
  """The table in `common`'s docstring matches `common.TRAINER_DEFAULTS`."""
  for field in common.TRAINER_DEFAULTS["tiny"]:
    values = (str(common.TRAINER_DEFAULTS[v][field]) for v in common.VARIANTS)
    row = r"\s+".join([re.escape(field), *values])
    assert re.search(rf"^  {row}$", common.__doc__, re.M), field


def all_configs() -> dict:
  """{'experts/syncnet': {'tiny': config dict, ...}, ...} for every config under experiments/configs."""
  paths = sorted(p for p in CONFIG_DIR.rglob("*.py") if p.name not in ("__init__.py", "common.py"))
  return {p.relative_to(CONFIG_DIR).with_suffix("").as_posix():
          {v: load(p).get_config(v).to_dict() for v in common.VARIANTS} for p in paths}


def _canonical(x, lists_are_tuples=False):
  """Key-order-insensitive, type-strict form (1 != 1.0, (1,) != [1]); JSON has no tuples."""
  if isinstance(x, dict):
    return tuple(sorted((k, _canonical(v, lists_are_tuples)) for k, v in x.items()))
  if isinstance(x, (list, tuple)):
    kind = "tuple" if lists_are_tuples else type(x).__name__
    return (kind, tuple(_canonical(v, lists_are_tuples) for v in x))
  return (type(x).__name__, x)


def test_variant_defaults_change_no_config():
  """Every stage x variant config equals the committed snapshot (taken before the per-variant trainer
  defaults moved into `common.TRAINER_DEFAULTS`). Regenerate only for an intended config change:
    PYTHONPATH=. python tests/experiments/configs_test.py
  """
  snapshot, current = json.loads(SNAPSHOT.read_text()), all_configs()
  assert sorted(current) == sorted(snapshot)
  for name in snapshot:
    for variant in common.VARIANTS:
      expected = _canonical(snapshot[name][variant], lists_are_tuples=True)
      assert _canonical(current[name][variant]) == expected, (name, variant)


if __name__ == "__main__":
  SNAPSHOT.write_text(json.dumps(all_configs(), indent=1, sort_keys=True) + "\n")
