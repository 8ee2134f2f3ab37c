"""Headless Chromium for the page tests (Debian ``chromium`` + ``chromium-driver``, through selenium), with the
flags this machine needs (no sandbox as root, no GPU, no /dev/shm). Skips only when no browser is installed, and
says how to install one (``.ci/run`` does it)."""

from __future__ import annotations

import shutil

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def chromium(window: str = "1400,1800"):
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium not installed (pip install -e '.[dev]')"
    )
    browser = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    driver_bin = shutil.which("chromedriver")
    if browser is None or driver_bin is None:
        pytest.skip(
            "no headless browser: install Debian's chromium and chromium-driver "
            "(apt-get install -y chromium chromium-driver; .ci/run does it when missing)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--mute-audio",
        f"--window-size={window}",
    ):
        options.add_argument(arg)
    from selenium.webdriver.chrome.service import Service

    return webdriver.Chrome(service=Service(driver_bin), options=options)
