"""The GroupNorm helper: both group rules, epsilon, float32 compute."""

import flax.linen as nn
import jax.numpy as jnp
import pytest

from talking_heads.nn import norm


def test_num_groups():
  # "divisor" (taming's 32 where it divides, else the largest divisor below).
  assert [norm.num_groups(c) for c in (8, 16, 32, 64, 512, 48, 12)] == [8, 16, 32, 32, 32, 24, 12]
  with pytest.raises(ValueError, match="group rule"):
    norm.num_groups(8, rule="nearest")


def test_group_norm_uses_min_32_channels_groups():
  group_norm = lambda c: norm.group_norm(c, epsilon=norm.TORCH_EPS, rule="cap",
                                         param_dtype=jnp.float32, name="n")
  layer = group_norm(16)
  assert isinstance(layer, nn.GroupNorm) and layer.num_groups == 16 and layer.epsilon == 1e-5
  assert layer.dtype == jnp.float32
  assert group_norm(512).num_groups == 32
  with pytest.raises(ValueError, match="divisible by 32"):
    group_norm(48)
  # The taming settings on the same widths: eps 1e-6, 48 channels in 24 groups.
  taming = norm.group_norm(48, epsilon=norm.TAMING_EPS, rule="divisor", param_dtype=jnp.float32,
                           name="n")
  assert taming.num_groups == 24 and taming.epsilon == 1e-6
