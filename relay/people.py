"""Who may do what on the admin listener: named people, each with a token and a role.

``[[admin.users]]`` names them (``relay user add`` makes a token and the lines to paste);
the old ``[admin] token`` is a person named ``admin`` with the ``admin`` role. A token is
kept as its SHA-256 only, and a presented one is compared with every person's digest, in
constant time, so neither the tokens nor which one almost matched leak.

Roles are ordered: a ``viewer`` reads everything and changes nothing; an ``operator`` also
replays, pauses, resumes and catches up; an ``admin`` also reloads the config, prunes and
backs up. ``needs`` says which role an action takes, ``refusal`` what a 403 says.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

ROLES = ("viewer", "operator", "admin")
RANK = {role: n for n, role in enumerate(ROLES)}

# The role each changing action needs; reading needs a viewer.
NEEDS = {
    "read": "viewer",
    "replay": "operator",
    "pause": "operator",
    "resume": "operator",
    "catch-up": "operator",
    "reload": "admin",
    "prune": "admin",
    "backup": "admin",
}


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    role: str
    digest: bytes  # SHA-256 of the token

    def may(self, action: str) -> bool:
        return RANK[self.role] >= RANK[NEEDS[action]]


def digest(token: str | bytes) -> bytes:
    raw = token.encode() if isinstance(token, str) else token
    return hashlib.sha256(raw).digest()


def new_token() -> str:
    """A token for ``relay user add``: 32 random bytes, URL-safe."""
    return "rly_" + secrets.token_urlsafe(32)


def refusal(person: Person, action: str) -> str:
    need = NEEDS[action]
    article = "an" if need[0] in "aeiou" else "a"
    return (
        f"{person.name} is {'an' if person.role[0] in 'aeiou' else 'a'} {person.role}: "
        f"{action} needs {article} {need} or above"
    )


class People:
    """The people of the running config (replaced whole on a reload)."""

    def __init__(self, persons: list[Person]) -> None:
        self._persons = tuple(persons)
        self._by_name = {p.name: p for p in persons}

    def __len__(self) -> int:
        return len(self._persons)

    def find(self, token: str | bytes) -> Person | None:
        """The person whose token this is: every digest is compared, whatever matches."""
        given = digest(token)
        found = None
        for person in self._persons:
            if hmac.compare_digest(person.digest, given):
                found = person
        return found

    def named(self, name: str) -> Person | None:
        return self._by_name.get(name)
