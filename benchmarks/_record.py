"""Write one benchmark's section of benchmarks/RESULTS.md, leaving the others untouched, and
its raw numbers as JSON; both atomically."""

from __future__ import annotations

import argparse
import json
import math
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


CONTENTS_BEGIN, CONTENTS_END = "<!-- contents -->", "<!-- /contents -->"
SECTION = re.compile(r"<!-- begin (\S+) -->\n(?:## ([^\n]*))?")
ISSUE = re.compile(r"\bissue (\d+)")


def count(minimum: int = 1):
    """An argparse ``type`` for an integer of at least ``minimum`` (a bad value exits with
    status 2 and a message naming the option)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value}; give at least {minimum}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def record_section(name: str, markdown: str, path: Path = RESULTS) -> None:
    """Replace (or append) the block between ``<!-- begin name -->`` and ``<!-- end name -->``,
    then rebuild the list of sections at the top of the file (:func:`with_contents`)."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}\n"
    text = path.read_text() if path.exists() else HEADER
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    with atomic_path(path) as tmp:
        tmp.write_text(with_contents(text))


def with_contents(text: str) -> str:
    """``text`` with a list of its sections (name and heading) between the header and the first
    section, ordered by the issue the heading names, then as in the file; sections whose
    heading names no issue come last."""
    sections = [(m.group(1), m.group(2) or "") for m in SECTION.finditer(text)]

    def issue(section: tuple[str, str]) -> float:
        found = ISSUE.search(section[1])
        return int(found.group(1)) if found else math.inf

    lines = [f"- `{name}` — {heading}" for name, heading in sorted(sections, key=issue)]
    contents = "\n".join([CONTENTS_BEGIN, "Sections, by issue:", "", *lines, CONTENTS_END])
    old = re.compile(re.escape(CONTENTS_BEGIN) + r".*?" + re.escape(CONTENTS_END), re.DOTALL)
    if old.search(text):
        return old.sub(lambda _: contents, text)
    first = text.find("<!-- begin ")
    if first < 0:
        return text
    return f"{text[:first]}{contents}\n\n{text[first:]}"


def write_json(path: Path, data: Any) -> None:
    """``data`` as indented JSON at ``path`` (non-JSON numbers as floats), written under a
    temporary name and renamed only once whole."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=float))
