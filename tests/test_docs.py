"""The documentation site (mkdocs.yml, docs/) builds in strict mode, and strict mode does catch
what it should: a broken link or a page left out of the nav fails the build."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def build(root: Path, out: Path) -> subprocess.CompletedProcess:
    """mkdocs build --strict (not -q: a quiet build does not count its warnings, so passes them)."""
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(root / "mkdocs.yml"),
                           "-d", str(out)], capture_output=True, text=True, timeout=300)


def test_the_site_builds_strict(tmp_path):
    done = build(ROOT, tmp_path / "site")
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    pages = sorted(p.relative_to(ROOT / "docs").with_suffix("") for p in (ROOT / "docs").rglob("*.md"))
    for page in pages:  # every page became HTML
        html = tmp_path / "site" / ("index.html" if page.name == "index" else f"{page}/index.html")
        assert html.is_file(), page


@pytest.fixture
def site_copy(tmp_path) -> Path:
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    return tmp_path


def test_a_broken_link_fails_the_build(site_copy):
    page = site_copy / "docs" / "bad-input.md"
    page.write_text(page.read_text() + "\nSee [the missing page](no-such-page.md).\n")
    done = build(site_copy, site_copy / "site")
    assert done.returncode != 0 and "no-such-page.md" in done.stderr


def test_a_page_missing_from_the_nav_fails_the_build(site_copy):
    (site_copy / "docs" / "orphan.md").write_text("# Orphan\n")
    done = build(site_copy, site_copy / "site")
    assert done.returncode != 0 and "orphan.md" in done.stderr


def test_the_readme_is_short_and_its_links_reach_the_site():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250, "the README is the short version; the manual lives in docs/"
    links = re.findall(r"\]\((docs/[^)#]+)", text)
    assert links, "the README points to the documentation pages"
    for link in links:
        assert (ROOT / link).is_file(), link
