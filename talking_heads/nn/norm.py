"""The one GroupNorm helper: a float32 `nn.GroupNorm` whose epsilon and group rule are arguments.

Dimensions: C channels, G groups.

Group rules (both give G = `groups` when it divides C, and G = C when C < `groups`):
  "cap"      G = min(groups, C), which must divide C: PyTorch's GroupNorm(32, C) as used by
             ADM / diffae (`normalization`), so a checkpoint's layout never silently changes.
  "divisor"  G = the largest divisor of C not above `groups`: taming's GroupNorm(32) where 32
             divides C, and a usable grouping for the small widths of test and demo configs.
Epsilons: taming 1e-6 (`TAMING_EPS`), PyTorch's default 1e-5 (`TORCH_EPS`, ADM and diffae).
"""

from __future__ import annotations

from typing import Any, Literal

import flax.linen as nn
import jax.numpy as jnp

GroupRule = Literal["cap", "divisor"]

GROUP_RULES = ("cap", "divisor")
TAMING_EPS = 1e-6
TORCH_EPS = 1e-5


def num_groups(channels: int, groups: int = 32, rule: GroupRule = "divisor") -> int:
  """G for C = `channels` under `rule` (module docstring); raises if "cap" does not divide C."""
  if rule not in GROUP_RULES:
    raise ValueError(f"group rule must be one of {GROUP_RULES}, got {rule!r}")
  if rule == "divisor":
    return max(g for g in range(1, min(groups, channels) + 1) if channels % g == 0)
  n = min(groups, channels)
  if channels % n:
    raise ValueError(f"GroupNorm with {n} groups needs channels divisible by {n}, got {channels}")
  return n


def group_norm(channels: int, *, epsilon: float, rule: GroupRule, param_dtype: Any, name: str,
               groups: int = 32) -> nn.GroupNorm:
  """A GroupNorm over C = `channels` that computes in float32 whatever the compute dtype."""
  try:
    n = num_groups(channels, groups, rule)
  except ValueError as e:
    raise ValueError(f"{name}: {e}") from None
  return nn.GroupNorm(num_groups=n, epsilon=epsilon, dtype=jnp.float32, param_dtype=param_dtype,
                      name=name)
