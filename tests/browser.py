"""A real headless browser (Debian's chromium) that loads a page, runs a probe script once the
page has loaded and laid out, and returns what the probe measured."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
needs_browser = pytest.mark.skipif(
    CHROMIUM is None, reason="no headless browser (apt-get install chromium)"
)
_PROBE = "caulk-probe"


def measure_page(page: Path, probe_js: str, width: int = 1280, height: int = 900) -> dict:
    """Load ``page`` in headless chromium at ``width`` x ``height`` and return the JSON value of
    ``probe_js`` (the body of a function run on load; it returns a JSON-able value)."""
    probed = page.with_name(f"probed-{page.name}")
    script = (
        f"<script>window.addEventListener('load', () => {{"
        f"const out = (() => {{ {probe_js} }})();"
        f"const pre = document.createElement('pre'); pre.id = '{_PROBE}';"
        f"pre.textContent = JSON.stringify(out); document.body.appendChild(pre);}});</script>"
    )
    probed.write_text(page.read_text().replace("</body>", script + "</body>"))
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--window-size={width},{height}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probed.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(rf'<pre id="{_PROBE}">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"the probe did not run: {proc.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))
