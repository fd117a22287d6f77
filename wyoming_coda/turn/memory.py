"""Conversation memory: every turn is stored, durable facts and preferences are extracted, and
the most relevant few are retrieved for the prompt. SQLite in the data directory, so it
survives restarts.

Retrieval is SQLite FTS5 with BM25 ranking over the facts of the user: keyword relevance is
what voice requests need ("what's my wifi password", "where did I park"), it costs well under a
millisecond, and it needs no embedding model on the GPU that the speech models use.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from ..access import private_dir, write_private

P = ParamSpec("P")
R = TypeVar("R")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY, user_id TEXT NOT NULL, conversation_id TEXT NOT NULL,
    role TEXT NOT NULL, text TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS facts (
    id INTEGER PRIMARY KEY, user_id TEXT NOT NULL, kind TEXT NOT NULL, text TEXT NOT NULL,
    created REAL NOT NULL, UNIQUE (user_id, text));
CREATE VIRTUAL TABLE IF NOT EXISTS facts_fts USING fts5(text, content='facts', content_rowid='id');
CREATE TRIGGER IF NOT EXISTS facts_ai AFTER INSERT ON facts BEGIN
    INSERT INTO facts_fts(rowid, text) VALUES (new.id, new.text); END;
CREATE TRIGGER IF NOT EXISTS facts_ad AFTER DELETE ON facts BEGIN
    INSERT INTO facts_fts(facts_fts, rowid, text) VALUES ('delete', old.id, old.text); END;
"""

# (pattern, kind, template): first-person statements worth keeping
_EXTRACTORS: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(r"\bmy name is ([\w' -]{1,40})", re.I), "fact", "The user's name is {0}."),
    (re.compile(r"\bcall me ([\w' -]{1,40})", re.I), "preference", "The user wants to be called {0}."),
    (re.compile(r"\bremember (?:that )?(.{3,160})", re.I), "fact", "{0}"),
    (re.compile(r"\bi (?:really )?(?:like|love|enjoy) (.{2,80})", re.I), "preference", "The user likes {0}."),
    (re.compile(r"\bi (?:don't|do not|dont) like (.{2,80})", re.I), "preference", "The user does not like {0}."),
    (re.compile(r"\bi (?:hate|dislike) (.{2,80})", re.I), "preference", "The user dislikes {0}."),
    (re.compile(r"\bi prefer (.{2,80})", re.I), "preference", "The user prefers {0}."),
    (re.compile(r"\bi(?: am|'m) allergic to (.{2,60})", re.I), "fact", "The user is allergic to {0}."),
    (re.compile(r"\bi live in (.{2,60})", re.I), "fact", "The user lives in {0}."),
    (re.compile(r"\bmy (\w+(?: \w+)?) is (?!(?:too |so |very |really |a bit |getting )?"
                r"(?:cold|hot|warm|chilly|dark|bright|on|off|open|closed|locked|unlocked|loud|noisy|quiet|"
                r"empty|full|low|high|dirty|wet|dry|stuck|broken|dead|late|ready|done|here|there|back|away|home|"
                r"out|over|\w+ing)\b)(.{1,80})", re.I), "fact", "The user's {0} is {1}."),
]  # "my X is Y" keeps what lasts ("my car is a red Volvo"), not what a command mentions ("my room is cold")
_CLAUSE = re.compile(r"(?<=[.!?])\s+|[,;]\s*|\s+(?:and|but)\s+(?=i\b|i'|my\b|call\b|remember\b)", re.I)
_WORD = re.compile(r"\w{3,}", re.UNICODE)
_STOP = frozenset(["the", "and", "you", "your", "what", "when", "where", "which", "who", "how", "are", "was", "were", "can", "could", "would", "this", "that", "with", "for", "from", "have", "has", "had", "please", "tell", "about", "does", "did", "not", "there", "their", "them", "they", "its"])


@dataclass
class Memory:
    id: int
    kind: str
    text: str
    created: float


def extract_facts(text: str) -> list[tuple[str, str]]:
    """(kind, statement) pairs for the durable facts and preferences in a user utterance."""
    found: list[tuple[str, str]] = []
    for clause in _CLAUSE.split(text.strip()):
        for pattern, kind, template in _EXTRACTORS:
            match = pattern.search(clause)
            if match:
                parts = [g.strip().rstrip(".!?,") for g in match.groups()]
                statement = template.format(*parts)
                found.append((kind, statement[0].upper() + statement[1:]))
                break
    return found


class MemoryUnavailableError(Exception):
    """The memory database cannot be read or written (disk full, file gone, locked)."""


