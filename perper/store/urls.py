"""Store URLs in messages: credentials masked wherever a URL is printed or logged."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlsplit

__all__ = ["mask_url"]

#: Query options whose values are secrets.
SECRET_OPTIONS = ("password", "tls_key_password")


def mask_url(url: str) -> str:
    """``url`` with any password (``user:password@`` or a secret option) shown as ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<an unparsable store URL>"
    netloc = parts.netloc
    if "@" in netloc:
        credentials, hosts = netloc.rsplit("@", 1)
        user, sep, _ = credentials.partition(":")
        netloc = f"{user}{':***' if sep else ''}@{hosts}"
    if not parts.query:
        query = ""
    else:
        query = "&".join(
            f"{name}={'***' if name in SECRET_OPTIONS else quote(value)}"
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
        )
    if not parts.scheme:
        return url if netloc == parts.netloc and not query else f"{netloc}{parts.path}"
    return f"{parts.scheme}://{netloc}{parts.path}{'?' + query if query else ''}"
