"""What a console page may say after an action, and the sign-in page after a refusal: a
fixed table keyed by a code.

The code (``?done=replayed&n=3``, ``?error=wrong``) travels in the redirect's URL, and
anything in a URL can come from a link someone else made: a page that showed the URL's text
would put any sentence on the real console ("session expired, call +1 …"). So only the
codes below are shown, their numbers must be whole numbers, and a name must be one the
config has; anything else shows nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import urlencode

from relay.text import plural

NOTICES: dict[str, Callable[[Mapping[str, str]], str]] = {
    "nothing": lambda q: "Nothing selected.",
    "replayed": lambda q: f"Replayed {plural(int(q['n']), 'delivery', 'deliveries')}.",
    "repeated": lambda q: "Already replayed: this form was sent before.",
    "changed": lambda q: (
        f"Not replayed: {int(q['n'])} match now, not the {int(q['shown'])} shown. "
        "Look again, then replay them if you still want to."
    ),
    "reused": lambda q: (
        "Not replayed: this form was sent for another selection. Reload the page and replay again."
    ),
    "paused": lambda q: f"{q['destination']} paused.",
    "resumed": lambda q: f"{q['destination']} resumed.",
}
NUMBERS = ("n", "shown")
PARAMS = ("done", *NUMBERS, "destination")  # a page's links leave these out

INSECURE = (
    "Signing in over plain HTTP from another machine would send the admin token and the "
    "session in clear. Use an SSH tunnel (ssh -L 8081:127.0.0.1:8081 this-host, then open "
    "http://127.0.0.1:8081/ui/), a TLS reverse proxy listed in trusted_proxies, or [admin.tls]."
)
SIGN_IN = {"wrong": "That token is not right.", "insecure": INSECURE}


def told(back: str, code: str, **params: str | int) -> str:
    """``back`` (which may carry a filter already) with a notice for the page."""
    query = urlencode({"done": code, **{k: str(v) for k, v in params.items()}})
    return back + ("&" if "?" in back else "?") + query


def notice(query: Mapping[str, str], names: frozenset[str]) -> str | None:
    """The notice a page's URL asks for, if it is one of ours with sound values."""
    make = NOTICES.get(query.get("done", ""))
    if make is None:
        return None
    if any(key in query and not query[key].isdigit() for key in NUMBERS):
        return None
    if "destination" in query and query["destination"] not in names:
        return None
    try:
        return make(query)
    except (KeyError, ValueError):  # a value it needs is missing
        return None


def sign_in_error(code: str | None) -> str | None:
    return SIGN_IN.get(code or "")
