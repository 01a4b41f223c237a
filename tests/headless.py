"""Debian's headless Chromium driven by Selenium through Debian's chromedriver (never a downloaded
browser): open a page, wait for it, read it, scrub a slider, take screenshots, collect console errors.

``.ci/run`` installs ``chromium`` and ``chromium-driver`` with apt; without them :func:`browser_or_skip`
skips with the reason. Used by tests/test_report_page.py and bench/report_scale.py.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver",)
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
    "--window-size=1400,1000",
)


def missing() -> str:
    """Why no browser can be driven here ("" when one can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if not any(Path(p).exists() for p in CHROMIUM):
        return "no Debian chromium (apt-get install -y chromium chromium-driver; .ci/run does)"
    if not any(Path(p).exists() for p in CHROMEDRIVER):
        return "no Debian chromedriver (apt-get install -y chromium-driver; .ci/run does)"
    return ""


@contextmanager
def chromium() -> Iterator[object]:
    """A Selenium WebDriver on Debian's headless Chromium with a fresh profile, its console logged."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="trajshard-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = next(p for p in CHROMIUM if Path(p).exists())
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(next(p for p in CHROMEDRIVER if Path(p).exists()))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_report(driver, path: Path, timeout: float = 60.0) -> float:
    """Open the report page and wait until its script says it is drawn; the seconds from the request
    to that moment (reading the file, parsing, plotly.js, the first charts and frames)."""
    start = time.perf_counter()
    driver.get(Path(path).resolve().as_uri())
    while time.perf_counter() - start < timeout:
        state = driver.execute_script("return window.trajshardReport && window.trajshardReport.ready")
        if state:
            return time.perf_counter() - start
        errors = console_errors(driver, keep=True)
        if errors:
            raise AssertionError(f"console errors while loading: {errors}")
        time.sleep(0.02)
    raise TimeoutError(f"{path}: the report did not say it was ready within {timeout}s")


_LOGS: dict[int, list] = {}


def console_errors(driver, keep: bool = False) -> list[str]:
    """Console messages of level SEVERE (errors, uncaught exceptions) since the page was opened."""
    seen = _LOGS.setdefault(id(driver), [])
    seen += driver.get_log("browser")
    return [e["message"] for e in seen if e["level"] == "SEVERE"]


def page_state(driver) -> dict:
    """What the episode browser shows: the step, each camera's frame (its data URL's tail) and each
    curve's cursor position, read from the page (the img elements and plotly's layouts)."""
    return driver.execute_script(
        """
        const r = window.trajshardReport;
        const frames = {};
        document.querySelectorAll('#frames img').forEach(
            (img) => { frames[img.id] = (img.getAttribute('src') || '').slice(-64); });
        const cursors = {};
        for (const id of ['plot-state', 'plot-action', 'plot-tokens']) {
            const d = document.getElementById(id);
            cursors[id] = d && d.layout && d.layout.shapes ? d.layout.shapes[0].x0 : null;
        }
        return {tick: r.tick, episode: r.episode, slider: document.getElementById('tick').value,
                frames: frames, cursors: cursors,
                instruction: document.getElementById('instruction').textContent};
        """
    )


def drag_slider(driver, fraction: float) -> None:
    """Click the episode slider at ``fraction`` of its width, as a person would, and let a frame pass."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    slider = driver.find_element(By.ID, "tick")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", slider)
    width = slider.size["width"]
    offset = int((fraction - 0.5) * (width - 16))  # the thumb's centre travels the width less its own
    ActionChains(driver).move_to_element_with_offset(slider, offset, 0).click().perform()
    time.sleep(0.3)


def screenshot(driver, path: Path, element_id: str | None = None) -> Path:
    """A PNG of the viewport, or scrolled to an element first."""
    if element_id:
        driver.execute_script(f"document.getElementById('{element_id}').scrollIntoView()")
        time.sleep(0.4)
    driver.save_screenshot(str(path))
    return path
