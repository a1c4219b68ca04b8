"""Mesh construction and FSDP rules."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from experiments.configs.dae_talker import dae as dae_config
from talking_heads.training import registry, sharding


def test_mesh_shapes():
  mesh = sharding.make_mesh({"data": -1, "fsdp": 2})
  assert dict(mesh.shape) == {"data": 4, "fsdp": 2}
  assert sharding.make_mesh({"data": -1, "fsdp": 1, "num_devices": 1}).size == 1
  with pytest.raises(ValueError, match="does not match"):
    sharding.make_mesh({"data": 3, "fsdp": 2})
  with pytest.raises(ValueError, match="must divide"):
    sharding.make_mesh({"data": -1, "fsdp": 3})


def test_fsdp_shards_large_parameters_and_replicates_small_ones():
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
  tree = {
      "big_kernel": jax.ShapeDtypeStruct((256, 1024), jnp.float32),   # 262144 elements
      "odd_kernel": jax.ShapeDtypeStruct((1001, 999), jnp.float32),   # no dimension divisible by 4
      "bias": jax.ShapeDtypeStruct((1024,), jnp.float32),
      "step": jax.ShapeDtypeStruct((), jnp.int32),
  }
  cfg = ml_collections.ConfigDict({"fsdp_min_size": 2**18, "rules": ()})
  out = sharding.state_shardings(tree, mesh, cfg)
  assert out["big_kernel"].spec == P(None, "fsdp")   # largest divisible dimension
  assert out["odd_kernel"].spec == P()
  assert out["bias"].spec == P()
  assert out["step"].spec == P()
  # Materialised arrays really live split: each device holds a quarter of the kernel's columns.
  x = jax.device_put(jnp.zeros((256, 1024)), out["big_kernel"])
  assert {s.data.shape for s in x.addressable_shards} == {(256, 256)}


def test_regex_rules_override_the_size_rule():
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
  tree = {"embed": jax.ShapeDtypeStruct((512, 1024), jnp.float32), "small": jax.ShapeDtypeStruct((8, 16), jnp.float32)}
  cfg = ml_collections.ConfigDict({"fsdp_min_size": 2**18, "rules": (("^embed$", "replicate"), ("small", "fsdp"))})
  out = sharding.state_shardings(tree, mesh, cfg)
  assert out["embed"].spec == P()
  assert out["small"].spec == P(None, "fsdp")
  with pytest.raises(ValueError, match="tactic"):
    sharding.state_shardings(tree, mesh, ml_collections.ConfigDict({"rules": (("x", "tp"),)}))


def test_batch_sharding_splits_over_both_axes():
  mesh = sharding.make_mesh({"data": 4, "fsdp": 2})
  x = jax.device_put(jnp.zeros((16, 3)), sharding.batch_sharding(mesh))
  assert {s.data.shape for s in x.addressable_shards} == {(2, 3)}


def test_bytes_per_device_is_what_each_device_holds():
  tree = {
      "big_kernel": jax.ShapeDtypeStruct((256, 1024), jnp.float32),   # FSDP: 1 MiB
      "odd_kernel": jax.ShapeDtypeStruct((1001, 999), jnp.float32),   # replicated
      "bias": jax.ShapeDtypeStruct((1024,), jnp.bfloat16),
  }
  cfg = ml_collections.ConfigDict({"fsdp_min_size": 2**18, "rules": ()})
  replicated_bytes = 1001 * 999 * 4 + 1024 * 2
  for fsdp in (1, 2, 4):
    assert sharding.bytes_per_device(tree, fsdp, cfg) == replicated_bytes + 2**20 // fsdp
  # The same as the shards JAX lays out on a real (data 2, fsdp 4) mesh of the 8 test devices.
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
  shardings = sharding.state_shardings(tree, mesh, cfg)
  held = sum(int(np.prod(s.shard_shape(x.shape))) * x.dtype.itemsize
             for x, s in zip(jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(shardings)))
  assert held == sharding.bytes_per_device(tree, 4, cfg)


def test_fsdp_divides_a_paper_state_across_devices():
  """The DAE's paper config (about 0.2 G parameters with Adam moments and EMA): what one device
  holds falls with the fsdp width, to within the small replicated leaves of 1/fsdp."""
  config = dae_config.get_config("paper")
  abstract = jax.eval_shape(registry.build(config).init_state, jax.random.PRNGKey(0))
  held = {f: sharding.bytes_per_device(abstract, f, config.sharding) for f in (1, 2, 4)}
  assert held[1] > 2**31   # over 2 GiB on one device
  assert held[1] / 2 <= held[2] <= 0.55 * held[1]
  assert held[1] / 4 <= held[4] <= 0.3 * held[1]
