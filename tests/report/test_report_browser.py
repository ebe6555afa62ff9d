"""The report renders offline in headless Chromium with every image decoded.

Uses Debian's ``chromium``; when it is missing the session installs it once with
apt (only as root, with a time limit) and otherwise skips with the reason. Screenshots
are kept as artefacts in ``tests/report/artifacts/``: ``report_screenshot.png`` (1,200 px),
``report_1400.png`` and ``report_phone.png`` (390 px).

Headless Chromium will not open a window narrower than 500 px, so the phone check loads
the report in a 390 px wide iframe (file access between the two pages allowed).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fake_run import make_fake_run, make_scored_run
from histexpr.report import write_report

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


def _find() -> str | None:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def _install() -> str:
    """Try ``apt-get install chromium`` once; return why it could not be done, or ''."""
    if os.name != "posix" or os.geteuid() != 0:
        return "not running as root"
    if shutil.which("apt-get") is None:
        return "apt-get is not available"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
            subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    except (subprocess.SubprocessError, OSError) as exc:
        return f"apt-get install chromium failed ({type(exc).__name__})"
    return ""


@pytest.fixture(scope="session")
def chromium() -> str:
    found = _find()
    if found is None:
        reason = _install()
        found = _find()
        if found is None:
            pytest.skip(f"headless Chromium unavailable: not installed and {reason or 'no binary'}")
    return found


def _run(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [browser, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def test_report_renders_in_headless_chromium(chromium, tmp_path):
    run = make_fake_run(tmp_path / "run")
    report = write_report(run)
    url = report.resolve().as_uri()
    dom = _run(chromium, tmp_path / "profile-dom", "--virtual-time-budget=5000", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    match = re.search(r'data-images-decoded="(\d+)/(\d+)"', dom.stdout)
    assert match, "the page's load script did not run: " + dom.stdout[:500]
    ok, total = map(int, match.groups())
    n_figures = report.read_text(encoding="utf-8").count("<img ")
    assert total == n_figures >= 6 and ok == total

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report_screenshot.png"
    shot.unlink(missing_ok=True)
    result = _run(
        chromium,
        tmp_path / "profile-shot",
        "--window-size=1200,3000",
        "--virtual-time-budget=5000",
        f"--screenshot={shot}",
        url,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


PHONE = 390
_PHONE_PAGE = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="f" src="{src}" style="width:{width}px;height:12000px;border:0"></iframe>
<script>window.addEventListener("load", function () {{
  var f = document.getElementById("f"), b = f.contentDocument.body;
  document.body.dataset.inner = b.dataset.imagesDecoded + "|" + b.dataset.pageWidth + "|" +
    f.contentWindow.innerWidth;
}});</script></body></html>"""


def test_report_fits_a_phone_and_a_wide_screen(chromium, tmp_path):
    from PIL import Image

    report = write_report(make_scored_run(tmp_path / "run"))
    n_figures = report.read_text(encoding="utf-8").count("<img ")
    phone = tmp_path / "phone.html"
    phone.write_text(_PHONE_PAGE.format(src=report.resolve().as_uri(), width=PHONE))
    url = phone.resolve().as_uri()
    common = ("--allow-file-access-from-files", "--virtual-time-budget=5000")
    dom = _run(chromium, tmp_path / "p-dom", *common, "--window-size=500,900", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    match = re.search(r'data-inner="(\d+)/(\d+)\|(\d+)\|(\d+)"', dom.stdout)
    assert match, "the report's load script did not run in the frame: " + dom.stdout[-500:]
    ok, total, page_width, window = map(int, match.groups())
    assert window == PHONE and ok == total == n_figures >= 10
    assert page_width <= PHONE  # images shrink, tables scroll in their box: nothing overflows

    ARTIFACTS.mkdir(exist_ok=True)
    for name, size, target in (
        ("report_phone.png", "500,6000", url),
        ("report_1400.png", "1400,6000", report.resolve().as_uri()),
    ):
        shot = ARTIFACTS / name
        shot.unlink(missing_ok=True)
        result = _run(
            chromium,
            tmp_path / f"p-{name}",
            *common,
            f"--window-size={size}",
            f"--screenshot={shot}",
            target,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        if name == "report_phone.png":
            with Image.open(shot) as image:
                image.crop((0, 0, PHONE, image.height)).save(shot)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
