"""The one look of latentbridge's pages: the web UI (``latentbridge serve``), the HTML report and the demo page.

The stylesheet lives in ``page.css`` beside this module (package data). The report and the demo inline it (their
pages are self-contained files); the web service serves it as ``/static/page.css``. Class names the three share:
``badge ok|warn|error|info|kind``, ``verdict``, ``card`` (a finding), ``summary``, ``figures``, ``bars``/``bar``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

__all__ = ["CSS_FILE", "page_css"]

CSS_FILE = Path(__file__).with_name("page.css")
"""Where the shared stylesheet is."""


@cache
def page_css() -> str:
    """The shared stylesheet's text (read once)."""
    return CSS_FILE.read_text(encoding="utf-8")
