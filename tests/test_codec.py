"""The codec: msgpack only, registered dataclasses, clear errors for what cannot encode."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from perper import codec
from perper.errors import ConfigError, EncodeError
from perper.streamref import StreamRef


@codec.register(name="tests.Point")
@dataclass(frozen=True)
class Point:
    x: int
    y: int


def test_plain_values_round_trip() -> None:
    value = {"a": [1, 2.5, None, True, "s", b"\x00"], 3: {"nested": []}}
    assert codec.unpack(codec.pack(value)) == value


def test_registered_dataclasses_and_stream_refs_round_trip() -> None:
    value = {"p": Point(1, 2), "ref": StreamRef("r/gen-0")}
    assert codec.unpack(codec.pack(value)) == value


def test_an_unregistered_dataclass_is_named_in_the_error() -> None:
    @dataclass
    class Loose:
        a: int

    with pytest.raises(EncodeError, match="not registered with perper.codec.register"):
        codec.pack({"k": [Loose(1)]})


def test_an_int_beyond_64_bits_is_named_with_its_path() -> None:
    with pytest.raises(EncodeError, match=r"int beyond 64 bits at value\['big'\]"):
        codec.pack({"big": 2**70})


def test_a_segment_error_names_the_index_of_the_bad_item() -> None:
    with pytest.raises(EncodeError) as caught:
        codec.pack_segment([1, 2, object()])
    assert caught.value.index == 2 and caught.value.type_name == "object"


def test_registering_a_non_dataclass_is_refused() -> None:
    with pytest.raises(ConfigError, match="only dataclasses can be registered"):
        codec.register(int)


def test_unknown_registered_names_decode_to_a_tagged_dict() -> None:
    @dataclass
    class Temp:
        a: int

    codec.register(Temp, name="tests.Temp")
    data = codec.pack(Temp(5))
    del codec._types_by_name["tests.Temp"]
    assert codec.unpack(data) == {"__type__": "tests.Temp", "a": 5}


def test_nothing_in_perper_uses_pickle() -> None:
    root = Path(__file__).resolve().parent.parent
    for source in [*root.glob("perper/**/*.py"), *root.glob("simulator/**/*.py")]:
        assert "import pickle" not in source.read_text(), source
