"""Store URLs: credentials need TLS unless ``tls=0`` is explicit, and no store message
shows a password."""

from __future__ import annotations

import pytest

pytest.importorskip("pyignite")

from perper.errors import ConfigError, PerperError
from perper.store import mask_url, open_store
from perper.store.ignite import IgniteStore


@pytest.mark.parametrize(
    "url",
    [
        "ignite://bob:s3cret@127.0.0.1:10950",
        "ignite://127.0.0.1:10950?username=bob&password=s3cret",
        "ignite://bob@127.0.0.1:10950",
    ],
)
def test_credentials_without_tls_are_refused_pointing_at_tls_options(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        IgniteStore.from_url(url)
    message = str(caught.value)
    assert "tls=1" in message and "tls=0" in message
    assert "s3cret" not in message


def test_credentials_with_an_explicit_tls_0_or_tls_1_are_accepted() -> None:
    plain = IgniteStore.from_url("ignite://bob:s3cret@127.0.0.1:10950?tls=0")
    assert plain.io.client_args == {"use_ssl": False, "username": "bob", "password": "s3cret"}
    secure = IgniteStore.from_url("ignite://bob:s3cret@127.0.0.1:10950?tls=1")
    assert secure.io.client_args["use_ssl"] is True
    assert "s3cret" not in plain.url and "s3cret" not in secure.url


def test_without_credentials_tls_stays_off_by_default() -> None:
    store = IgniteStore.from_url("ignite://127.0.0.1:10950")
    assert store.io.client_args == {"use_ssl": False}


@pytest.mark.parametrize(
    "url",
    [
        "ignite://bob:s3cret@127.0.0.1:notaport?tls=0",
        "ignite://bob:s3cret@127.0.0.1:10950?tls=0&bogus=1",
        "ignite://bob:s3cret@127.0.0.1:10950?tls=maybe",
        "ignite://127.0.0.1:10950?password=s3cret&tls=0&timeout=-1",
        "postgres://bob:s3cret@db:5432",
    ],
)
def test_no_store_url_error_shows_the_password(url: str) -> None:
    with pytest.raises(PerperError) as caught:
        open_store(url)
    assert "s3cret" not in str(caught.value)
    assert "***" in str(caught.value)


async def test_an_unreachable_node_error_masks_the_password() -> None:
    store = open_store("ignite://bob:s3cret@127.0.0.1:1?tls=0&retry=0.1&timeout=0.2")
    with pytest.raises(PerperError) as caught:
        await store.head("s")
    await store.close()
    assert "s3cret" not in str(caught.value) and "bob:***@" in str(caught.value)


def test_mask_url_masks_user_passwords_and_secret_options() -> None:
    assert mask_url("ignite://u:p@h:1?password=x&tls_key_password=y&namespace=n") == (
        "ignite://u:***@h:1?password=***&tls_key_password=***&namespace=n"
    )
    assert mask_url("sqlite:///a/b.db") == "sqlite:///a/b.db"
