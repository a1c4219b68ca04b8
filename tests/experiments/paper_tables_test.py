"""The transcribed paper tables (experiments/paper_tables/*.json): schema, spot checks against the papers'
printed numbers, and the side-by-side renderer."""

from __future__ import annotations

import json
import math
import pathlib

import pytest

from experiments import paper_tables as pt

FILES = sorted(pathlib.Path(pt.__file__).parent.glob("*.json"))
PAPERS = {"ladtalk", "fd2talk", "dae_talker", "pir", "radio"}


def test_the_five_papers_have_files():
  assert {f.stem for f in FILES} == PAPERS
  assert set(pt.papers()) == PAPERS


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_file_follows_the_schema(path):
  data = json.loads(path.read_text())
  assert set(data) == {"paper", "title", "citation", "tables"}
  assert data["paper"] == path.stem
  assert data["title"] and data["citation"] and data["tables"]
  ids = [t["id"] for t in data["tables"]]
  assert len(ids) == len(set(ids)), ids
  for t in data["tables"]:
    assert set(t) == {"id", "caption", "dataset", "columns", "rows", "notes"}, t["id"]
    assert all(isinstance(t[k], str) for k in ("id", "caption", "dataset", "notes"))
    names = [c["name"] for c in t["columns"]]
    assert len(names) == len(set(names)), t["id"]
    for c in t["columns"]:
      assert set(c) == {"name", "unit", "better"} and c["better"] in pt.BETTER, (t["id"], c)
    assert t["rows"], t["id"]
    for r in t["rows"]:
      assert set(r) == {"method", "values", "ours_in_paper"} and isinstance(r["ours_in_paper"], bool), (t["id"], r)
      assert r["values"], (t["id"], r["method"])
      for name, value in r["values"].items():
        assert name in names, (t["id"], r["method"], name)
        assert isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value), (
            t["id"], r["method"], name, value)
    assert any(r["ours_in_paper"] for r in t["rows"]), t["id"]


@pytest.mark.parametrize("paper", sorted(PAPERS))
def test_every_paper_loads(paper):
  tables = pt.load(paper)
  assert tables and all(t.paper == paper for t in tables)
  assert pt.get(paper, tables[0].id) == tables[0]


# Numbers read off the paper text (shared/papers/<paper>.txt): (paper, table id, method, column, printed value).
SPOT_CHECKS = [
    ("ladtalk", "table_1_usual", "LaDTalk (Ours)", "PSNR", 38.9738),
    ("ladtalk", "table_1_usual", "LaDTalk (Ours)", "FID", 3.4505),
    ("ladtalk", "table_1_hf", "SyncTalk", "PSNR", 39.4050),
    ("ladtalk", "table_2", "LaDTalk (Ours)", "LSE-D", 7.6668),
    ("ladtalk", "table_2_per_audio", "SyncTalk, audio 1", "LSE-D", 9.28129),
    ("ladtalk", "table_4", "SOVQAE trained on the full video (8'40\")", "Mouth PSNR", 32.48622),
    ("ladtalk", "table_5", "SyncTalk", "LSE-D", 7.68),
    ("fd2talk", "table_1_hdtf", "FD2Talk (Ours)", "PSNR", 38.89),
    ("fd2talk", "table_1_voxceleb", "FD2Talk (Ours)", "FID", 21.89),
    ("fd2talk", "table_2", "Full (FD2Talk)", "LSE-C", 7.31),
    ("fd2talk", "table_4", "FD2Talk (Ours)", "Motion Diversity", 53.8),
    ("dae_talker", "table_1_a", "DAE-Talker (Ours)", "LSE-D", 7.25),
    ("dae_talker", "table_1_b", "DAE-Talker (Ours)", "LSE-C", 9.25),
    ("dae_talker", "table_2_c", "w/o shared x_T", "LSE-C", 8.14),
    ("dae_talker", "table_3", "DAE-Talker (DAE latent)", "PSNR", 33.702),
    ("dae_talker", "table_4_a", "DAE-Talker, natural pose predicted from speech", "Pose MSD", 113.93),
    ("pir", "table_1_hdtf", "PIR (Ours)", "PSNR", 36.711),
    ("pir", "table_1_testset2", "FACIAL", "LMD", 2.675),
    ("pir", "table_2_adnerf", "AD-NeRF", "AVConf", 3.607),
    ("pir", "supp_table_1", "PIR, k = 100", "LMD", 1.477),
    ("radio", "table_1_hdtf", "RADIO (Ours)", "PSNR", 33.939),
    ("radio", "table_1_hdtf", "GT", "Sync-C", 8.716),
    ("radio", "table_1_voxceleb2", "IP-LAP", "LPIPS", 0.106),
    ("radio", "table_2", "D: + Fidelity mapping w/ ViT", "Sync", 0.609),
    ("radio", "table_3", "+ ViT(1, 1)", "PSNR", 34.637),
]


