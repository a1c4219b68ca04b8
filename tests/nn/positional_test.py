"""Sinusoidal positional encodings: the Transformer's formula and the row/column layout."""

import numpy as np
import pytest

from talking_heads.nn import positional


def test_1d_is_the_transformer_formula():
  pe = positional.sinusoidal_1d(7, 6)
  n, i = 5, 1
  assert np.isclose(pe[n, 2 * i], np.sin(n / 10000 ** (2 * i / 6)))
  assert np.isclose(pe[n, 2 * i + 1], np.cos(n / 10000 ** (2 * i / 6)))
  assert positional.sinusoidal_1d(3, 5).shape == (3, 5)


def test_2d_rows_then_columns_in_row_major_order():
  pe = positional.sinusoidal_2d(3, 4, 8)
  rows, cols = positional.sinusoidal_1d(3, 4), positional.sinusoidal_1d(4, 4)
  np.testing.assert_array_equal(pe[2 * 4 + 1], np.concatenate([rows[2], cols[1]]))
  with pytest.raises(ValueError, match="even"):
    positional.sinusoidal_2d(2, 2, 5)
