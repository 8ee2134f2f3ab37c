"""The documentation keeps up with the code: every params key is documented, every link resolves, and the import
rules in docs/ARCHITECTURE.md are the ones tests/test_layout.py enforces."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.test_layout import ALLOWED

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# params section -> the page that holds its reference (where a key may appear by its leaf name alone)
SECTION_PAGES = {
    "data": "stages/prepare.md",
    "separate": "stages/separate.md",
    "codec": "stages/encode.md",
    "encode": "stages/encode.md",
    "text": "network.md",
    "model": "network.md",
    "train": "stages/train.md",
    "generate": "stages/generate.md",
    "evaluate": "stages/evaluate.md",
    "submit": "stages/submit.md",
}


def flat_keys(tree: dict, prefix: str = "") -> list[str]:
    """``{"a": {"b": 1, "c": 2}}`` -> ``["a.b", "a.c"]`` (leaves only)."""
    keys = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        keys += flat_keys(value, dotted + ".") if isinstance(value, dict) else [dotted]
    return keys


def _params_keys() -> list[str]:
    files = [ROOT / "params.yaml", *sorted((ROOT / "profiles").glob("*.yaml"))]
    keys = {k for f in files for k in flat_keys(yaml.safe_load(f.read_text()) or {})}
    return sorted(keys)


def _reference_pages() -> dict[str, str]:
    """Every docs page that may document a key (stage pages and topic pages), by path relative to docs/."""
    return {p.relative_to(DOCS).as_posix(): p.read_text() for p in sorted(DOCS.rglob("*.md"))}


PAGES = _reference_pages()


def documented(key: str, pages: dict[str, str] = PAGES) -> bool:
    """``key`` appears by its dotted name on any page, or as `leaf` (in backticks) on its section's page."""
    dotted = re.compile(r"(?<![\w.])" + re.escape(key) + r"(?!\w)")
    if any(dotted.search(text) for text in pages.values()):
        return True
    page = SECTION_PAGES.get(key.split(".")[0])
    return page is not None and f"`{key.rsplit('.', 1)[-1]}`" in pages.get(page, "")


def test_every_section_page_exists():
    missing = sorted({p for p in SECTION_PAGES.values() if not (DOCS / p).exists()})
    assert not missing


@pytest.mark.parametrize("key", _params_keys())
def test_params_key_is_documented(key):
    assert documented(key), f"params key '{key}' is not documented in docs/ (add it to its stage's page)"


def test_documented_rejects_unknown_keys():
    """The check above can fail: a key no page mentions is reported, a prefix of a longer key does not count."""
    assert not documented("data.synthetic.no_such_key_anywhere")
    pages = {"stages/prepare.md": "`data.synthetic.n_tracks_total`"}
    assert not documented("data.synthetic.n_tracks", pages)
    assert documented("data.synthetic.n_tracks", {"x.md": "set `data.synthetic.n_tracks`."})
    assert documented("data.synthetic.n_tracks", {"stages/prepare.md": "| `n_tracks` | size |"})
    assert not documented("data.synthetic.n_tracks", {"stages/train.md": "| `n_tracks` | size |"})


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (not - or _), spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    out: set[str] = set()
    seen: dict[str, int] = {}
    for line in FENCE.sub("", path.read_text()).splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(path):
    broken = []
    for target in LINK.findall(FENCE.sub("", path.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no heading with that anchor)")
    assert not broken, f"{path.relative_to(ROOT)}: broken links {broken}"


def test_slug_matches_github():
    assert slug("Scan backends (`model.scan_backend`)") == "scan-backends-modelscan_backend"
    assert slug("Why demucs 4.1.0") == "why-demucs-410"
    assert slug("Failure behaviour: rejects and resume") == "failure-behaviour-rejects-and-resume"


def _architecture_rules() -> dict[str, set[str]]:
    """The import-rules table of docs/ARCHITECTURE.md: | `part` | `allowed`, `allowed` | ... |"""
    text = (DOCS / "ARCHITECTURE.md").read_text()
    section = text.split("## Import rules", 1)[1].split("\n## ", 1)[0]
    rules = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`"):
            rules[cells[0].strip("`")] = set(re.findall(r"`([\w.]+)`", cells[1]))
    return rules


def test_architecture_import_rules_mirror_layout_test():
    assert _architecture_rules() == ALLOWED


def _parts_table() -> dict[str, set[str]]:
    """docs/ARCHITECTURE.md's parts table: | `folder/` | `module`, `module` (...) | -> folder -> modules named."""
    text = (DOCS / "ARCHITECTURE.md").read_text()
    section = text.split("| part | its modules |", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`"):
            names = set(re.findall(r"`([\w.]+)`", cells[1]))
            rows[cells[0].strip("`").rstrip("/")] = {n for n in names if not n.endswith((".css", ".js"))}
    return rows


def _part_folders() -> dict[str, set[str]]:
    folders = [
        p.parent for pkg in ("model", "evaluation") for p in sorted((ROOT / pkg).glob("*/__init__.py"))
    ]
    folders += [ROOT / "pipelines", ROOT / "pipelines" / "common", ROOT / "pipelines" / "studio"]
    return {
        f.relative_to(ROOT).as_posix(): {p.stem for p in f.glob("*.py") if p.name != "__init__.py"}
        for f in folders
    }


def test_architecture_parts_table_lists_every_module_of_every_part():
    table, tree = _parts_table(), _part_folders()
    assert set(table) == set(tree), (
        f"parts missing from the table: {set(tree) - set(table)}; stale: {set(table) - set(tree)}"
    )
    wrong = {
        part: {
            "missing": sorted(tree[part] - table[part]),
            "not in the tree": sorted(table[part] - tree[part]),
        }
        for part in tree
        if table[part] != tree[part]
    }
    assert not wrong, f"docs/ARCHITECTURE.md parts table vs the tree: {wrong}"
