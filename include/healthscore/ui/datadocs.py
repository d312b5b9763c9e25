"""Serve GX Data Docs from disk with their CDN assets pointed at the vendored copies (see ``vendor``)."""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path

from healthscore.ui.vendor import ASSETS, DOCS_IMAGES, VENDOR_DIR

# Longest first, so a URL that is a prefix of another (vega@5 / vega-lite@5) never shadows it.
_URLS = sorted(((a.url, a.local_path) for a in ASSETS), key=lambda kv: -len(kv[0]))
_EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["'](https?://[^"']+)["']|url\(\s*['"]?(https?://[^'")]+)""")
#: Links a person may click (GX's site, its newsletter): not loaded by the page, left as they are.
CLICK_ONLY_HOSTS = ("https://greatexpectations.io",)


def rewrite_html(html: str, vendor_base: str, docs_base: str) -> str:
    """The page with every vendored CDN URL replaced by ``vendor_base/<package>@<version>/<file>``.

    ``docs_base`` is the URL of the Data Docs root (for GX's own logos, which the docs ship under static/).
    A ``?d=...`` cache-buster GX appends to its logo URL is dropped with it.
    """
    for url, local in _URLS:
        html = html.replace(f'"{url}"', f'"{vendor_base}/{local}"').replace(f"'{url}'", f"'{vendor_base}/{local}'")
    for url, local in DOCS_IMAGES.items():
        html = re.sub(re.escape(url) + r"(\?[^\"')]*)?", f"{docs_base}/{local}", html)
    return html


def external_loads(html: str) -> list[str]:
    """URLs outside this server that a page would still load (links to CLICK_ONLY_HOSTS excepted)."""
    found = []
    for match in _EXTERNAL.finditer(html):
        url = match.group(1) or match.group(2)
        if not url.startswith(CLICK_ONLY_HOSTS):
            found.append(url)
    return found


def safe_file(root: Path, relative: str) -> Path | None:
    """``root/relative`` if it is a file inside ``root`` (no ``..`` escape, no symlink out), else None."""
    root = root.resolve()
    try:
        candidate = (root / relative).resolve()
    except (OSError, ValueError):
        return None
    if candidate != root and root not in candidate.parents:
        return None
    return candidate if candidate.is_file() else None


def vendor_file(relative: str) -> Path | None:
    return safe_file(VENDOR_DIR, relative)


def media_type(path: Path) -> str:
    if path.suffix == ".woff2":
        return "font/woff2"
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"