@pytest.mark.parametrize("paper,table_id,method,column,value", SPOT_CHECKS)
def test_spot_check_against_paper(paper, table_id, method, column, value):
  rows = {r.method: r for r in pt.get(paper, table_id).rows}
  assert rows[method].values[column] == value


def test_cells_the_paper_leaves_empty_are_absent():
  assert "LSE-D" not in {r.method: r for r in pt.get("ladtalk", "table_1_usual").rows}["GeneFace"].values
  assert "Diversity" not in {r.method: r for r in pt.get("fd2talk", "table_1_hdtf").rows}["Wav2Lip"].values
  assert all("LMD" not in r.values for r in pt.get("dae_talker", "table_1_c").rows)
  assert "PSNR" not in {r.method: r for r in pt.get("pir", "table_1_hdtf").rows}["Ground Truth"].values


def test_unknown_paper_and_table_are_named():
  with pytest.raises(ValueError, match="known papers: .*dae_talker.*ladtalk"):
    pt.load("sadtalker")
  with pytest.raises(KeyError, match="table_1_usual"):
    pt.get("ladtalk", "table_9")


MEASURED = pt.MeasuredRow("LaDTalk", {"PSNR": 28.72, "LSE-C": 0.322}, label="demo: 64 px synthetic corpus id01, "
                          "1.1k steps, CPU 2 cores", source="experiments/results/ladtalk_demo/tables.json")
UNAVAILABLE = [pt.Unavailable("FID", "no Inception weights on this machine"),
               pt.Unavailable("SyncTalk", "NeRF baseline not reimplemented")]


def test_side_by_side_renders_paper_and_our_rows():
  table = pt.get("ladtalk", "table_1_usual")
  text = pt.side_by_side(table, [MEASURED], UNAVAILABLE)
  lines = text.splitlines()
  assert lines[0] == "### ladtalk table_1_usual: " + table.caption
  header = next(l for l in lines if l.startswith("| source"))
  assert header == "| source | method | PSNR (dB) ↑ | FID ↓ | LSE-C ↑ | LSE-D ↓ |"
  rows = [l for l in lines if l.startswith("| paper") or l.startswith("| ours")]
  assert len(rows) == len(table.rows) + 1 and rows[0].startswith("| paper | Wav2Lip | 34.0979 | 10.8503 |")
  assert rows[-1] == ("| ours: demo: 64 px synthetic corpus id01, 1.1k steps, CPU 2 cores | LaDTalk | 28.72 | — | "
                      "0.322 | — |")
  assert "| paper | GeneFace | 24.8165 | 21.7084 | 5.195 | — |" in rows
  assert "- FID: no Inception weights on this machine" in lines
  assert "- SyncTalk: NeRF baseline not reimplemented" in lines


def test_side_by_side_rejects_an_unknown_column():
  bad = pt.MeasuredRow("LaDTalk", {"PSNR": 28.7, "PSNR lower half": 29.8}, label="demo", source="x")
  with pytest.raises(ValueError, match="PSNR lower half"):
    pt.side_by_side(pt.get("ladtalk", "table_1_usual"), [bad])
  with pytest.raises(ValueError, match="PSNR lower half"):
    pt.to_json(pt.get("ladtalk", "table_1_usual"), [bad])


def test_to_json_holds_the_same_content():
  table = pt.get("ladtalk", "table_1_usual")
  data = json.loads(json.dumps(pt.to_json(table, [MEASURED], UNAVAILABLE)))
  assert (data["paper"], data["table_id"]) == ("ladtalk", "table_1_usual")
  assert [r["method"] for r in data["paper_rows"]] == [r.method for r in table.rows]
  assert data["measured_rows"] == [{"method": "LaDTalk", "values": {"PSNR": 28.72, "LSE-C": 0.322},
                                    "label": MEASURED.label, "source": MEASURED.source}]
  assert data["unavailable"][0] == {"method_or_column": "FID", "reason": "no Inception weights on this machine"}
