"""A Debian changelog entry (for the package's /usr/share/doc/relay/changelog.gz) from
CHANGELOG.md's section for one version:

    python3 packaging/debchangelog.py VERSION CHANGELOG.md
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path


def entry(version: str, text: str) -> str:
    heading = rf"^## \[?{re.escape(version)}\b\]?[^\n]*\n(.*?)(?=^## |\Z)"
    section = re.search(heading, text, re.M | re.S)
    items: list[str] = []
    for line in (section.group(1) if section else "").splitlines():
        if line.startswith("- "):
            items.append(line[2:])
        elif line.startswith("  ") and items:
            items[-1] += " " + line.strip()
    body = (
        "\n".join(
            textwrap.fill(item, width=78, initial_indent="  * ", subsequent_indent="    ")
            for item in items
        )
        or "  * Release."
    )
    when = subprocess.run(
        ["git", "log", "-1", "--format=%aD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    fallback = "Mon, 07 Dec 2026 00:00:00 +0000"
    stamp = format_datetime(parsedate_to_datetime(when)) if when else fallback
    return (
        f"relay ({version}) stable; urgency=medium\n\n{body}\n\n"
        f" -- relay developers <relay@example.org>  {stamp}\n"
    )


if __name__ == "__main__":
    sys.stdout.write(entry(sys.argv[1], Path(sys.argv[2]).read_text()))
