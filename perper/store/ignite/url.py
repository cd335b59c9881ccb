"""``ignite://`` URLs: parsing, options, and masking credentials for messages."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from perper.errors import ConfigError
from perper.store.urls import mask_url

__all__ = ["DEFAULT_PORT", "URL_OPTIONS", "IgniteOptions", "mask_url", "parse_url"]

DEFAULT_PORT = 10800

#: Options an ``ignite://`` URL accepts after ``?`` (docs/ignite.md explains them).
URL_OPTIONS = {
    "namespace": "prefix of every key; stores with different namespaces never see each other",
    "username": "user name for Ignite authentication",
    "password": "password for Ignite authentication",
    "tls": "1 to connect with TLS, 0 not to (default: 1 with tls_* options, else 0; "
    "credentials need tls=1 or an explicit tls=0)",
    "tls_ca": "CA certificate file; the server certificate is then required and verified",
    "tls_cert": "client certificate file",
    "tls_key": "client private key file",
    "tls_key_password": "password of the client key file",
    "tls_ciphers": "OpenSSL cipher list",
    "timeout": "seconds to wait for one request's answer (default 10)",
    "retry": "seconds to keep retrying an unreachable cluster before giving up (default 5)",
    "partition_aware": "1 to send each key to its primary node (default with several "
    "addresses), 0 to use one connection (default with one address)",
    "cache_mb": "MiB of recently read or written segments kept in memory (default 16)",
    "recheck": "seconds after which an appender re-checks that the stream it remembers "
    "still exists before appending on (default 1)",
}


@dataclass(frozen=True, slots=True)
class IgniteOptions:
    """What an ``ignite://`` URL says: the arguments of :class:`IgniteStore`."""

    addresses: list[tuple[str, int]]
    namespace: str = "default"
    username: str | None = None
    password: str | None = None
    tls: dict[str, Any] = field(default_factory=dict)
    timeout: float = 10.0
    retry: float = 5.0
    partition_aware: bool | None = None
    cache_mb: float = 16.0
    recheck: float = 1.0
    url: str = ""


def parse_url(url: str) -> IgniteOptions:
    """Parse ``ignite://[user[:password]@]host:port[,host:port...][?option=value&...]``.

    Credentials without TLS are refused unless the URL says ``tls=0`` explicitly: a
    password must not cross the network in clear text by default.

    Raises:
        ConfigError: the URL is malformed, names an unknown option, or gives credentials
            without saying ``tls=1`` or ``tls=0``.
    """
    masked = mask_url(url)
    parts = urlsplit(url)
    if parts.scheme != "ignite":
        raise ConfigError(f"store URL {masked!r} is not an ignite:// URL")
    netloc = parts.netloc
    options: dict[str, str] = {}
    if "@" in netloc:
        credentials, netloc = netloc.rsplit("@", 1)
        user, _, secret = credentials.partition(":")
        options["username"] = user
        if secret:
            options["password"] = secret
    if not netloc:
        raise ConfigError(f"store URL {masked!r} names no node: write ignite://127.0.0.1:10800")
    if parts.path not in ("", "/"):
        raise ConfigError(
            f"store URL {masked!r} has a path {parts.path!r}; an ignite URL is "
            "ignite://host:port[,host:port...][?option=value&...]"
        )
    addresses = [_parse_address(masked, part) for part in netloc.split(",")]
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in URL_OPTIONS:
            raise ConfigError(
                f"store URL {masked!r} has an unknown option {name!r}; the options are "
                + ", ".join(URL_OPTIONS)
            )
        options[name] = value
    tls: dict[str, Any] = {}
    explicit_tls = "tls" in options
    if explicit_tls:
        tls["use_ssl"] = _parse_flag(masked, "tls", options["tls"])
    for option, argument in (
        ("tls_ca", "ssl_ca_certfile"),
        ("tls_cert", "ssl_certfile"),
        ("tls_key", "ssl_keyfile"),
        ("tls_key_password", "ssl_keyfile_password"),
        ("tls_ciphers", "ssl_ciphers"),
    ):
        if options.get(option):
            tls[argument] = options[option]
            tls.setdefault("use_ssl", True)
    if "ssl_ca_certfile" in tls:
        tls["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    tls.setdefault("use_ssl", False)
    username = options.get("username") or None
    password = options.get("password") or None
    if (username or password) and not tls["use_ssl"] and not explicit_tls:
        raise ConfigError(
            f"store URL {masked!r} gives credentials without TLS, which would send the "
            "password in clear text: add tls=1 (with tls_ca=... to verify the server), or "
            "tls=0 to send it unencrypted on purpose"
        )
    return IgniteOptions(
        addresses,
        namespace=options.get("namespace") or "default",
        username=username,
        password=password,
        tls=tls,
        timeout=_parse_seconds(masked, "timeout", options.get("timeout"), 10.0),
        retry=_parse_seconds(masked, "retry", options.get("retry"), 5.0),
        partition_aware=(
            _parse_flag(masked, "partition_aware", options["partition_aware"])
            if "partition_aware" in options
            else None
        ),
        cache_mb=_parse_seconds(masked, "cache_mb", options.get("cache_mb"), 16.0),
        recheck=_parse_seconds(masked, "recheck", options.get("recheck"), 1.0),
        url=masked,
    )


def _parse_address(masked: str, part: str) -> tuple[str, int]:
    part = part.strip()
    if part.startswith("["):  # [IPv6]:port
        host, _, rest = part[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif part.count(":") == 1:
        host, port_text = part.split(":")
    else:
        host, port_text = part, ""
    if not host:
        raise ConfigError(f"store URL {masked!r} has an empty host in {part!r}: write host:port")
    if not port_text:
        return host, DEFAULT_PORT
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise ConfigError(
            f"store URL {masked!r} has port {port_text!r} in {part!r}; a port is a number "
            "from 1 to 65535, e.g. 127.0.0.1:10800"
        )
    return host, port


def _parse_flag(masked: str, name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"store URL {masked!r}: option {name}={value!r} must be 1 or 0")


def _parse_seconds(masked: str, name: str, value: str | None, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number > 0:
        raise ConfigError(
            f"store URL {masked!r}: option {name}={value!r} must be a positive number"
        )
    return number
