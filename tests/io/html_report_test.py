"""The visual report page: markdown subset, videos beside true clips with mouth crops, curves from a
trainer's metrics.jsonl, the paper's tables beside ours; relative links to files that exist; the
page played in headless Chromium (screenshot written as a test artefact)."""

from __future__ import annotations

import os
import pathlib

import cv2
import numpy as np
import pytest

from experiments import reproduce
from talking_heads.io import html_report
from talking_heads.io import video as video_io
from talking_heads.training import writers
from tests import browser

ROOT = pathlib.Path(__file__).resolve().parents[2]
FPS, SAMPLE_RATE, FRAMES = 25, 16000, 20


def _talking_video(path: pathlib.Path, mouth_height: np.ndarray) -> None:
  """A grey face with a dark mouth bar whose height follows `mouth_height` [T] (pixels)."""
  frames = np.full((len(mouth_height), 48, 48, 3), 180, np.uint8)
  for t, h in enumerate(mouth_height):
    frames[t, 34 - h // 2:34 + h // 2 + 1, 16:32] = 40
  t = np.arange(len(mouth_height) * SAMPLE_RATE // FPS) / SAMPLE_RATE
  audio = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
  video_io.write_video_with_audio(path, frames, audio, fps=FPS, sample_rate=SAMPLE_RATE)


@pytest.fixture
def report_root(tmp_path):
  """A main-job-like folder: a generated and a true mp4, a trained run's metrics.jsonl and image
  grid (written by the trainer's writer)."""
  _talking_video(tmp_path / "sys" / "generated.mp4", np.arange(FRAMES) % 8)
  _talking_video(tmp_path / "corpus" / "truth.mp4", (np.arange(FRAMES) + 3) % 8)
  writer = writers.MetricWriter(str(tmp_path / "sys" / "run"))
  for step in (5, 10):
    writer.write_scalars(step, {"loss": 1.0 / step, "steps_per_second": 3.0})
  writer.write_scalars(10, {"eval/psnr": 21.5, "eval/ssim": 0.7})
  writer.write_images(10, {"reconstruction": np.random.default_rng(0).uniform(size=(4, 8, 8, 3))})
  writer.close()
  return tmp_path


@pytest.fixture(scope="module")
def ladtalk_tables():
  """The LaDTalk paper's tables with the committed demo rows (experiments.reproduce's JSON)."""
  _, data = reproduce.reproduce("ladtalk", str(ROOT / "experiments" / "results" / "ladtalk_demo"))
  return data["tables"]


def _section(root: pathlib.Path, tables) -> html_report.Section:
  image = next((root / "sys" / "run" / "images").iterdir()).relative_to(root)
  return html_report.Section(
      title="A system",
      markdown="| split | PSNR |\n|---|---|\n| test | 21.5 |\n\n[the video](sys/generated.mp4)",
      videos=[html_report.VideoPair("generated from held-out speech", "sys/generated.mp4",
                                    "corpus/truth.mp4", "same speech")],
      curves=[html_report.Curves("stage (run)", "sys/run/metrics.jsonl", str(image))],
      paper="ladtalk", paper_tables=tables)


def test_markdown_subset():
  text = ("# Title\n\nSome `code` and **bold** with a [link](a/b.md).\n\n"
          "| a | b \\| c |\n|---|---|\n| 1 | <2> |\n\n- one\n- two\n\n![grid](img.png)")
  page = html_report.markdown_to_html(text, link=lambda href: "../" + href)
  assert "<h3>Title</h3>" in page
  assert '<code>code</code>' in page and "<strong>bold</strong>" in page
  assert '<a href="../a/b.md">link</a>' in page
  assert "<tr><th>a</th><th>b | c</th></tr><tr><td>1</td><td>&lt;2&gt;</td></tr>" in page
  assert "<ul><li>one</li><li>two</li></ul>" in page
  assert '<img src="../img.png" alt="grid">' in page


def test_mouth_crops_are_the_lower_halves():
  frames = np.zeros((10, 40, 30, 3), np.uint8)
  frames[:, 20:] = 255                              # lower half white
  strip = html_report.mouth_crops(frames, count=4, height=16)
  assert strip.shape == (16, 4 * 24, 3) and strip.min() == 255


def test_page_shows_videos_crops_curves_and_tables(report_root, ladtalk_tables):
  page = report_root / "report.html"
  sections = [_section(report_root, ladtalk_tables)]
  html_report.write_page(str(page), "Report", sections, str(report_root),
                         intro_markdown="Intro: [report.md](report.md)")
  text = page.read_text()
  assert '<video controls preload="metadata" src="sys/generated.mp4">' in text
  assert '<video controls preload="metadata" src="corpus/truth.mp4">' in text
  # Mouth crops of both videos: generated above true, 6 crops each.
  (strip,) = (report_root / "report_files").glob("sys_generated_*_mouth.png")
  strip = cv2.imread(str(strip))
  assert strip.shape == (2 * html_report.MOUTH_HEIGHT + 4, 6 * 2 * html_report.MOUTH_HEIGHT, 3)
  (curves,) = (report_root / "report_files").glob("run_metrics_*_curves.png")
  assert curves.stat().st_size > 0
  assert "Table 1" in text or "table_1" in text
  assert '<tr class="ours">' in text and '<tr class="paper">' in text
  # Every relative link resolves (report.md is the one the intro names and nothing wrote).
  missing = [p for p in html_report.referenced_files(str(page))
             if not (report_root / p).exists()]
  assert missing == ["report.md"]

  # A rewrite redraws nothing whose inputs did not change.
  made = {p: p.stat().st_mtime_ns for p in (report_root / "report_files").iterdir()}
  html_report.write_page(str(page), "Report", sections, str(report_root))
  assert {p: p.stat().st_mtime_ns for p in made} == made


def test_page_elsewhere_links_back_relative(report_root, ladtalk_tables):
  page = report_root / "elsewhere" / "deeper" / "page.html"
  sections = [_section(report_root, ladtalk_tables)]
  html_report.write_page(str(page), "Report", sections, str(report_root))
  text = page.read_text()
  assert 'src="../../sys/generated.mp4"' in text and str(report_root) not in text
  for target in html_report.referenced_files(str(page)):
    assert (page.parent / target).exists(), target


def test_a_missing_video_or_log_is_named_not_linked(report_root):
  os.remove(report_root / "sys" / "generated.mp4")
  section = html_report.Section("gone", videos=[html_report.VideoPair("v", "sys/generated.mp4")],
                                curves=[html_report.Curves("r", "sys/none/metrics.jsonl")])
  page = report_root / "report.html"
  html_report.write_page(str(page), "Report", [section], str(report_root))
  text = page.read_text()
  assert "missing: sys/generated.mp4" in text and "missing: sys/none/metrics.jsonl" in text
  assert html_report.referenced_files(str(page)) == []


def test_an_undecodable_video_costs_its_crops_only(report_root):
  (report_root / "sys" / "generated.mp4").write_bytes(b"not a video")
  section = html_report.Section("broken", videos=[html_report.VideoPair("v", "sys/generated.mp4",
                                                                       "corpus/truth.mp4")])
  page = report_root / "report.html"
  html_report.write_page(str(page), "Report", [section], str(report_root))
  text = page.read_text()
  assert "no mouth crops:" in text and "sys/generated.mp4" in text
  assert text.count("<video") == 2


def test_page_plays_in_chromium(report_root, ladtalk_tables, tmp_path):
  page = report_root / "report.html"
  sections = [_section(report_root, ladtalk_tables)]
  html_report.write_page(str(page), "Report", sections, str(report_root))
  screenshot = browser.artefact_path(tmp_path, "html_report_fixture.png")
  checked = browser.check_page(page, screenshot)
  print(f"screenshot of the fixture report: {screenshot}")
  assert checked["title"] == "Report"
  assert sorted(v["src"] for v in checked["videos"]) == ["corpus/truth.mp4", "sys/generated.mp4"]
  browser.assert_media_play(checked)
  assert len(checked["images"]) == 3   # mouth crops, curves, image grid
  assert screenshot.stat().st_size > 0
