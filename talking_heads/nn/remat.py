"""Rematerialisation (activation checkpointing) of a model's repeated blocks, one switch per model.

With `blocks(cls, True)` a block keeps only its inputs from the forward pass and recomputes its
activations in the backward pass: a training step's peak memory falls with the blocks' activations
for about one more forward pass of compute, and the gradients are the same (tests/nn/remat_test.py).
Parameter names do not change, so a checkpoint trained either way loads both ways.
"""

from __future__ import annotations

from typing import Sequence, TypeVar

import flax.linen as nn

ModuleType = TypeVar("ModuleType", bound=type[nn.Module])


def blocks(cls: ModuleType, enabled: bool, static_argnums: Sequence[int] = ()) -> ModuleType:
  """`cls` rematerialised when `enabled`, else `cls` itself.

  Args:
    cls: the block's module class.
    enabled: the model's `remat` field.
    static_argnums: positions of `__call__`'s Python arguments (`self` is 0), e.g. a `train`
      flag that selects dropout, passed positionally.
  """
  return nn.remat(cls, static_argnums=tuple(static_argnums)) if enabled else cls
