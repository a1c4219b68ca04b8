"""FD2Talk's sizes: the paper-size parameter counts stated in `sizes` are what the networks
build (jax.eval_shape, nothing allocated)."""

import pytest

from talking_heads.systems.fd2talk import sizes


def test_paper_parameter_counts_are_as_stated():
  assert sizes.parameter_counts("paper") == sizes.PAPER_PARAMETERS


def test_variants_and_bad_names():
  assert sizes.sizes("paper").latent_size == 64 and sizes.sizes("demo").latent_size == 16
  assert sizes.sizes("tiny").latent_size == 8
  with pytest.raises(ValueError, match="unknown FD2Talk variant 'huge'"):
    sizes.sizes("huge")
