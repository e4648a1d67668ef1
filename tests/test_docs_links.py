"""README.md and docs/*.md: every relative link reaches a file in the repository, and every #anchor a heading."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings (outside code blocks)."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+)$", text, re.M)}


def broken_links(page: Path) -> list[str]:
    """Each relative link of a page that does not resolve, as 'page: target (why)'."""
    bad = []
    for target in LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z]+:", target):
            continue  # http:, https:, mailto: are not checked here
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if ROOT not in dest.parents and dest != ROOT:
            bad.append(f"{page.name}: {target} (outside the repository)")
        elif not dest.exists():
            bad.append(f"{page.name}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{page.name}: {target} (no such heading)")
    return bad


def test_every_relative_link_resolves() -> None:
    assert [p for p in PAGES if p.name != "README.md"], "docs/*.md not found"
    assert [b for p in PAGES for b in broken_links(p)] == []


def test_no_page_points_outside_the_repository() -> None:
    assert [p.name for p in PAGES if "../shared" in p.read_text(encoding="utf-8")] == []


def test_readme_starts_with_the_two_setup_commands() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert lines[2:6] == ["```sh",
                          "make run    # fresh machine: installs everything, then runs Backlot on the built-in "
                          "stand-in backends",
                          "make test   # fresh machine: installs everything, then runs the whole test suite",
                          "```"]
