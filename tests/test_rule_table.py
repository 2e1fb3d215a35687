"""Every documented rule has a row in docs/rules.md, and every row names tests that exist.

What counts as a documented rule, parsed from the docs with a few regular expressions
(simple on purpose: when a doc says a thing another way, extend the pattern here):

- a close code: a whole number 1000-1015 (RFC 6455's codes) or 4400-4499 (ours) anywhere
  in docs/protocol.md or docs/security.md;
- an error code, in those two files: a backticked word after `error` (``error `conflict` ``
  or `` `error invalid` ``), backticked words after an HTTP status (``409 `conflict` ``,
  ``400 `invalid`/`bad_json` ``), and the first cell of a table whose header is `code`;
- a setting: a `MENTEO_*` name in those two files, and the first cell of the README's
  settings table (the table whose header starts `variable`);
- an endpoint: the first cell of protocol.md's REST table (header `method and path`) and
  a line of protocol.md that starts `GET /` (the socket and event-stream URLs).

A row of docs/rules.md is a table row whose first cell is a backticked key: `close NNNN`,
`error CODE`, the setting's name, the endpoint as written in protocol.md, or another rule.
Its last cell names the tests that prove it, each as `tests/FILE.py::TEST_NAME`: a test
function defined in that file (found by parsing it with ast; a parametrized test by its
function's name).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("docs/protocol.md", "docs/security.md")
TABLE = "docs/rules.md"
TEST_REF = re.compile(r"tests/[\w/]+\.py::\w+")

CLOSE_CODE = re.compile(r"(?<![\d.,])(10(?:0\d|1[0-5])|44\d\d)(?![\d,])")
ERROR_AFTER_WORD = re.compile(r"`error ([a-z][a-z_]*)`|\berror`?\s+`([a-z][a-z_]*)`")
ERRORS_AFTER_STATUS = re.compile(r"\b[45]\d\d ((?:`[a-z][a-z_]*`/?)+)")
SETTING = re.compile(r"MENTEO_[A-Z0-9_]+")
SOCKET_URL = re.compile(r"^GET (/[^\s?]+)", re.M)

HOW_TO_ADD = {
    "close": "## Close codes: | `{key}` | what the client sees | tests/test_x.py::test_y |",
    "error": "## Error codes: | `{key}` | when | tests/test_x.py::test_y |",
    "setting": "## Settings: | `{key}` | what it sets | tests/test_x.py::test_y |",
    "endpoint": "## Endpoints: | `{key}` | status codes | tests/test_x.py::test_y |",
}


def read(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def normal(key: str) -> str:
    """A key as compared: no backticks, one space between words."""
    return " ".join(key.replace("`", "").split())


def table_rows(text: str) -> Iterator[tuple[int, list[str], list[str]]]:
    """(line number, header cells, cells) of every markdown table row; ``\\|`` is a
    literal bar inside a cell."""
    header: list[str] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if header is None:
            header = cells
        elif not set("".join(cells)) <= set("-: "):
            yield number, header, cells


def documented() -> dict[str, tuple[str, set[str]]]:
    """Every documented rule: key -> (its kind, the files that document it)."""
    found: dict[str, tuple[str, set[str]]] = {}

    def add(kind: str, key: str, where: str) -> None:
        found.setdefault(normal(key), (kind, set()))[1].add(where)

    for name in DOCS:
        text = read(name)
        flat = re.sub(r"\s*\n\s*", " ", text)  # a code may follow `error` on the next line
        for match in CLOSE_CODE.finditer(text):
            add("close", f"close {match.group(1)}", name)
        for match in ERROR_AFTER_WORD.finditer(flat):
            add("error", f"error {match.group(1) or match.group(2)}", name)
        for match in ERRORS_AFTER_STATUS.finditer(flat):
            for code in re.findall(r"`([a-z_]+)`", match.group(1)):
                add("error", f"error {code}", name)
        for match in SETTING.finditer(text):
            add("setting", match.group(0), name)
        for _, header, cells in table_rows(text):
            if header[0] == "code" and cells[0].startswith("`"):
                add("error", f"error {cells[0]}", name)
            if header[0] == "method and path":
                add("endpoint", cells[0], name)
        if name == "docs/protocol.md":
            for match in SOCKET_URL.finditer(text):
                add("endpoint", f"GET {match.group(1)}", name)
    for _, header, cells in table_rows(read("README.md")):
        if header[0] == "variable":
            add("setting", cells[0], "README.md")
    return found


def rows() -> dict[str, tuple[int, list[str]]]:
    """docs/rules.md's rows: key -> (line number, the test references of its last cell)."""
    found: dict[str, tuple[int, list[str]]] = {}
    for number, _, cells in table_rows(read(TABLE)):
        if cells[0].startswith("`"):
            found[normal(cells[0])] = (number, TEST_REF.findall(cells[-1]))
    return found


@cache
def defined_tests(path: str) -> frozenset[str]:
    """The names of the test functions a test file defines (parsed, not imported)."""
    file = ROOT / path
    if not file.is_file():
        return frozenset()
    tree = ast.parse(file.read_text(encoding="utf-8"))
    return frozenset(
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    )


def test_the_parsers_find_the_rules_they_should() -> None:
    """A guard for the parsing itself: rules known to be documented are found, so a doc
    reshaped past the patterns fails here instead of passing with nothing to check."""
    rules = documented()
    kinds = {kind for kind, _ in rules.values()}
    assert kinds == {"close", "error", "setting", "endpoint"}, kinds
    for key in (
        "close 1008",
        "close 4401",
        "close 4413",
        "error bad_frame",
        "error not_found",
        "error too_many_follows",
        "MENTEO_SECRET",
        "MENTEO_HISTORY_LIMIT",
        "POST /api/rooms",
        "PUT / DELETE /api/follows/{communities|threads|users}/{id}",
        "GET /rooms/{room_id}/ws",
        "GET /feed/stream",
    ):
        assert key in rules, f"the parser no longer finds {key!r}: see this file's docstring"
    assert not any(key.startswith(("close 4096", "close 4000")) for key in rules)


def test_every_documented_rule_has_a_row() -> None:
    have = rows()
    missing = {key: rule for key, rule in documented().items() if key not in have}
    lines = [
        f"- `{key}` ({kind}, documented in {', '.join(sorted(where))}): add under "
        + HOW_TO_ADD[kind].format(key=key)
        for key, (kind, where) in sorted(missing.items())
    ]
    assert not missing, (
        f"{len(missing)} documented rule(s) without a row in {TABLE}; add a row naming the "
        "test(s) that prove each:\n" + "\n".join(lines)
    )


def test_every_row_names_tests_that_exist() -> None:
    problems = []
    for key, (line, refs) in sorted(rows().items()):
        if not refs:
            problems.append(
                f"- {TABLE}:{line} `{key}` names no test: put tests/FILE.py::TEST_NAME in "
                "its last cell (a rule with no test needs one written)"
            )
        for ref in refs:
            path, name = ref.split("::")
            if name not in defined_tests(path):
                state = "has no test function" if defined_tests(path) else "is not a test file"
                problems.append(
                    f"- {TABLE}:{line} `{key}` names {ref}, but {path} {state} named {name}"
                )
    assert not problems, "docs/rules.md rows to fix:\n" + "\n".join(problems)
