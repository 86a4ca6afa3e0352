"""Write one benchmark's section of benchmarks/RESULTS.md, leaving the others untouched, and
its raw numbers as JSON; both atomically."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from plastix.sims.results import atomic_path

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
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, data: Any) -> None:
    """``data`` as indented JSON at ``path`` (non-JSON numbers as floats), written under a
    temporary name and renamed only once whole."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=float))
