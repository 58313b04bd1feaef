"""``relay user add NAME --role ROLE``: a new person for ``[[admin.users]]``.

It makes a token and prints it once, with the lines to paste into the config: the token's
SHA-256 only, so the config file never holds the token itself. ``relay reload`` (or
SIGHUP) applies it; nothing is written anywhere by this command.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from typing import Any

from relay.people import ROLES, new_token

NAME = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")  # as AdminUser.name


def cmd_user_add(args: argparse.Namespace) -> int:
    if not NAME.match(args.name):
        print(
            f"relay: {args.name!r} is not a name relay takes: lower case letters, digits, "
            "'.', '_' and '-', starting with a letter (alice, ops.bob)",
            file=sys.stderr,
        )
        return 2
    token = new_token()
    digest = hashlib.sha256(token.encode()).hexdigest()
    lines = (
        f'[[admin.users]]\nname = "{args.name}"\nrole = "{args.role}"\ntoken_sha256 = "{digest}"\n'
    )
    if args.json:
        print(json.dumps({"name": args.name, "role": args.role, "token": token, "toml": lines}))
        return 0
    print(f"A token for {args.name} ({args.role}), shown once; give it to them:\n")
    print(f"  {token}\n")
    print("Paste into the config file, then run relay reload:\n")
    print(lines, end="")
    return 0


def add(sub: Any) -> None:
    user = sub.add_parser("user", help="people who may use the admin API, console and CLI")
    actions = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    p = actions.add_parser("add", help="make a token for a new person, and the lines to paste")
    p.add_argument("name", help="who they are (alice, ops.bob)")
    p.add_argument("--role", required=True, choices=ROLES, help="what they may do")
    p.add_argument("--json", action="store_true", help="JSON output, for scripts")
    p.set_defaults(command_run=cmd_user_add)
