"""Test setup: 8 fake CPU devices and parsed absl flags (grain reads flags at runtime)."""

import os

# Must be set before jax is imported anywhere.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from absl import flags  # noqa: E402
import pytest  # noqa: E402

if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()


@pytest.fixture
def untrained_workdir(tmp_path):
  """Writes a workdir of a config's stage holding only checkpoint 0, as a run that failed before
  its first step used to leave, and returns its path. The state has the stage's shapes but zeros:
  running the init costs a minute on 2 cores, and loaders must refuse it before reading weights."""
  import jax  # pylint: disable=g-import-not-at-top
  from talking_heads.training import loop, registry  # pylint: disable=g-import-not-at-top
  from talking_heads.training.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top

  def write(config, name="untrained"):
    workdir = str(tmp_path / name)
    abstract = jax.eval_shape(registry.build(config).init_state, jax.random.PRNGKey(config.seed))
    state = jax.tree_util.tree_map(lambda x: jax.numpy.zeros(x.shape, x.dtype), abstract)
    checkpointer = Checkpointer(workdir, async_save=False)
    checkpointer.save(0, state, config=loop.config_to_dict(config))
    checkpointer.close()
    loop.record_config(workdir, loop.config_to_dict(config), 0)
    return workdir
  return write
