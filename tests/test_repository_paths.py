"""No dangling references: every repository path that the units, the crontab and the README name exists.

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
DOCUMENTS = sorted([REPOSITORY / "README.md", *(REPOSITORY / "systemd").iterdir(),
                    *(REPOSITORY / "crontab").iterdir()])
CONVENTIONAL_DIRECTORIES = {"docs", "doc", "k8s", "deploy", "scripts", "examples", "contrib", "packaging", "helm",
                            "charts", "debian", "ansible", "etc"}
# A relative path: segments joined by "/", starting after a space, quote, bracket or line start
# (never after "/", "$", "%", "~", "." or a word character: those are parts of other paths or URLs).
RELATIVE_PATH = re.compile(r"(?:(?<=^)|(?<=[\s`'\"(\[=]))([\w*-][\w.*-]*(?:/[\w.*-]+)*/?)(?=[\s`'\")\],;:]|$)",
                           re.MULTILINE)
FILE_EXTENSION = re.compile(r"\.[a-z][a-z0-9]{0,7}$")
README_SECTION = re.compile(r'README\.md, section "([^"]+)"')
README_HEADING = re.compile(r"^#{1,6} (.+)$", re.MULTILINE)


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


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(REPOSITORY)))
def test_every_readme_section_a_document_names_exists(document):
    headings = set(README_HEADING.findall((REPOSITORY / "README.md").read_text(encoding="utf-8")))
    named = README_SECTION.findall(document.read_text(encoding="utf-8").replace("\n# ", " "))
    assert [section for section in named if section not in headings] == []


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
