"""A CycloneDX SBOM of what a relay executable bundles, read from PyInstaller's own build
records, never written by hand:

    python packaging/sbom.py WORKPATH OUT.json VERSION ARCH

Run it with the interpreter of the venv the executable was built from (the one whose
packages PyInstaller collected). Every file in the build's tables of contents (its Python
modules, extension modules, shared libraries and data) is traced to what installed it: a
Python distribution (by its RECORD), CPython itself, or a Debian package (``dpkg -S``) for
the system libraries PyInstaller copies in (OpenSSL, libffi, …). Each becomes a component
with its version, licence and package URL.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import sysconfig
import uuid
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any


def bundled(workpath: Path) -> set[Path]:
    """Every source file PyInstaller put into the executable."""
    found: set[Path] = set()
    for toc in ("PYZ-00.toc", "PKG-00.toc"):
        data = ast.literal_eval((workpath / toc).read_text())
        entries = data[1] if toc.startswith("PYZ") else data[2]
        for entry in entries:
            source = entry[1]
            if isinstance(source, str) and source.startswith("/"):
                found.add(Path(source).resolve())
    return found


def distributions() -> dict[Path, metadata.Distribution]:
    owner: dict[Path, metadata.Distribution] = {}
    for dist in metadata.distributions():
        for file in dist.files or ():
            owner[Path(str(dist.locate_file(file))).resolve()] = dist
    return owner


def licence(dist: metadata.Distribution) -> list[dict[str, Any]]:
    meta = dist.metadata
    expression = meta.get("License-Expression")
    if expression:
        return [{"expression": expression}]
    classifiers = [c for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    if classifiers:
        return [{"license": {"name": c.split(" :: ")[-1]}} for c in classifiers]
    text = (meta.get("License") or "").strip()
    if text and len(text) < 100:
        return [{"license": {"name": text}}]
    return []


def debian(path: Path) -> tuple[str, str] | None:
    """The Debian package that installed ``path``, and its version."""
    found = subprocess.run(["dpkg", "-S", str(path)], capture_output=True, text=True, check=False)
    if found.returncode != 0:
        return None
    package = found.stdout.split(":", 1)[0].split(",")[0].strip()
    version = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=False
    ).stdout.strip()
    return package, version


def components(files: set[Path], arch: str) -> list[dict[str, Any]]:
    owner = distributions()
    python = Path(sysconfig.get_paths()["stdlib"]).resolve()
    seen: dict[str, dict[str, Any]] = {}
    for path in sorted(files):
        dist = owner.get(path)
        if dist is not None:
            name, version = dist.metadata["Name"], dist.version
            key = f"pypi/{name.lower()}"
            seen.setdefault(
                key,
                {
                    "type": "library",
                    "name": name,
                    "version": version,
                    "purl": f"pkg:pypi/{name.lower()}@{version}",
                    "licenses": licence(dist),
                },
            )
        elif path.is_relative_to(python) or path.name.startswith("libpython"):
            version = sys.version.split()[0]
            seen.setdefault(
                "cpython",
                {
                    "type": "library",
                    "name": "cpython",
                    "version": version,
                    "purl": f"pkg:generic/cpython@{version}",
                    "licenses": [{"license": {"id": "PSF-2.0"}}],
                },
            )
        elif (deb := debian(path)) is not None:
            package, version = deb
            seen.setdefault(
                f"deb/{package}",
                {
                    "type": "library",
                    "name": package,
                    "version": version,
                    "purl": f"pkg:deb/debian/{package}@{version}?arch={arch}",
                },
            )
    return sorted(seen.values(), key=lambda c: (c["type"], c["name"].lower()))


def main() -> None:
    workpath, out, version, arch = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    files = bundled(workpath)
    sbom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": [{"name": "relay packaging/sbom.py", "version": version}],
            "component": {
                "type": "application",
                "name": "relay",
                "version": version,
                "purl": f"pkg:pypi/webhook-relay@{version}",
                "licenses": [{"license": {"id": "Apache-2.0"}}],
                "properties": [{"name": "architecture", "value": arch}],
            },
        },
        "components": components(files, arch),
    }
    out.write_text(json.dumps(sbom, indent=1) + "\n")
    print(f"{out}: {len(sbom['components'])} components from {len(files)} files")


if __name__ == "__main__":
    main()
