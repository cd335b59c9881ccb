"""Read-only commands never create files or folders; store URLs are parsed fully."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from perper.errors import ConfigError
from perper.store.urls import mask_url, sqlite_path
from tests.conftest import EXAMPLES

BASIC = str(EXAMPLES / "basic.py")


def perper(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perper.cli", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    "command",
    [
        ["streams", "ls"],
        ["streams", "cat", "r/x-0"],
        ["export", "{url}", "out.sqlite"],
        ["mirror", "{url}", "memory://"],
        ["replay", "{url}", "app.py"],
    ],
)
def test_a_read_only_command_on_a_missing_log_exits_2_and_creates_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    (tmp_path / "app.py").write_text("import perper\napp = perper.App('a')\n")
    missing = tmp_path / "nonexistent" / "dir" / "x.db"
    url = f"sqlite:///{missing}"
    args = [part.format(url=url) for part in command]
    if "{url}" not in command:
        args += ["--store", url]
    before = sorted(tmp_path.rglob("*"))
    ran = perper(*args, cwd=tmp_path)
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert "x.db" in ran.stderr and "Traceback" not in ran.stderr
    assert not (tmp_path / "nonexistent").exists()
    assert sorted(tmp_path.rglob("*")) == before


def test_streams_ls_without_a_store_creates_no_default_log(tmp_path: Path) -> None:
    ran = perper("streams", "ls", cwd=tmp_path)
    assert ran.returncode == 2
    assert "no file .perper/perper.db" in ran.stderr
    assert not (tmp_path / ".perper").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///x.db?mode=ro", "has a query string '?mode=ro'; a sqlite URL takes no options"),
        ("sqlite:///x.db#frag", "has a fragment '#frag'"),
        ("sqlite://", "names no file"),
        ("sqlite://host/x.db", "names no file"),
    ],
)
def test_junk_in_a_sqlite_url_is_refused_naming_it(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match="store URL") as error:
        sqlite_path(url)
    assert message in str(error.value)


def test_a_query_string_never_becomes_part_of_a_file_name(tmp_path: Path) -> None:
    ran = perper("run", BASIC, "--store", "sqlite:///x.db?mode=ro", cwd=tmp_path)
    assert ran.returncode == 2 and "takes no options" in ran.stderr
    assert list(tmp_path.iterdir()) == []


def test_sqlite_urls_name_relative_and_absolute_files() -> None:
    assert sqlite_path("sqlite:///rel/x.db") == Path("rel/x.db")
    assert sqlite_path("sqlite:////abs/x.db") == Path("/abs/x.db")
    assert sqlite_path("ignite://127.0.0.1:10800") is None


def test_passwords_are_masked_in_userinfo_and_in_options() -> None:
    assert mask_url("ignite://bob:s3cret@127.0.0.1:10800") == "ignite://bob:***@127.0.0.1:10800"
    assert (
        mask_url("ignite://h:1?username=bob&password=s3cret&tls_key_password=k&tls=1")
        == "ignite://h:1?username=bob&password=***&tls_key_password=***&tls=1"
    )
