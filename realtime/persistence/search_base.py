"""What chat search shares on every backend: a query's words, a hit, the indexing step."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

MAX_QUERY = 200  # characters of ``q``
CHUNK = 2000  # seqs of a room indexed per transaction: chat waits at most one step
# A word: letters and digits (any script), as the indexes' tokenizers split text. Nothing
# else of the query reaches them: each word is quoted (FTS5) or a quoted lexeme (tsquery),
# so no query syntax (``"``, ``NEAR(``, ``*``, ``&``, ``:``) is ever the user's.
_WORD = re.compile(r"[^\W_]+")


class QueryError(ValueError):
    pass


def query_words(q: str) -> list[str]:
    """The words of a search query; ``QueryError`` if it is too long or has none."""
    if len(q) > MAX_QUERY:
        raise QueryError(f"'q' may be at most {MAX_QUERY} characters")
    words = _WORD.findall(unicodedata.normalize("NFKC", q))
    if not words:
        raise QueryError("'q' has no word to search for (letters or digits)")
    return words


def fts5_query(words: list[str]) -> str:
    """Every word (AND), the last one as a prefix: search as you type."""
    quoted = [f'"{w}"' for w in words]
    quoted[-1] += "*"
    return " ".join(quoted)


def tsquery(words: list[str]) -> str:
    """The same for PostgreSQL's ``to_tsquery``: stemmed lexemes, the last a prefix."""
    quoted = [f"'{w}'" for w in words]
    quoted[-1] += ":*"
    return " & ".join(quoted)


@dataclass(slots=True)
class Hit:
    """A message found: as stored now, its snippet, and how well it matched (higher is
    better; comparable within one search)."""

    stream: str
    seq: int
    client_id: str | None
    author_id: str
    author_name: str
    data: dict[str, Any]
    ts: str
    snippet: str
    score: float
