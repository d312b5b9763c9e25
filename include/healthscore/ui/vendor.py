"""The browser assets GX Data Docs load from public CDNs, vendored from the npm registry.

``ASSETS`` is the one list: the CDN URL a Data Docs page names, the npm package and version that ships the
same file, and the file inside the package. ``healthscore ui vendor-assets`` (``make vendor-assets``) fetches
the packages with ``npm pack`` into ``static/vendor/<package>@<version>/``, where they are committed, so an
air-gapped deployment serves them; ``datadocs.rewrite_html`` points the pages at them. A test checks that every
CDN URL in freshly built Data Docs is listed here, so a GX upgrade that adds one fails loudly.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

VENDOR_DIR = Path(__file__).parent / "static" / "vendor"


@dataclass(frozen=True)
class Asset:
    url: str  # as written in the Data Docs HTML
    package: str  # npm package name
    version: str
    path: str  # file inside the package tarball (under package/)
    extra_globs: tuple[str, ...] = ()  # files the asset loads itself (fonts of a stylesheet)

    @property
    def local_path(self) -> str:
        """Path under ``static/vendor``."""
        return f"{self.package}@{self.version}/{self.path}"


ASSETS: tuple[Asset, ...] = (
    Asset("https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css", "bootstrap", "4.3.1",
          "dist/css/bootstrap.min.css"),
    Asset("https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js", "bootstrap", "4.3.1",
          "dist/js/bootstrap.min.js"),
    Asset("https://code.jquery.com/jquery-3.7.1.min.js", "jquery", "3.7.1", "dist/jquery.min.js"),
    Asset("https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js", "popper.js", "1.12.9",
          "dist/umd/popper.min.js"),
    Asset("https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css", "bootstrap-table", "1.19.1",
          "dist/bootstrap-table.min.css"),
    Asset("https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js", "bootstrap-table", "1.19.1",
          "dist/bootstrap-table.min.js"),
    Asset("https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js",
          "bootstrap-table", "1.19.1", "dist/extensions/filter-control/bootstrap-table-filter-control.min.js"),
    Asset("https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
          "bootstrap-table", "1.19.0", "dist/extensions/filter-control/bootstrap-table-filter-control.min.css"),
    Asset("https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css",
          "bootstrap-table", "1.19.0", "dist/extensions/filter-control/bootstrap-table-filter-control.css"),
    Asset("https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js",
          "bootstrap-datepicker", "1.9.0", "dist/js/bootstrap-datepicker.min.js"),
    Asset("https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css",
          "bootstrap-datepicker", "1.9.0", "dist/css/bootstrap-datepicker.min.css"),
    Asset("https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css", "@fortawesome/fontawesome-free",
          "6.6.0", "css/all.min.css", extra_globs=("webfonts/*.woff2",)),
    # jsDelivr serves a package's "jsdelivr" file for a bare version range; pinned to the newest of that range.
    Asset("https://cdn.jsdelivr.net/npm/vega@5", "vega", "5.33.1", "build/vega.min.js"),
    Asset("https://cdn.jsdelivr.net/npm/vega-lite@5", "vega-lite", "5.23.0", "build/vega-lite.min.js"),
    Asset("https://cdn.jsdelivr.net/npm/vega-embed@6", "vega-embed", "6.29.0", "build/vega-embed.min.js"),
    Asset("https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css",
          "@forevolve/bootstrap-dark", "1.1.0", "dist/css/bootstrap-prefers-dark.css"),
)

#: GX's logos on its own web-asset bucket: Data Docs ship the same images under static/images.
DOCS_IMAGES: dict[str, str] = {
    "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png": "static/images/logo-long.png",
    "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/full_logo_dark.png":
        "static/images/logo-long.png",
}

LICENSE_NAMES = ("LICENSE", "LICENSE.md", "LICENSE.txt", "LICENSE-MIT", "license", "LICENSE.TXT")


def missing_files(vendor_dir: Path = VENDOR_DIR) -> list[str]:
    """Vendored files the manifest names but the folder lacks."""
    return [a.local_path for a in ASSETS if not (vendor_dir / a.local_path).is_file()]


def fetch_assets(vendor_dir: Path = VENDOR_DIR, npm: str = "npm") -> list[Path]:
    """``npm pack`` each package once and copy the listed files (and its licence) into ``vendor_dir``."""
    written: list[Path] = []
    packages: dict[tuple[str, str], list[Asset]] = {}
    for asset in ASSETS:
        packages.setdefault((asset.package, asset.version), []).append(asset)
    with tempfile.TemporaryDirectory() as tmp:
        for (package, version), assets in packages.items():
            out = subprocess.run([npm, "pack", f"{package}@{version}", "--silent"], cwd=tmp, check=True,
                                 capture_output=True, text=True).stdout.strip().splitlines()[-1]
            unpacked = Path(tmp) / f"{package.replace('/', '_')}-{version}"
            with tarfile.open(Path(tmp) / out) as tar:
                tar.extractall(unpacked, filter="data")
            root = unpacked / "package"
            target = vendor_dir / f"{package}@{version}"
            wanted = [a.path for a in assets] + [n for n in LICENSE_NAMES if (root / n).is_file()]
            for asset in assets:
                for pattern in asset.extra_globs:
                    wanted += [str(p.relative_to(root)) for p in sorted(root.glob(pattern))]
            for rel in wanted:
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(root / rel, target / rel)
                written.append(target / rel)
    return written
