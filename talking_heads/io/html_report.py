"""The visual report: one HTML page that works opened from disk, rewritten with the markdown report.

A page holds sections; each section may have
  - markdown (the part's text and tables; headings, pipe tables, lists, links and images),
  - videos, each beside the true clip it should match (`<video controls>`: the H.264 + AAC mp4s
    that `talking_heads.io.video` writes; the tests play them in Debian's Chromium), with a strip of
    mouth-region crops of both (the lower half of each frame: the videos here are face crops, so
    that is the lower half of the face box),
  - training and eval curves, one small plot per metric, from a run's `metrics.jsonl`,
  - a paper's tables with our rows beside the paper's (`experiments.reproduce`'s JSON tables).
Every link in the page is relative to the page's folder; the crops and plots are written to
`<page folder>/report_files/` and redrawn only when their inputs are newer. The plots need
matplotlib (imported when the first plot is drawn); without it the page says so in their place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import math
import os
import re
from typing import Any, Callable, Iterable, Mapping, Sequence

import cv2
import numpy as np

from talking_heads.io import atomic
from talking_heads.io import video as video_io

ASSETS_DIR = "report_files"
MOUTH_FRAMES = 6      # crops per strip, evenly spaced over the video
MOUTH_HEIGHT = 64     # pixels of each crop in the strip
SKIPPED_SCALARS = ("step", "time", "steps_per_second")


@dataclasses.dataclass(frozen=True)
class VideoPair:
  """A generated video and the true clip it should match, shown side by side.

  Attributes:
    title: what the generated video is (e.g. "LaDTalk, id01 driven by a held-out voice").
    generated: the generated mp4, relative to the report's root folder.
    truth: the true clip's mp4 with its audio (same speech), relative to the root; None when
      there is no true video.
    caption: one line under the pair.
  """
  title: str
  generated: str
  truth: str | None = None
  caption: str = ""


@dataclasses.dataclass(frozen=True)
class Curves:
  """A run whose `metrics.jsonl` is plotted, with its newest image grid (the PNG its trainer
  wrote beside the TensorBoard image) when it has one; paths relative to the report's root."""
  title: str
  metrics: str
  image: str | None = None


@dataclasses.dataclass(frozen=True)
class Section:
  """One section of the page. Paths in `markdown` links, `videos` and `curves` are relative to the
  report's root folder; `paper_tables` are `experiments.reproduce`'s JSON tables."""
  title: str
  markdown: str = ""
  videos: Sequence[VideoPair] = ()
  curves: Sequence[Curves] = ()
  paper: str | None = None
  paper_tables: Sequence[Mapping[str, Any]] = ()


class MissingPlotterError(ModuleNotFoundError):
  """matplotlib is not installed."""


# ---------------------------------------------------------------------------------- assets


def _stale(out: str, inputs: Iterable[str]) -> bool:
  """Whether `out` is missing or older than any of `inputs`."""
  if not os.path.exists(out):
    return True
  made = os.path.getmtime(out)
  return any(os.path.getmtime(p) > made for p in inputs)


def _asset_name(source: str, suffix: str) -> str:
  """A file name under report_files/ for what is drawn from `source` (an absolute path): readable,
  and unique to the file (pages of different roots may share a folder)."""
  folder, name = os.path.split(os.path.splitext(source)[0])
  stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{os.path.basename(folder)}_{name}")
  digest = hashlib.sha1(source.encode()).hexdigest()[:10]
  return f"{stem.strip('_.')}_{digest}_{suffix}.png"


