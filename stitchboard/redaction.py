"""Secrets out of everything a person reads: command output, error lines, logs.

A ClickHouse DSN carries its password (``https://user:password@host:8443``, or a ``password=``
parameter), and Kafka's ``extra_config`` may carry SASL credentials. Masking by pattern catches any
URL with credentials, wherever it is quoted (an error message, a log field); masking the values the
process was configured with (``remember``) also catches a password quoted on its own.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import parse_qsl, unquote, urlsplit

MASK = "***"

# scheme://user:password@ — the password runs to the netloc's last "@" (an unencoded "@" in it).
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*):(?P<secret>[^/?#\s]*)@")
_CREDENTIAL_NAME = r"(?:password|passwd|pwd|secret|token|access_token|api_key|key)"
_PARAMETER = re.compile(rf"(?P<head>[?&;]{_CREDENTIAL_NAME}=)(?P<secret>[^&#\s\"']*)", re.IGNORECASE)
_CREDENTIAL_KEY = re.compile(rf"(?:^|[._-]){_CREDENTIAL_NAME}$", re.IGNORECASE)
_SHORTEST = 4  # shorter remembered values would mask ordinary words

_known: set[str] = set()
_lock = threading.Lock()


def redact(text: str) -> str:
    """``text`` with URL passwords, credential parameters and every remembered secret masked."""
    text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    text = _PARAMETER.sub(lambda m: f"{m['head']}{MASK}", text)
    with _lock:
        known = sorted(_known, key=len, reverse=True)  # a longer secret before its substrings
    for secret in known:
        text = text.replace(secret, MASK)
    return text


def is_credential_key(key: str) -> bool:
    """Whether a configuration key names a credential (``sasl.password``, ``ssl.key.password``)."""
    return _CREDENTIAL_KEY.search(key) is not None


def remember(secret: str) -> None:
    """Mask this value (and its URL-decoded form) wherever it appears from now on."""
    with _lock:
        for value in (secret, unquote(secret)):
            if len(value) >= _SHORTEST:
                _known.add(value)


def remember_dsn(dsn: str) -> None:
    """Mask the password of this DSN and its credential parameters wherever they appear."""
    try:
        parts = urlsplit(dsn)
        password = parts.password
    except ValueError:  # not a URL (e.g. a bad port): the pattern masks what looks like one
        return
    if password:
        remember(password)
    for name, value in parse_qsl(parts.query):
        if is_credential_key(name) and value:
            remember(value)