class MemoryStore:
    """SQLite memory shared by all conversations (per user); safe to use from asyncio."""

    def __init__(self, path: Path, keep_turns_days: int = 30) -> None:
        """`keep_turns_days`: how long the conversation log keeps a turn (0: turns are not kept;
        facts stay until forgotten). The database is readable by this user only."""
        private_dir(path.parent)
        if not path.exists():
            write_private(path, "")
        path.chmod(0o600)
        self.path = path
        self.keep_turns_seconds = keep_turns_days * 86400.0
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.executescript(_SCHEMA)
        self._db.execute("PRAGMA secure_delete = ON")  # forgotten text is overwritten, not left in free pages
        self._expire_turns(time.time())
        self._lock = asyncio.Lock()

    def _expire_turns(self, now: float) -> None:
        with self._db:
            self._db.execute("DELETE FROM turns WHERE created < ?", (now - self.keep_turns_seconds,))

    async def _run(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        async with self._lock:
            try:
                return await asyncio.to_thread(fn, *args, **kwargs)
            except (sqlite3.Error, OSError) as err:
                raise MemoryUnavailableError(f"memory database {self.path}: {err}") from err

    def _add_turn(self, user_id: str, conversation_id: str, user_text: str, answer: str) -> list[str]:
        now = time.time()
        self._expire_turns(now)
        with self._db:
            if self.keep_turns_seconds > 0:
                self._db.executemany(
                    "INSERT INTO turns (user_id, conversation_id, role, text, created) VALUES (?, ?, ?, ?, ?)",
                    [(user_id, conversation_id, "user", user_text, now),
                     (user_id, conversation_id, "assistant", answer, now)],
                )
            added = []
            for kind, statement in extract_facts(user_text):
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO facts (user_id, kind, text, created) VALUES (?, ?, ?, ?)",
                    (user_id, kind, statement, now),
                )
                if cursor.rowcount:
                    added.append(statement)
        return added

    async def add_turn(self, user_id: str, conversation_id: str, user_text: str, answer: str) -> list[str]:
        """Store a turn; returns the new facts it taught."""
        return await self._run(self._add_turn, user_id, conversation_id, user_text, answer)

    def _relevant(self, user_id: str, query: str, limit: int) -> list[Memory]:
        words = [w for w in _WORD.findall(query.lower()) if w not in _STOP]
        rows: list[tuple[Any, ...]] = []
        if words:
            match = " OR ".join(f'"{w}"' for w in words)
            rows = self._db.execute(
                "SELECT f.id, f.kind, f.text, f.created FROM facts_fts JOIN facts f ON f.id = facts_fts.rowid "
                "WHERE facts_fts MATCH ? AND f.user_id = ? ORDER BY bm25(facts_fts) LIMIT ?",
                (match, user_id, limit),
            ).fetchall()
        if len(rows) < limit:  # preferences always matter: fill up with the newest ones
            seen = {r[0] for r in rows}
            rows += [
                r for r in self._db.execute(
                    "SELECT id, kind, text, created FROM facts WHERE user_id = ? AND kind = 'preference' "
                    "ORDER BY created DESC LIMIT ?", (user_id, limit),
                ).fetchall() if r[0] not in seen
            ][: limit - len(rows)]
        return [Memory(*row) for row in rows]

    async def relevant(self, user_id: str, query: str, limit: int) -> list[Memory]:
        """The `limit` memories of `user_id` most relevant to `query`."""
        if limit <= 0:
            return []
        return await self._run(self._relevant, user_id, query, limit)

    def _forget(self, user_id: str, memory_id: int | None) -> int:
        with self._db:
            if memory_id is None:
                self._db.execute("DELETE FROM turns WHERE user_id = ?", (user_id,))
                return self._db.execute("DELETE FROM facts WHERE user_id = ?", (user_id,)).rowcount
            return self._db.execute("DELETE FROM facts WHERE user_id = ? AND id = ?", (user_id, memory_id)).rowcount

    async def forget(self, user_id: str, memory_id: int | None = None) -> int:
        """Delete one memory, or everything about `user_id` (turns too). Returns facts deleted."""
        return await self._run(self._forget, user_id, memory_id)

    def _export(self, user_id: str) -> dict[str, Any]:
        facts = self._db.execute(
            "SELECT id, kind, text, created FROM facts WHERE user_id = ? ORDER BY id", (user_id,)).fetchall()
        turns = self._db.execute(
            "SELECT conversation_id, role, text, created FROM turns WHERE user_id = ? ORDER BY id", (user_id,)).fetchall()
        return {
            "user_id": user_id,
            "facts": [{"id": i, "kind": k, "text": t, "created": c} for i, k, t, c in facts],
            "turns": [{"conversation_id": cid, "role": r, "text": t, "created": c} for cid, r, t, c in turns],
        }

    async def export(self, user_id: str) -> dict[str, Any]:
        """Everything stored about `user_id`, as JSON-ready data."""
        return await self._run(self._export, user_id)

    def _users(self) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT user_id, SUM(facts), SUM(turns) FROM ("
            " SELECT user_id, COUNT(*) AS facts, 0 AS turns FROM facts GROUP BY user_id UNION ALL"
            " SELECT user_id, 0, COUNT(*) FROM turns GROUP BY user_id) GROUP BY user_id ORDER BY user_id").fetchall()
        return [{"user_id": u, "facts": f, "turns": t} for u, f, t in rows]

    async def users(self) -> list[dict[str, Any]]:
        """Whose memories are stored: user id, number of facts and of conversation turns."""
        return await self._run(self._users)

    async def close(self) -> None:
        async with self._lock:
            self._db.close()
