"""Patch tokens: layout (row-major grid, each token its patch's (row, column, channel) values) and
the round trip."""

import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.nn import patches


def test_patchify_layout_and_round_trip():
  x = np.arange(2 * 4 * 6 * 3, dtype=np.float32).reshape(2, 4, 6, 3)
  tokens = np.asarray(patches.patchify(jnp.asarray(x), 2))
  assert tokens.shape == (2, 6, 12)
  np.testing.assert_array_equal(tokens[1, 4], x[1, 2:4, 2:4].reshape(-1))   # grid row 1, col 1
  np.testing.assert_array_equal(patches.unpatchify(jnp.asarray(tokens), 2, 4, 6), x)


def test_bad_patch_sizes_are_refused():
  with pytest.raises(ValueError, match="3x3 patches"):
    patches.patchify(jnp.zeros((1, 4, 6, 1)), 3)
  with pytest.raises(ValueError, match="unpatchify"):
    patches.unpatchify(jnp.zeros((1, 5, 4)), 2, 4, 6)
