"""experiments.reproduce: the committed demo results as rows of the LaDTalk and DAE-Talker tables,
papers without a system, an empty results folder, and the command's output files."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from experiments import paper_tables
from experiments import reproduce
from talking_heads.io import html_report

ROOT = pathlib.Path(__file__).resolve().parents[2]
LADTALK = ROOT / "experiments" / "results" / "ladtalk_demo"
DAE_TALKER = ROOT / "experiments" / "results" / "dae_talker_demo"


def _tables(paper: str, results_dir: pathlib.Path) -> dict[str, dict]:
  markdown, data = reproduce.reproduce(paper, str(results_dir))
  assert [t["table_id"] for t in data["tables"]] == [t.id for t in paper_tables.load(paper)]
  for table in data["tables"]:
    assert f"### {paper} {table['table_id']}:" in markdown
    assert table["measured_rows"] or table["unavailable"], table["table_id"]
    for row in table["measured_rows"]:
      assert row["label"] and os.path.isfile(row["source"]), row
  return {t["table_id"]: t for t in data["tables"]}


def _value(table: dict, method: str, column: str, label_part: str = "") -> float:
  values = [r["values"][column] for r in table["measured_rows"]
            if r["method"] == method and label_part in r["label"]]
  assert len(values) == 1, (method, label_part, table["measured_rows"])
  return values[0]


def _reasons(table: dict) -> dict[str, str]:
  return {u["method_or_column"]: u["reason"] for u in table["unavailable"]}


def test_ladtalk_demo_results():
  tables = _tables("ladtalk", LADTALK)
  results = json.loads((LADTALK / "tables.json").read_text())["splits"]
  ablation = json.loads((LADTALK / "regulariser_ablation.json").read_text())["variants"]
  denoise = json.loads((LADTALK / "denoise_regions.json").read_text())
  table_1 = tables["table_1_usual"]
  assert _value(table_1, "LaDTalk (Ours)", "PSNR") == results["test"]["summary"]["ladtalk"]["psnr"]
  assert _value(table_1, "Wav2Lip", "LSE-C") == results["test"]["summary"]["wav2lip"]["lse_c"]
  assert _value(tables["table_2"], "LaDTalk (Ours)", "LSE-D") == \
      results["heldout_voice"]["summary"]["ladtalk"]["lse_d"]
  minimal_1 = next(v for v in ablation if v["variant"] == "minimal_theta1")
  assert _value(tables["table_3"], "Minimal Dist., θ = 1", "PSNR") == minimal_1["eval"]["psnr"]
  assert _value(tables["figure_2"], "SOVQAE output", "PSNR (Gaussian noise)") == \
      denoise["noise"]["output_psnr"]
  label = table_1["measured_rows"][0]["label"]
  assert "1000 steps" in label and "1100 steps" in label and "not comparable" in label
  assert table_1["measured_rows"][0]["source"].endswith("tables.json")
  assert "Inception" in _reasons(table_1)["FID"]
  assert "not reimplemented" in _reasons(table_1)["DINet"]
  assert "proprietary" in _reasons(tables["table_1_hf"])["whole table"]
  assert not tables["table_4"]["measured_rows"]


def test_dae_talker_demo_results():
  tables = _tables("dae_talker", DAE_TALKER)
  lip_sync = json.loads((DAE_TALKER / "tables_1_2.json").read_text())["lip_sync"]["rows"]
  table_3_4 = json.loads((DAE_TALKER / "tables_3_4.json").read_text())
  yaw_2_5 = json.loads((DAE_TALKER / "table_4_yaw2.5.json").read_text())["pose"]
  assert _value(tables["table_1_a"], "DAE-Talker (Ours)", "LSE-C") == \
      lip_sync["test"]["DAE-Talker"]["lse_c"]
  assert _value(tables["table_2_c"], "w/o shared x_T", "LMD") == \
      lip_sync["heldout_voice"]["w/o shared x_T"]["lmd"]
  assert _value(tables["table_3"], "DAE-Talker (DAE latent)", "PSNR") == \
      table_3_4["reconstruction"]["DAE latent, random x_T"]["psnr"]
  specified = "DAE-Talker, specified pose"
  assert _value(tables["table_4_a"], specified, "Pose MSD", "+-1.5 deg") == \
      table_3_4["pose"]["test"]["Specified"]
  assert _value(tables["table_4_c"], specified, "Pose MSD", "+-2.5 deg") == \
      yaw_2_5["heldout_voice"]["Specified"]
  label = tables["table_1_a"]["measured_rows"][0]["label"]
  assert "8600 steps" in label and "64 px" in label and "not comparable" in label
  assert "LPIPS" in _reasons(tables["table_3"])
  assert "not reimplemented" in _reasons(tables["table_1_a"])["MakeItTalk"]
  for table_id in ("table_1_b", "table_2_b", "table_4_b"):
    assert "no real dataset" in _reasons(tables[table_id])["whole table"]
  assert "user study" in _reasons(tables["figure_5_shared_noise"])["whole table"]


def test_paper_without_a_system(monkeypatch):
  # Every paper has its system now: one is hidden to check the tables still list as such.
  paper = "fd2talk"
  monkeypatch.setattr(reproduce, "system_for", lambda name: None)
  _, data = reproduce.reproduce(paper)
  assert data["system"] is None and len(data["tables"]) == len(paper_tables.load(paper))
  for table in data["tables"]:
    assert not table["measured_rows"]
    assert "not implemented yet" in table["unavailable"][0]["reason"]


@pytest.mark.parametrize("paper", ["ladtalk", "dae_talker", "fd2talk"])
def test_empty_results_folder(paper, tmp_path):
  _, data = reproduce.reproduce(paper, str(tmp_path))
  reasons = [u["reason"] for t in data["tables"] for u in t["unavailable"]]
  assert not any(t["measured_rows"] for t in data["tables"])
  assert sum(f"no results in {tmp_path}" in r for r in reasons) >= 4
  assert any("python -m experiments.main" in r for r in reasons)


def test_pir_without_results_names_the_command_and_what_cannot_be_run(tmp_path):
  _, data = reproduce.reproduce("pir", str(tmp_path))
  assert data["system"] == "pir" and len(data["tables"]) == len(paper_tables.load("pir"))
  reasons = {t["table_id"]: t["unavailable"][0]["reason"] for t in data["tables"]}
  assert not any(t["measured_rows"] for t in data["tables"])
  for table_id in ("table_1_hdtf", "table_2_adnerf", "table_2_facial"):
    assert f"no results in {tmp_path}" in reasons[table_id]
    assert "python -m experiments.pir.tables" in reasons[table_id]
  assert "no real dataset" in reasons["table_1_testset1"]
  assert "user study" in reasons["table_3"]


def test_radio_without_results_names_the_commands(tmp_path):
  _, data = reproduce.reproduce("radio", str(tmp_path))
  assert data["system"] == "radio" and len(data["tables"]) == len(paper_tables.load("radio"))
  reasons = {t["table_id"]: t["unavailable"][0]["reason"] for t in data["tables"]}
  assert not any(t["measured_rows"] for t in data["tables"])
  for table_id in ("table_1_hdtf", "table_2", "table_3"):
    assert f"no results in {tmp_path}" in reasons[table_id]
    assert "python -m experiments.radio.tables" in reasons[table_id]
  assert "no real dataset" in reasons["table_1_voxceleb2"]


def test_command_writes_markdown_and_json(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  result = subprocess.run(
      [sys.executable, "-m", "experiments.reproduce", "--paper=ladtalk",
       "--results=experiments/results/ladtalk_demo", f"--out={tmp_path}"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "### ladtalk table_1_usual" in result.stdout
  markdown = (tmp_path / "reproduce_ladtalk.md").read_text()
  data = json.loads((tmp_path / "reproduce_ladtalk.json").read_text())
  assert markdown.startswith("# ladtalk") and "| LaDTalk (Ours) |" in markdown
  assert data["system"] == "ladtalk" and len(data["tables"]) == len(paper_tables.load("ladtalk"))
  # The HTML page: the results' figures and training curves beside the tables, linked relatively.
  page = tmp_path / "reproduce_ladtalk.html"
  text = page.read_text()
  assert text.count("<h4>ladtalk ") == len(data["tables"])
  assert 'src="/' not in text and 'href="/' not in text     # relative links only
  targets = html_report.referenced_files(str(page))
  assert {os.path.basename(t) for t in targets} >= {
      "sovqae_reconstruction.png", "eval_history_sovqae.jsonl", "eval_history_wav2lip.jsonl",
      "reproduce_ladtalk.md"}
  assert len([t for t in targets if t.endswith("_curves.png")]) == 2
  assert all((tmp_path / t).is_file() for t in targets), targets


def test_html_of_main_job_results_shows_the_parts_videos_and_curves(tmp_path):
  """Results in a main-job folder: the page shows that part's section (its videos, curves)."""
  main = tmp_path / "main"
  (main / "ladtalk" / "run").mkdir(parents=True)
  (main / "ladtalk" / "run" / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
  part = {"system": "ladtalk", "title": "LaDTalk part", "markdown": "text", "trainings": [
      {"part": "base", "stage": "wav2lip", "metrics": "ladtalk/run/metrics.jsonl"}],
          "videos": [{"title": "LaDTalk video", "generated": "ladtalk/missing.mp4"}]}
  (main / "report.json").write_text(json.dumps({"parts": [part]}))
  sections, root = reproduce.html_sections({"paper": "ladtalk", "system": "ladtalk",
                                            "results_dir": str(main / "ladtalk"), "tables": []})
  assert root == str(main)
  (section,) = sections
  assert section.title == "LaDTalk part" and section.videos[0].generated == "ladtalk/missing.mp4"
  assert [c.metrics for c in section.curves] == ["ladtalk/run/metrics.jsonl"]
