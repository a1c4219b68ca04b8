"""Spearman's rank correlation against scipy (hand-computed cases when scipy is absent); Pearson's
against numpy."""

import numpy as np
import pytest

from talking_heads.metrics import agreement


def test_hand_computed_cases():
  assert agreement.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
  assert agreement.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
  # Ranks (1, 2, 3) vs (1, 3, 2): 1 - 6 * 2 / (3 * 8) = 0.5.
  assert agreement.spearman([0.1, 0.5, 0.9], [1.0, 7.0, 3.0]) == pytest.approx(0.5)
  np.testing.assert_array_equal(agreement.average_ranks([3.0, 1.0, 3.0, 2.0]), [3.5, 1, 3.5, 2])
  assert np.isnan(agreement.spearman([1, 1, 1], [1, 2, 3]))
  assert np.isnan(agreement.spearman([1], [2]))


def test_pearson_matches_numpy_and_is_nan_for_a_constant_side():
  rng = np.random.default_rng(1)
  x, y = rng.normal(size=30), rng.normal(size=30)
  assert agreement.pearson(x, 2 * x + y) == pytest.approx(np.corrcoef(x, 2 * x + y)[0, 1],
                                                          abs=1e-12)
  assert agreement.pearson(x, 3 - x) == pytest.approx(-1.0)
  assert np.isnan(agreement.pearson(np.ones(5), x[:5]))
  with pytest.raises(ValueError, match="one length"):
    agreement.pearson([1, 2], [1, 2, 3])


def test_matches_scipy_with_ties():
  stats = pytest.importorskip("scipy.stats")
  rng = np.random.default_rng(0)
  for n in (2, 5, 40):
    x = rng.integers(0, 6, n).astype(float)      # many ties
    y = x + rng.normal(0, 2, n)
    if np.ptp(x) == 0:
      continue
    assert agreement.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)


def test_bad_samples_are_named():
  with pytest.raises(ValueError, match="one length"):
    agreement.spearman([1, 2], [1, 2, 3])
  with pytest.raises(ValueError, match="finite"):
    agreement.spearman([1, np.nan], [1, 2])


def test_tables_print_an_undefined_agreement_as_nan():
  # Constant LSE-C on one side (e.g. tiny runs score 0 everywhere): rho is NaN, which the JSON
  # round trip turns into "nan"; the DAE-Talker tables must still print.
  from talking_heads.io import reports  # pylint: disable=g-import-not-at-top
  from talking_heads.systems.dae_talker import evaluation  # pylint: disable=g-import-not-at-top
  from talking_heads.systems.experts import sync_expert  # pylint: disable=g-import-not-at-top
  rows = [{"lse_c": 0.0, "lse_c_second": v} for v in (0.1, 0.3, 0.2)]
  metrics = dict(lse_d=1.0, lse_c=0.0, lmd=2.0, flicker=0.1, flicker_error=0.2,
                 landmark_jitter=0.3)
  results = {"identity": "id0", "sample_steps": 2, "lse_expert": "S", "second_lse_expert": "colour",
             "lip_sync": {"rows": {"test": {"Ground truth": metrics}},
                          "expert_agreement": {"test": sync_expert.agreement(rows)}}}
  text = evaluation.markdown(reports.to_json(results))
  assert "Spearman rho of LSE-C nan over 3" in text
