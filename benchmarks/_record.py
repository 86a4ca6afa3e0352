"""Write one benchmark's section of benchmarks/RESULTS.md, leaving the others untouched."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = (
    "# Measured results\n\n"
    "Every figure below was measured by a script in `benchmarks/`; each section names the\n"
    "command that produced it. Ratios are taken side by side in one run.\n"
)


def record_section(name: str, markdown: str, path: Path = RESULTS) -> None:
    """Replace (or append) the block between ``<!-- begin name -->`` and ``<!-- end name -->``."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}\n"
    text = path.read_text() if path.exists() else HEADER
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".RESULTS.", suffix=".md")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
