"""Headless Chromium for the report tests: opens an HTML file from disk, plays every video, checks
every image, and takes a screenshot.

Chromium (Debian's `chromium` package) is installed by experiments/setup_browser.sh when missing;
`chromium_or_skip` skips a test with the script's reason only where it cannot be installed. The
page is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON messages
ending in NUL on the browser's fds 3 and 4), so nothing beyond the browser is needed.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import pathlib
import select
import shlex
import shutil
import subprocess
import tempfile
import time
from typing import Any

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SETUP_SCRIPT = ROOT / "experiments" / "setup_browser.sh"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required", "--mute-audio", "--hide-scrollbars")

# Loads and plays (muted, 0.4 s) every video, then lists every video's and image's state.
CHECK_MEDIA = """
(async () => {
  const check = v => new Promise(resolve => {
    const report = extra => resolve(Object.assign({
        src: v.getAttribute('src'), readyState: v.readyState, error: v.error ? v.error.code : null,
        duration: v.duration, width: v.videoWidth, height: v.videoHeight,
        currentTime: v.currentTime}, extra));
    const timer = setTimeout(() => report({timedOut: true}), 10000);
    const finish = extra => { clearTimeout(timer); report(extra); };
    v.muted = true;
    v.addEventListener('error', () => finish({}), {once: true});
    v.addEventListener('canplay', () => v.play().then(
        () => setTimeout(() => { v.pause(); finish({}); }, 400),
        e => finish({playError: String(e)})), {once: true});
    v.preload = 'auto';
    v.load();
  });
  const videos = await Promise.all([...document.querySelectorAll('video')].map(check));
  const images = [...document.images].map(i => ({
      src: i.getAttribute('src'), loaded: i.complete && i.naturalWidth > 0}));
  return {videos, images, title: document.title};
})()
"""


@functools.lru_cache(maxsize=None)
def _find_or_install() -> tuple[str | None, str]:
  """(the chromium binary or None, why not)."""
  found = shutil.which("chromium")
  if found:
    return found, ""
  result = subprocess.run(["bash", str(SETUP_SCRIPT)], capture_output=True, text=True,
                          timeout=900, check=False)
  found = shutil.which("chromium")
  if found:
    return found, ""
  reason = (result.stderr.strip().splitlines() or ["no reason given"])[-1]
  return None, f"Chromium could not be installed by {SETUP_SCRIPT.name}: {reason}"


def chromium_or_skip() -> str:
  """The chromium binary, installed when missing; skips the test where it cannot be."""
  binary, reason = _find_or_install()
  if binary is None:
    pytest.skip(reason)
  return binary


class _DevTools:
  """A minimal DevTools-protocol client over the browser's pipe."""

  def __init__(self, binary: str, profile: str):
    # Bash gives the browser our pipes as fds 3 (commands) and 4 (replies), and /dev/null as
    # stdin/stdout so that nothing else writes into the protocol stream.
    command = " ".join([shlex.quote(a) for a in (binary, *FLAGS, f"--user-data-dir={profile}",
                                                  "--remote-debugging-pipe")]
                       + ["3<&0", "4>&1", "0</dev/null", "1>/dev/null"])
    self.process = subprocess.Popen(["bash", "-c", f"exec {command}"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    self.next_id, self.buffer = 0, b""
    self.events: list[str] = []   # events that arrived while waiting for a reply

  def _message(self, deadline: float) -> dict[str, Any]:
    while b"\0" not in self.buffer:
      left = deadline - time.monotonic()
      if left <= 0 or not select.select([self.process.stdout], [], [], left)[0]:
        raise TimeoutError("Chromium did not answer in time")
      chunk = os.read(self.process.stdout.fileno(), 1 << 20)
      if not chunk:
        raise RuntimeError("Chromium closed the pipe: "
                           + self.process.stderr.read().decode(errors="replace")[-2000:])
      self.buffer += chunk
    message, self.buffer = self.buffer.split(b"\0", 1)
    return json.loads(message)

  def call(self, method: str, session: str | None = None, timeout: float = 30.0,
           **params: Any) -> dict[str, Any]:
    self.next_id += 1
    request = {"id": self.next_id, "method": method, "params": params}
    if session:
      request["sessionId"] = session
    self.process.stdin.write(json.dumps(request).encode() + b"\0")
    self.process.stdin.flush()
    deadline = time.monotonic() + timeout
    while True:
      message = self._message(deadline)
      if message.get("id") == self.next_id:
        if "error" in message:
          raise RuntimeError(f"{method}: {message['error']}")
        return message["result"]
      if "method" in message:
        self.events.append(message["method"])

  def wait_for(self, event: str, timeout: float = 30.0) -> None:
    """Returns once `event` has arrived (also if it came before this call)."""
    if event in self.events:
      return
    deadline = time.monotonic() + timeout
    while self._message(deadline).get("method") != event:
      pass

  def close(self) -> None:
    try:
      self.call("Browser.close", timeout=5.0)
    except (RuntimeError, TimeoutError, BrokenPipeError):
      pass
    try:
      self.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
      self.process.kill()
      self.process.wait()


def check_page(page: str | os.PathLike[str], screenshot: str | os.PathLike[str],
               width: int = 1280) -> dict[str, Any]:
  """Opens `page` from disk in headless Chromium, plays every video, writes a full-page PNG
  screenshot to `screenshot` and returns {"videos": [...], "images": [...], "title": ...}:
  each video's src, readyState, error code, duration, size and the time it played to; whether
  each image loaded."""
  binary = chromium_or_skip()
  with tempfile.TemporaryDirectory() as profile:
    browser = _DevTools(binary, profile)
    try:
      target = browser.call("Target.createTarget", url="about:blank")["targetId"]
      session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
      browser.call("Page.enable", session)
      browser.call("Emulation.setDeviceMetricsOverride", session, width=width, height=900,
                   deviceScaleFactor=1, mobile=False)
      browser.call("Page.navigate", session, url=pathlib.Path(page).resolve().as_uri())
      browser.wait_for("Page.loadEventFired")
      result = browser.call("Runtime.evaluate", session, timeout=60.0, expression=CHECK_MEDIA,
                            awaitPromise=True, returnByValue=True)
      if "exceptionDetails" in result:
        raise RuntimeError(f"the check script failed: {result['exceptionDetails']}")
      size = browser.call("Page.getLayoutMetrics", session)["cssContentSize"]
      shot = browser.call("Page.captureScreenshot", session, format="png",
                          captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": width,
                                "height": min(size["height"], 16000), "scale": 1})
      pathlib.Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
      return result["result"]["value"]
    finally:
      browser.close()


def artefact_path(tmp_path: pathlib.Path, name: str) -> pathlib.Path:
  """Where a test writes an artefact: $TEST_ARTIFACTS when set (created), else `tmp_path`."""
  folder = pathlib.Path(os.environ.get("TEST_ARTIFACTS") or tmp_path)
  folder.mkdir(parents=True, exist_ok=True)
  return folder / name


def assert_media_play(checked: dict[str, Any]) -> None:
  """Every video loaded without error, has a duration and a picture, and played; every image
  loaded."""
  for video in checked["videos"]:
    assert video["error"] is None and not video.get("playError"), video
    assert not video.get("timedOut"), video
    assert video["readyState"] >= 2 and video["duration"] > 0 and video["width"] > 0, video
    assert video["currentTime"] > 0, video   # playback advanced
  assert all(image["loaded"] for image in checked["images"]), checked["images"]
