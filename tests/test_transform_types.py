"""parse_type: Iceberg type strings -> small frozen dataclasses, canonical str()."""

import pytest

from s3tstream.transform.types import (
    DecimalType,
    Field,
    ListType,
    MapType,
    Primitive,
    StructType,
    is_valid_name,
    parse_type,
)


@pytest.mark.parametrize(
    "text, canonical",
    [
        ("int", "int"),
        ("LONG", "long"),
        ("  timestamptz ", "timestamptz"),
        ("decimal(38,9)", "decimal(38,9)"),
        ("Decimal( 10 , 0 )", "decimal(10,0)"),
        ("list<string>", "list<string>"),
        ("map<string, decimal(5,2)>", "map<string,decimal(5,2)>"),
        ("struct<a:int, b : list<string>>", "struct<a:int,b:list<string>>"),
        (
            "list<struct<x:map<string,list<struct<y:binary>>>,z:date>>",
            "list<struct<x:map<string,list<struct<y:binary>>>,z:date>>",
        ),
    ],
)
def test_good_types_parse_to_canonical_form(text, canonical):
    t = parse_type(text)
    assert str(t) == canonical
    assert parse_type(str(t)) == t  # canonical form round-trips


def test_parsed_structure():
    t = parse_type("struct<a:int,b:list<map<string,decimal(7,3)>>>")
    assert t == StructType(
        (
            Field("a", Primitive("int")),
            Field("b", ListType(MapType(DecimalType(7, 3)))),
        )
    )
    assert t.fields[1].type.element.key == Primitive("string")
    with pytest.raises(AttributeError):  # frozen
        t.fields = ()  # type: ignore[misc]


def test_already_parsed_type_is_returned():
    t = ListType(Primitive("long"))
    assert parse_type(t) is t


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("foo", "unknown type 'foo'"),
        ("integer", "unknown type 'integer'"),
        ("list<fixed(3)>", "unknown type 'fixed'"),
        ("decimal(0,0)", "precision must be 1..38"),
        ("decimal(39,2)", "precision must be 1..38"),
        ("decimal(5,6)", "scale must be 0..precision"),
        ("decimal(5)", "expected ','"),
        ("decimal(a,1)", "an integer"),
        ("map<int,string>", "map key must be string"),
        ("map<string>", "expected ','"),
        ("struct<>", "at least one field"),
        ("struct<A:int>", "bad struct field name 'A'"),
        ("struct<1a:int>", "bad struct field name '1a'"),
        ("struct<a:int,a:long>", "duplicate struct field name 'a'"),
        ("struct<a int>", "expected ':'"),
        ("list<int", "unexpected end"),
        ("list<int>>", "unexpected trailing"),
        ("int;", "unexpected character ';'"),
        ("", "empty"),
        ("   ", "empty"),
    ],
)
def test_bad_types_raise_value_error_naming_the_text(text, fragment):
    with pytest.raises(ValueError) as info:
        parse_type(text)
    message = str(info.value)
    assert repr(text) in message
    assert fragment in message


def test_non_string_is_rejected():
    with pytest.raises(ValueError, match="expected a string"):
        parse_type(None)  # type: ignore[arg-type]


def test_too_deep_nesting_is_rejected():
    with pytest.raises(ValueError, match="deeper than"):
        parse_type("list<" * 40 + "int" + ">" * 40)


def test_dataclass_validation_outside_the_parser():
    with pytest.raises(ValueError):
        DecimalType(40, 1)
    with pytest.raises(ValueError):
        MapType(Primitive("string"), key=Primitive("int"))
    with pytest.raises(ValueError):
        StructType(())
    with pytest.raises(ValueError):
        Primitive("uuid")


@pytest.mark.parametrize("name, ok", [("a", True), ("_op", True), ("col_9", True), ("A", False),
                                      ("9a", False), ("a-b", False), ("", False), ("a" * 256, False)])
def test_is_valid_name(name, ok):
    assert is_valid_name(name) is ok
