"""No dangling references: every repository path that the units, the crontab, the README and the docs name
exists, every section they name is a heading of the document named, and every Markdown link resolves.

A relative path is taken to name a file of this repository when it starts with
one of the repository's top-level names (`systemd/`, `tests/`, ...), with a
name of the package's top level (the README writes `db/sql/*.sql` for
`wombat_collect/db/sql/*.sql`), or with a directory name that repositories
conventionally hold (`docs/`, `k8s/`, ...), or when it ends in a file
extension. Words like `Asia/Seoul`, `BTC/KRW` or `requests/s` are none of these.
Absolute paths, `./` paths (the current directory's), URLs and `$VARIABLE/...`
paths are the host's, not ours.
"""

import re
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
PACKAGE = REPOSITORY / "wombat_collect"
MARKDOWN = sorted([REPOSITORY / "README.md", *(REPOSITORY / "docs").glob("*.md")])
DOCUMENTS = sorted([*MARKDOWN, *(REPOSITORY / "systemd").iterdir(), *(REPOSITORY / "crontab").iterdir()])
CONVENTIONAL_DIRECTORIES = {"docs", "doc", "k8s", "deploy", "scripts", "examples", "contrib", "packaging", "helm",
                            "charts", "debian", "ansible", "etc"}
# A relative path: segments joined by "/", starting after a space, quote, bracket or line start
# (never after "/", "$", "%", "~", "." or a word character: those are parts of other paths or URLs).
RELATIVE_PATH = re.compile(r"(?:(?<=^)|(?<=[\s`'\"(\[=]))([\w*-][\w.*-]*(?:/[\w.*-]+)*/?)(?=[\s`'\")\],;:]|$)",
                           re.MULTILINE)
FILE_EXTENSION = re.compile(r"\.[a-z][a-z0-9]{0,7}$")
DOCUMENT_SECTION = re.compile(r'((?:docs/)?[\w-]+\.md), section "([^"]+)"')
HEADING = re.compile(r"^#{1,6} (.+)$", re.MULTILINE)
# A Markdown link to a file of this repository or to a heading: [text](target) or [text](target#anchor).
MARKDOWN_LINK = re.compile(r"\]\((?!https?://|mailto:)([^)\s#]*)(?:#([^)\s]+))?\)")
FENCE = re.compile(r"^```.*?^```$", re.MULTILINE | re.DOTALL)


def top_level_names(directory):
    """Given a directory, return the names of its entries (the hidden ones too)."""
    return {path.name for path in directory.iterdir()}


def names_a_repository_path(text):
    """Given a relative path-like word, return True if it names a file or directory of this repository.

    `name/` alone counts when `name` is a top-level or conventional directory;
    `a/b...` also when its last part has a file extension.
    """
    first, _, rest = text.rstrip("/").partition("/")
    known = top_level_names(REPOSITORY) | top_level_names(PACKAGE) | CONVENTIONAL_DIRECTORIES
    if not rest:
        return text.endswith("/") and first in known
    return first in known or bool(FILE_EXTENSION.search(rest))


def repository_paths(text):
    """Given a document's text, return the repository paths it names, in order, without repeats."""
    found = [match.group(1).rstrip(".") for match in RELATIVE_PATH.finditer(text)]  # a sentence's full stop
    return list(dict.fromkeys(path for path in found if names_a_repository_path(path)))


def exists_in_repository(path):
    """Given a repository path (maybe a glob), return True if it matches something from the root or the package."""
    relative = path.rstrip("/")
    return any(any(base.glob(relative)) for base in (REPOSITORY, PACKAGE))


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(REPOSITORY)))
def test_every_repository_path_a_document_names_exists(document):
    named = repository_paths(document.read_text(encoding="utf-8"))
    assert [path for path in named if not exists_in_repository(path)] == []


def headings(document):
    """Given a Markdown document, return the texts of its headings (without the #s), outside code blocks."""
    return HEADING.findall(FENCE.sub("", document.read_text(encoding="utf-8")))


def anchor(heading):
    """Given a heading's text, return its anchor as GitHub makes it: lowercase, punctuation dropped, spaces as -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(document):
    """Given a Markdown document, return the anchors of its headings (a repeated one gets -1, -2, ...)."""
    found = []
    for heading in headings(document):
        base = anchor(heading)
        found.append(base if base not in found else f"{base}-{sum(1 for each in found if each == base)}")
    return set(found)


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(REPOSITORY)))
def test_every_section_a_document_names_exists(document):
    named = DOCUMENT_SECTION.findall(document.read_text(encoding="utf-8").replace("\n# ", " "))
    assert [(name, section) for name, section in named
            if not (REPOSITORY / name).is_file() or section not in headings(REPOSITORY / name)] == []


@pytest.mark.parametrize("document", MARKDOWN, ids=lambda path: str(path.relative_to(REPOSITORY)))
def test_every_link_a_document_makes_resolves(document):
    text = FENCE.sub("", document.read_text(encoding="utf-8"))
    broken = []
    for target, fragment in MARKDOWN_LINK.findall(text):
        linked = (document.parent / target).resolve() if target else document
        if not linked.exists() or (fragment and (linked.suffix != ".md" or fragment not in anchors(linked))):
            broken.append(f"{target}#{fragment}" if fragment else target)
    assert broken == []


def test_every_doc_is_linked_from_the_readme():
    links = {target for target, _ in MARKDOWN_LINK.findall((REPOSITORY / "README.md").read_text(encoding="utf-8"))}
    assert [path.name for path in (REPOSITORY / "docs").glob("*.md") if f"docs/{path.name}" not in links] == []


def test_anchor_is_the_one_github_makes():
    assert anchor("Quotes (realtime_prices)") == "quotes-realtime_prices"
    assert anchor("Run history: the `wombat_collect.collect_run` table") == \
        "run-history-the-wombat_collectcollect_run-table"
    assert anchor("`--exchange all`") == "--exchange-all"
    assert anchor("Migrating from the backend's scheduler") == "migrating-from-the-backends-scheduler"


def test_repository_paths_finds_the_paths_a_text_names():
    text = ("See docs/operations-draft.md, `systemd/wombat-collect-*` and crontab/wombat-collect;\n"
            "run tests/test_jobs.py (db/sql/*.sql, wombat_collect/db/migrations/).\n"
            "Not: ./.env, Asia/Seoul, BTC/KRW, requests/s, /etc/wombat-collect/x.env, https://hc-ping.com/a/b.json,\n"
            "$WOMBAT_STATE_DIR/kis-tokens/x.json, %S/wombat-collect, ok/failed/skipped, wombat-collect-.service.d/.\n"
            "But: docs/ and deploy/unit.service.")
    assert repository_paths(text) == ["docs/operations-draft.md", "systemd/wombat-collect-*",
                                      "crontab/wombat-collect", "tests/test_jobs.py", "db/sql/*.sql",
                                      "wombat_collect/db/migrations/", "docs/", "deploy/unit.service"]


def test_exists_in_repository_tells_present_from_missing():
    assert exists_in_repository("systemd/wombat-collect-*")
    assert exists_in_repository("db/sql/*.sql")  # from the package
    assert not exists_in_repository("docs/operations-draft.md")
    assert not exists_in_repository("systemd/no-such-*.service")
