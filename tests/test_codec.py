"""The codec: msgpack only, registered dataclasses, clear errors for what cannot encode."""

from __future__ import annotations

import datetime
import enum
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from perper import codec
from perper.errors import ConfigError, EncodeError, FormatError
from perper.streamref import StreamRef


class Color(enum.Enum):
    RED = 1


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


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (datetime.datetime(2026, 1, 1), "datetime"),
        (uuid.UUID(int=7), "UUID"),
        (Color.RED, "Color"),
        ({1, 2}, "set"),
    ],
)
def test_values_msgpack_cannot_round_trip_are_refused_not_converted(
    value: object, type_name: str
) -> None:
    # ormsgpack on its own would store a datetime or UUID as a string and an enum as its
    # value, so they would come back as another type: perper refuses them instead.
    with pytest.raises(EncodeError) as caught:
        codec.pack({"k": value})
    assert caught.value.type_name == type_name
    assert "['k']" in str(caught.value)


def test_the_encoding_is_plain_msgpack() -> None:
    # What a reader without perper sees: fixed ints, str keys, bin for bytes.
    assert codec.pack({"a": 1}) == b"\x81\xa1a\x01"
    assert (
        codec.pack([b"\x00", -1, 1.5]) == b"\x93\xc4\x01\x00\xff\xcb?\xf8\x00\x00\x00\x00\x00\x00"
    )
    assert codec.pack(StreamRef("s")) == b"\xd4\x02s"


def test_corrupt_data_and_unknown_ext_types_raise_format_errors() -> None:
    with pytest.raises(FormatError, match="not valid msgpack"):
        codec.unpack(b"\x93\x01")
    with pytest.raises(FormatError, match="unknown msgpack ext type 9"):
        codec.unpack(b"\xd4\x09x")
    with pytest.raises(FormatError, match="not a msgpack array"):
        codec.unpack_segment(codec.pack({"a": 1}))


def test_a_registered_dataclass_whose_fields_changed_fails_with_its_own_error() -> None:
    @dataclass
    class Shape:
        a: int

    codec.register(Shape, name="tests.Shape")
    data = codec.pack(Shape(1))

    @dataclass
    class Shape2:
        b: int

    codec._types_by_name["tests.Shape"] = Shape2
    try:
        with pytest.raises(TypeError, match="unexpected keyword argument 'a'"):
            codec.unpack(data)
    finally:
        del codec._types_by_name["tests.Shape"]


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


@pytest.mark.parametrize(
    ("key", "type_name"),
    [
        (datetime.datetime(2024, 1, 1), "datetime as a map key"),
        (Color.RED, "Color as a map key"),
        (uuid.UUID(int=7), "UUID as a map key"),
        (StreamRef("r/x"), "StreamRef as a map key"),
        ((1, datetime.date(2024, 1, 1)), "date as a map key"),
    ],
)
def test_map_keys_msgpack_cannot_round_trip_are_refused_not_converted(
    key: object, type_name: str
) -> None:
    # ormsgpack turns a datetime key into its ISO string and an enum key into its value.
    with pytest.raises(EncodeError) as caught:
        codec.pack({"outer": {key: 1}}, what="item")
    assert caught.value.type_name == type_name
    assert "item['outer'] key" in caught.value.path


def test_plain_non_str_keys_still_round_trip() -> None:
    value = {1: "a", -2: "b", 1.5: "c", None: "d", False: "e", b"k": "f", (1, "x"): "g"}
    assert codec.unpack(codec.pack(value)) == value


def test_subclasses_of_plain_types_are_refused_not_flattened() -> None:
    class Name(str):
        pass

    with pytest.raises(EncodeError) as caught:
        codec.pack({"n": Name("x")})
    assert caught.value.type_name.endswith("Name")


def test_nesting_deeper_than_the_limit_is_an_encode_error_not_a_recursion_error() -> None:
    deep: list[object] = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(EncodeError, match="nested deeper than 254 levels") as caught:
        codec.pack_segment([1, {"a": deep}])
    assert caught.value.index == 1 and caught.value.path.startswith("item['a'][0][0]")
    assert len(str(caught.value)) < 600
    fits: list[object] = []
    for _ in range(253):
        fits = [fits]
    assert codec.unpack_segment(codec.pack_segment([fits])) == [fits]


def test_a_lone_surrogate_is_named_with_its_path() -> None:
    with pytest.raises(EncodeError) as caught:
        codec.pack_segment([{"ok": "é", "bad": ["x", "\udc80"]}])
    assert caught.value.type_name == "str with a lone surrogate (not valid UTF-8)"
    assert caught.value.path == "item['bad'][1]"


@pytest.mark.parametrize("name", [b"", b"\xff\xfe"])
def test_a_stored_stream_ref_without_a_valid_name_is_reported_as_corruption(name: bytes) -> None:
    import ormsgpack

    data = ormsgpack.packb([1, ormsgpack.Ext(2, name)])
    with pytest.raises(FormatError, match="StreamRef.*the log is corrupt"):
        codec.unpack(data)


@pytest.mark.parametrize("bad", [5, "", None, b"shop/clicks"])
def test_a_stream_ref_is_refused_without_a_stream_name(bad: object) -> None:
    with pytest.raises(TypeError, match="non-empty str such as 'shop/clicks'") as raised:
        StreamRef(bad)  # type: ignore[arg-type]
    assert repr(bad) in str(raised.value)
