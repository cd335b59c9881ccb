"""Store URLs: the one parser of ``sqlite:///...`` URLs and the one credential mask.

Used by :func:`perper.open_store`, the replay log opener and the command line, so a
URL means the same thing, and a password is hidden the same way, everywhere.
"""

from __future__ import annotations

import re
from pathlib import Path

from perper.errors import ConfigError

__all__ = ["SQLITE_PREFIX", "mask_url", "sqlite_path", "sqlite_url"]

#: ``sqlite:///relative/path.db``; an absolute path adds its own slash: ``sqlite:////abs.db``.
SQLITE_PREFIX = "sqlite:///"

_SECRET_PARAMETERS = ("password", "tls_key_password")


def sqlite_path(url: str) -> Path | None:
    """The file a ``sqlite:///PATH`` URL names, or None for a URL of another scheme.

    Raises:
        ConfigError: a ``sqlite:`` URL that names no file (``sqlite://``, ``sqlite:///``)
            or carries junk after the path (a query string or fragment).
    """
    if not url.startswith("sqlite:"):
        return None
    path = url[len(SQLITE_PREFIX) :] if url.startswith(SQLITE_PREFIX) else ""
    if not path:
        raise ConfigError(
            f"store URL {mask_url(url)!r} names no file: write sqlite:///relative/path.db or "
            "sqlite:////absolute/path.db"
        )
    for mark, what in (("?", "a query string"), ("#", "a fragment")):
        if mark in path:
            junk = path[path.index(mark) :]
            raise ConfigError(
                f"store URL {mask_url(url)!r} has {what} {mask_url(junk)!r}; a sqlite URL "
                f"takes no options: write {SQLITE_PREFIX}{path[: path.index(mark)]}"
            )
    return Path(path)


def sqlite_url(path: str | Path) -> str:
    """The ``sqlite:///`` URL of a file path (relative or absolute)."""
    return f"{SQLITE_PREFIX}{path}"


def mask_url(url: str) -> str:
    """The URL with any password (``user:PASSWORD@`` or ``?password=``) shown as ``***``."""
    url = re.sub(r"(://[^/?#@:]*:)[^/?#@]*@", r"\1***@", url)
    names = "|".join(_SECRET_PARAMETERS)
    return re.sub(rf"((?:[?&])(?:{names})=)[^&#]*", r"\1***", url)
