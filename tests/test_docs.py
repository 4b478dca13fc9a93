"""The docs stand alone: no link leaves the package's own files, and every relative link
points at a file that exists."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_point_at_files_of_the_package(page):
    text = page.read_text()
    assert "../shared" not in text and "DESIGN.md" not in text
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "#", "mailto:")):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.name}: link to {target} points at nothing"
        assert ROOT in path.parents, f"{page.name}: link to {target} leaves the repository"


def test_architecture_shows_how_to_add_a_scenario():
    text = (ROOT / "docs" / "architecture.md").read_text()
    assert "Adding a scenario" in text and "@register" in text and "class OnChip" in text


def test_architecture_onchip_example_is_the_real_code():
    """The worked example is copied from scenarios.py verbatim, so it cannot drift from it."""
    import inspect
    import re

    from nvmsim.studies import scenarios

    text = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"```python\n(@register\nclass OnChip\(Scenario\):.*?)```", text, re.S)
    assert block, "architecture.md lost its OnChip example"
    source = inspect.getsource(scenarios).replace("  # fmt: skip", "")
    assert block[1] in source, "the OnChip example differs from studies/scenarios.py"
