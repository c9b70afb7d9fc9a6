"""
Browser tests: Playwright driving Debian's Chromium, headless, with no network.

Playwright never downloads a browser here: it launches ``/usr/bin/chromium``
(``make tools`` installs it), with background networking, component updates
and sync off, because the machines have no internet.  A missing Chromium
fails the tests rather than skipping them: a silently skipped security test
is a security test that does not exist.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """
    One headless Chromium for the browser tests.

    Package scope, not session: Playwright's sync API keeps an asyncio loop
    marked as running in the main thread while it is alive, and later tests
    that call ``asyncio.run`` would fail.
    """
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is missing at {CHROMIUM}: run `make tools`, which installs Debian's chromium package "
                    "(Playwright must not download a browser)", pytrace=False)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
