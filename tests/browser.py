"""A real headless browser for the tests of pages: Debian's Chromium driven by Playwright for Python, and the web
example's own server to load its page from.

``chromium_page()`` yields a fresh page in a fresh profile, or skips the test with the reason when no browser can be
had (Playwright not installed, or no Chromium: ``apt-get install chromium``). Chromium starts with its network chatter
off (this machine's network is closed; every page a test loads is served on 127.0.0.1)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

WEB_EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "web"
CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> str | None:
    """The system Chromium (``FASHIONZOO_CHROMIUM`` names another), or None."""
    return os.environ.get("FASHIONZOO_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def chromium_page() -> Iterator[Page]:
    """A page of a headless Chromium, closed with its browser afterwards; skips when there is no browser."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=list(CHROMIUM_FLAGS))
        try:
            yield browser.new_page()
        finally:
            browser.close()


@contextmanager
def web_example_served() -> Iterator[str]:
    """The web example (``examples/web``) served by its own ``serve.py`` (a script, imported from its file) in a
    thread on 127.0.0.1 while the block runs: its URL."""
    spec = importlib.util.spec_from_file_location("fashionzoo_web_serve", WEB_EXAMPLE / "serve.py")
    assert spec is not None and spec.loader is not None
    serve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(serve)
    with serve.serving_in_thread() as url:
        yield url