def mouth_crops(frames: np.ndarray, count: int = MOUTH_FRAMES,
                height: int = MOUTH_HEIGHT) -> np.ndarray:
  """The lower halves of `count` evenly spaced frames [T, H, W, 3], each resized to `height`
  rows (width in proportion), side by side: uint8 [height, count * w, 3]."""
  if len(frames) == 0:
    raise ValueError("no frames to crop")
  index = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
  h, w = frames.shape[1:3]
  width = max(1, round(w * height / (h - h // 2)))
  crops = [cv2.resize(np.ascontiguousarray(frames[i, h // 2:]), (width, height),
                      interpolation=cv2.INTER_AREA) for i in index]
  return np.concatenate(crops, axis=1)


def write_mouth_strip(out: str, generated: str, truth: str | None) -> None:
  """A PNG of mouth crops: the generated video's on top, the true clip's (same frame indices,
  as both follow the same speech) below."""
  frames, _ = video_io.read_video(generated)
  rows = [frames]
  if truth is not None:
    true_frames, _ = video_io.read_video(truth)
    n = min(len(frames), len(true_frames))
    rows = [frames[:n], true_frames[:n]]
  strips = [mouth_crops(r) for r in rows]
  gap = np.full((4, strips[0].shape[1], 3), 255, np.uint8)
  image = np.concatenate([strips[0]] + [x for s in strips[1:] for x in (gap, s)], axis=0)
  with atomic.output(out, suffix=".png") as tmp:
    if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
      raise OSError(f"could not write {out}")


def read_metrics(path: str) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
  """(training records, eval records) of a run's metrics.jsonl."""
  train, evaluation = [], []
  with open(path) as f:
    for line in f:
      if line.strip():
        record = json.loads(line)
        (evaluation if any(k.startswith("eval/") for k in record) else train).append(record)
  return train, evaluation


def _figure_class():
  try:
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  except ModuleNotFoundError as e:
    raise MissingPlotterError(
        "the report's curves need matplotlib: pip install matplotlib (requirements.txt pins "
        "the tested version)") from e
  return Figure


def write_curves(out: str, metrics: str, columns: int = 4) -> None:
  """A PNG with one small plot per logged metric of `metrics` (a metrics.jsonl): the training
  scalars, then the eval scalars, each against the step."""
  train, evaluation = read_metrics(metrics)
  series = []
  for records, kind in ((train, "train"), (evaluation, "eval")):
    keys = sorted({k for r in records for k in r if k not in SKIPPED_SCALARS})
    for key in keys:
      points = [(r["step"], r[key]) for r in records
                if key in r and isinstance(r[key], (int, float)) and math.isfinite(r[key])]
      if points:
        series.append((key if kind == "eval" else f"train/{key}", kind, points))
  figure_class = _figure_class()
  rows = max(1, math.ceil(len(series) / columns))
  # Fixed margins: a layout engine would cost more than the drawing.
  figure = figure_class(figsize=(3.0 * columns, 2.2 * rows), dpi=80)
  figure.subplots_adjust(left=0.05, right=0.98, bottom=0.55 / (2.2 * rows),
                         top=1 - 0.3 / (2.2 * rows), wspace=0.3, hspace=0.55)
  for i, (name, kind, points) in enumerate(series):
    axes = figure.add_subplot(rows, columns, i + 1)
    steps, values = zip(*points)
    axes.plot(steps, values, marker="o" if len(points) < 30 else None, markersize=3,
              color="tab:blue" if kind == "train" else "tab:orange")
    axes.set_title(name, fontsize=9)
    axes.tick_params(labelsize=7)
    axes.set_xlabel("step", fontsize=7)
  if not series:
    figure.text(0.5, 0.5, f"no scalars in {metrics}", ha="center")
  with atomic.output(out, suffix=".png") as tmp:
    figure.savefig(tmp, format="png")


# -------------------------------------------------------------------------------- markdown

_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
_TABLE_RULE = re.compile(r"^\|?\s*:?-{3,}")


def _inline(text: str, link: Callable[[str], str]) -> str:
  """Escaped text with links, images, `code` and **bold**."""
  out, last = [], 0
  for m in _LINK.finditer(text):
    out.append(_plain(text[last:m.start()]))
    bang, label, href = m.groups()
    href = html.escape(link(href), quote=True)
    out.append(f'<img src="{href}" alt="{html.escape(label, quote=True)}">' if bang else
               f'<a href="{href}">{_plain(label)}</a>')
    last = m.end()
  out.append(_plain(text[last:]))
  return "".join(out)


def _plain(text: str) -> str:
  text = html.escape(text, quote=False)
  text = _CODE.sub(r"<code>\1</code>", text)
  return _BOLD.sub(r"<strong>\1</strong>", text)


def _cells(line: str) -> list[str]:
  line = line.strip().removeprefix("|").removesuffix("|")
  return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)]


def markdown_to_html(text: str, link: Callable[[str], str] = lambda href: href,
                     heading_offset: int = 2) -> str:
  """The subset of markdown the reports use: `#` headings (shifted by `heading_offset`), pipe
  tables, `- ` lists, images and links (relative targets mapped by `link`), paragraphs."""
  lines, out, i = text.splitlines(), [], 0
  paragraph: list[str] = []

  def flush() -> None:
    if paragraph:
      out.append(f"<p>{_inline(' '.join(paragraph), link)}</p>")
      paragraph.clear()

  while i < len(lines):
    line = lines[i].strip()
    heading = re.match(r"^(#{1,6})\s+(.*)$", line)
    if not line:
      flush()
    elif heading:
      flush()
      level = min(len(heading.group(1)) + heading_offset, 6)
      out.append(f"<h{level}>{_inline(heading.group(2), link)}</h{level}>")
    elif line.startswith("|") and i + 1 < len(lines) and _TABLE_RULE.match(lines[i + 1].strip()):
      flush()
      rows = [f"<tr>{''.join(f'<th>{_inline(c, link)}</th>' for c in _cells(line))}</tr>"]
      i += 2
      while i < len(lines) and lines[i].strip().startswith("|"):
        rows.append(f"<tr>{''.join(f'<td>{_inline(c, link)}</td>' for c in _cells(lines[i]))}</tr>")
        i += 1
      out.append(f"<table>{''.join(rows)}</table>")
      continue
    elif line.startswith("- "):
      flush()
      items = []
      while i < len(lines) and lines[i].strip().startswith("- "):
        items.append(f"<li>{_inline(lines[i].strip()[2:], link)}</li>")
        i += 1
      out.append(f"<ul>{''.join(items)}</ul>")
      continue
    else:
      paragraph.append(line)
    i += 1
  flush()
  return "\n".join(out)


# ------------------------------------------------------------------------------ the page

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 1400px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
tr.ours td { background: #eef6ff; }
.pair { display: flex; gap: 1em; flex-wrap: wrap; align-items: flex-start; }
.pair figure { margin: 0; }
video { width: 256px; height: 256px; background: #000; image-rendering: pixelated; }
figcaption { font-size: 0.85em; }
img { max-width: 100%; }
img.mouth { image-rendering: pixelated; height: 136px; }
img.grid { image-rendering: pixelated; max-height: 480px; }
.note { color: #666; font-size: 0.85em; }
nav a { margin-right: 1em; }
"""

_ARROWS = {"lower": " ↓", "higher": " ↑"}


def _number(value: Any) -> str:
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return html.escape(str(value))
  return str(value) if isinstance(value, int) else f"{value:.6g}"


def paper_table_html(table: Mapping[str, Any]) -> str:
  """One of `experiments.reproduce`'s JSON tables: the paper's rows, then ours (highlighted, each
  labelled with the scale and data it was measured at), then what we cannot produce."""
  columns = table["columns"]
  head = "".join(
      f"<th>{html.escape(c['name'])}{' (' + html.escape(c['unit']) + ')' if c.get('unit') else ''}"
      f"{_ARROWS.get(c.get('better'), '')}</th>" for c in columns)
  rows, labels = [], []
  for row, kind in ([(r, "paper") for r in table["paper_rows"]]
                    + [(r, "ours") for r in table["measured_rows"]]):
    if kind == "ours":
      if row["label"] not in labels:
        labels.append(row["label"])
      source = f'ours [{labels.index(row["label"]) + 1}]'
    else:
      source = "paper"
    cells = "".join(f"<td>{_number(row['values'][c['name']])}</td>" if c["name"] in row["values"]
                    else "<td>—</td>" for c in columns)
    method = html.escape(row["method"])
    if row.get("ours_in_paper"):   # the paper's own method or its ablations
      method = f"<strong>{method}</strong>"
    rows.append(f'<tr class="{kind}"><td>{source}</td><td>{method}</td>{cells}</tr>')
  parts = [f"<h4>{html.escape(table['paper'])} {html.escape(table['table_id'])}: "
           f"{html.escape(table['caption'])}</h4>",
           f"<p class=note>Dataset: {html.escape(table['dataset'])}</p>",
           f"<table><tr><th>source</th><th>method</th>{head}</tr>{''.join(rows)}</table>"]
  parts += [f"<p class=note>[{i + 1}] ours: {html.escape(label)}</p>"
            for i, label in enumerate(labels)]
  if table.get("notes"):
    parts.append(f"<p class=note>Paper notes: {html.escape(table['notes'])}</p>")
  if table.get("unavailable"):
    parts.append("<p class=note>Not reproduced:</p><ul class=note>" + "".join(
        f"<li>{html.escape(u['method_or_column'])}: {html.escape(u['reason'])}</li>"
        for u in table["unavailable"]) + "</ul>")
  return "\n".join(parts)


class _Page:
  """Builds the HTML of one page whose root-relative paths are rewritten page-relative."""

  def __init__(self, path: str, root: str):
    self.dir = os.path.dirname(os.path.abspath(path))
    self.root = os.path.abspath(root)
    self.assets = os.path.join(self.dir, ASSETS_DIR)

  def source(self, rel: str) -> str:
    """A root-relative path as an absolute one."""
    return os.path.normpath(os.path.join(self.root, rel))

  def link(self, href: str) -> str:
    """A root-relative link as a page-relative one (URLs and anchors unchanged)."""
    if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", href):
      return href
    return os.path.relpath(self.source(href), self.dir).replace(os.sep, "/")

  def asset(self, name: str) -> tuple[str, str]:
    """(absolute path, page-relative link) of a generated file."""
    return os.path.join(self.assets, name), f"{ASSETS_DIR}/{name}"

  def exists(self, rel: str | None) -> bool:
    return rel is not None and os.path.isfile(self.source(rel))

  @staticmethod
  def missing(rel: str) -> str:
    return f"<p class=note>missing: {html.escape(rel)}</p>"

  def video(self, rel: str, label: str) -> str:
    return (f'<figure><video controls preload="metadata" src="{html.escape(self.link(rel))}">'
            f"</video><figcaption>{html.escape(label)} "
            f'(<a href="{html.escape(self.link(rel))}">mp4</a>)</figcaption></figure>')

  def video_pair(self, pair: VideoPair) -> str:
    parts = [f"<h4>{html.escape(pair.title)}</h4>"]
    if not self.exists(pair.generated):
      return "\n".join(parts + [self.missing(pair.generated)])
    parts += ['<div class="pair">', self.video(pair.generated, "generated")]
    truth = pair.truth if self.exists(pair.truth) else None
    if truth:
      parts.append(self.video(truth, "true clip (same speech)"))
    else:
      parts.append(self.missing(pair.truth) if pair.truth else
                   "<p class=note>no true video for this speech</p>")
    path, link = self.asset(_asset_name(self.source(pair.generated), "mouth"))
    inputs = [self.source(pair.generated)] + ([self.source(truth)] if truth else [])
    rows = "top: generated, bottom: true" if truth else "generated"
    try:
      if _stale(path, inputs):
        write_mouth_strip(path, inputs[0], inputs[1] if truth else None)
      parts.append(f'<figure><img class="mouth" src="{link}" alt="mouth crops of '
                   f'{html.escape(pair.title)}"><figcaption>mouth region (lower half of the '
                   f"face) at {MOUTH_FRAMES} evenly spaced frames; {rows}</figcaption></figure>")
    except video_io.MediaError as e:   # the page still shows the rest
      parts.append(f"<p class=note>no mouth crops: {html.escape(str(e))}</p>")
    parts.append("</div>")
    if pair.caption:
      parts.append(f"<p>{_inline(pair.caption, self.link)}</p>")
    return "\n".join(parts)

  def curves(self, curves: Curves) -> str:
    parts = [f"<h4>{html.escape(curves.title)}</h4>"]
    if not self.exists(curves.metrics):
      parts.append(self.missing(curves.metrics))
    else:
      path, link = self.asset(_asset_name(self.source(curves.metrics), "curves"))
      try:
        if _stale(path, [self.source(curves.metrics)]):
          write_curves(path, self.source(curves.metrics))
        parts.append(f'<img src="{link}" alt="curves of {html.escape(curves.title)}">'
                     f'<p class=note>from <a href="{html.escape(self.link(curves.metrics))}">'
                     f"{html.escape(curves.metrics)}</a>; blue: training (mean over each "
                     "logging window), orange: evaluation</p>")
      except MissingPlotterError as e:
        parts.append(f"<p class=note>{html.escape(str(e))}</p>")
    if curves.image and self.exists(curves.image):
      parts.append(f'<figure><img class="grid" src="{html.escape(self.link(curves.image))}" '
                   f'alt="image grid of {html.escape(curves.title)}"><figcaption>newest image '
                   f"grid ({html.escape(os.path.basename(curves.image))})</figcaption></figure>")
    elif curves.image:
      parts.append(self.missing(curves.image))
    return "\n".join(parts)

  def section(self, section: Section, anchor: str) -> str:
    parts = [f'<section id="{anchor}"><h2>{html.escape(section.title)}</h2>']
    if section.videos:
      parts += ["<h3>Videos</h3>"] + [self.video_pair(v) for v in section.videos]
    if section.markdown:
      parts += ["<h3>Results</h3>", markdown_to_html(section.markdown, self.link)]
    if section.curves:
      parts += ["<h3>Training</h3>"] + [self.curves(c) for c in section.curves]
    if section.paper_tables:
      parts.append(f"<h3>{html.escape(section.paper or '')}: the paper's tables beside ours</h3>")
      parts += [paper_table_html(t) for t in section.paper_tables]
    parts.append("</section>")
    return "\n".join(parts)


def write_page(path: str, title: str, sections: Sequence[Section], root: str,
               intro_markdown: str = "") -> str:
  """Writes the page to `path` (atomically), with its crops and plots in report_files/ beside it.

  Args:
    path: the HTML file.
    title: the page's title.
    sections: its sections; their paths are relative to `root`.
    root: the folder the sections' paths are relative to (the page's own folder, or another:
      links are rewritten relative to the page).
    intro_markdown: text above the sections (paths relative to `root`).
  Returns:
    `path`.
  """
  page = _Page(path, root)
  anchors = [f"s{i}" for i in range(len(sections))]
  nav = "".join(f'<a href="#{a}">{html.escape(s.title)}</a>' for a, s in zip(anchors, sections))
  body = [f"<h1>{html.escape(title)}</h1>", f"<nav>{nav}</nav>",
          markdown_to_html(intro_markdown, page.link, heading_offset=1)]
  body += [page.section(s, a) for s, a in zip(sections, anchors)]
  document = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
              f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
              + "\n".join(body) + "\n</body></html>\n")
  with atomic.output(path) as tmp:
    tmp.write_text(document, encoding="utf-8")
  return path


def referenced_files(path: str) -> list[str]:
  """The local files a page links to (src and href that are not URLs or anchors), as paths
  relative to the page's folder."""
  with open(path, encoding="utf-8") as f:
    text = f.read()
  targets = [html.unescape(t) for t in re.findall(r'(?:src|href)="([^"]+)"', text)]
  return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:|^#", t)]
