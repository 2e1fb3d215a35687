"""Print pip constraints that pin the wire-level dependencies to their lowest allowed versions.

``make lowest`` installs the project with these into ``.venv-lowest``, and ``.ci/run`` runs
the wire and handshake tests there as well as in ``.venv`` (which resolves the newest allowed
versions): both ends of each bound in pyproject.toml are tested, not guessed.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

# The packages whose behaviour the socket layer depends on (realtime/sockets/wsproto.py,
# httpproto.py) and the metrics client; the rest resolve as usual.
PINNED = ("uvicorn", "websockets", "uvloop", "httptools", "prometheus-client")
# The test runner's share of the dev extra (no linters, type checker or browser driver).
TEST_TOOLS = ("pytest", "pytest-asyncio", "pytest-timeout", "httpx", "hypothesis")


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match is not None, requirement
    return match.group(0).lower()


def main() -> int:
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    pins = []
    for requirement in project["dependencies"]:
        name = _name(requirement)
        if name not in PINNED:
            continue
        spec, _, marker = requirement.partition(";")
        lowest = re.search(r">=\s*([0-9][^,;\s]*)", spec)
        if lowest is None:
            print(f"{name} has no lower bound in pyproject.toml", file=sys.stderr)
            return 1
        pins.append(f"{name}=={lowest.group(1)}" + (f"; {marker.strip()}" if marker else ""))
    missing = set(PINNED) - {_name(pin) for pin in pins}
    if missing:
        print(f"not in [project].dependencies: {', '.join(sorted(missing))}", file=sys.stderr)
        return 1
    tools = [r for r in project["optional-dependencies"]["dev"] if _name(r) in TEST_TOOLS]
    if sys.argv[1:] == ["--tools"]:
        print("\n".join(tools))
    else:
        print("\n".join(pins))
    return 0


if __name__ == "__main__":
    sys.exit(main())
