"""The Table 3 ablation command: every variant's config and the table."""

from experiments.ladtalk import regulariser_ablation


def test_variants_cover_table_3_and_change_only_the_regulariser():
  base = "tiny"
  configs = {name: regulariser_ablation.variant_config(base, mode, theta, "/data")
             for name, mode, theta in regulariser_ablation.VARIANTS}
  assert {(c.regulariser.mode, c.regulariser.theta) for c in configs.values()} == {
      ("off", 1.0), ("average", 1.0), ("average", 2.0), ("minimal", 1.0), ("minimal", 2.0)}
  reference = configs["minimal_theta1"].to_dict()
  for config in configs.values():
    other = config.to_dict()
    assert other["data"]["root"] == "/data"
    assert {k for k in other if other[k] != reference[k]} <= {"regulariser"}


def test_markdown_lists_every_variant_and_marks_missing_values():
  row = {"variant": "minimal_theta1", "mode": "minimal", "theta": 1.0, "steps": 3,
         "train_seconds": 1.5, "eval": {"psnr": 31.0}, "blur": {"gain_db": 2.5},
         "noise": {"gain_db": 6.0, "codes_unchanged_percent": 80.0}}
  results = {"command": "cmd", "machine": "cpu", "duration_s": 2.0, "base": "tiny", "seed": 0,
             "variants": [row, {**row, "mode": "off", "variant": "off"}]}
  table = regulariser_ablation.markdown(results)
  lines = [l for l in table.splitlines() if l.startswith("| minimal") or l.startswith("| off")]
  assert len(lines) == 2
  assert "| 31.00 |" in lines[0] and "| 2.50 |" in lines[0] and "| 6.00 | 80.0 |" in lines[0]
  assert "| off | - |" in lines[1]
