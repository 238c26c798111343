"""Every section that a comment, docstring, config or the README cites by name exists as a heading of the document
it names: `docs/design.md, 'Name'` in docs/design.md, `README 'Name'` in README.md. A heading matches when it is
the name, or the name followed by a colon and more ('Completion: missing joints filled by the prior')."""
from __future__ import annotations

import re

from tests.helpers import ROOT

CITE = re.compile(r"(docs/design\.md|README)(?:\.md)?,? '([^']+)'")


def _headings(path) -> set[str]:
    return {line.lstrip("#").strip() for line in path.read_text().splitlines() if line.startswith("#")}


def _matches(name: str, headings: set[str]) -> bool:
    return any(h == name or h.startswith(name + ":") for h in headings)


def test_every_cited_section_exists():
    headings = {"docs/design.md": _headings(ROOT / "docs" / "design.md"), "README": _headings(ROOT / "README.md")}
    files = [p for d in ("lib", "run", "configs", "tests", "docs") for p in (ROOT / d).rglob("*")
             if p.suffix in (".py", ".md")] + [ROOT / "README.md", ROOT / "Makefile"]
    cited, missing = 0, []
    for path in files:
        for doc, name in CITE.findall(path.read_text(errors="replace")):
            name = " ".join(name.replace("#", " ").split())  # a name may wrap onto a comment's next line
            if name == "Name":  # how a citation is written (this test's docstring, the design page's own note)
                continue
            cited += 1
            if not _matches(name, headings[doc]):
                missing.append(f"{path.relative_to(ROOT)}: {doc} '{name}'")
    assert cited > 50 and not missing, missing
