"""The harness formats variables as Grafana does: the expectations of Grafana's own tests
(grafana/scenes@ac1dec6d5bb5607fadde0b5561dfad148ff70c4c,
packages/scenes/src/variables/interpolation/formatRegistry.test.ts) and the plugin's default format."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stitchboard.testing.grafana import All, Option, TimeRange, Url, choose, expand, format_value, interpolate

GRAFANA_EXPECTATIONS = [
    ("glob", "foo", [], "foo"),
    ("glob", ["AA", "BB", "C.*"], [], "{AA,BB,C.*}"),
    ("raw", ["12", "13"], [], "12,13"),
    ("raw", '#Æ³ ̇¹"Ä1"#!"#!½', [], '#Æ³ ̇¹"Ä1"#!"#!½'),
    ("pipe", ["test", "test2"], [], "test|test2"),
    ("distributed", ["test"], [], "test"),
    ("distributed", ["test", "test2"], [], "test,server=test2"),
    ("csv", "test", [], "test"),
    ("csv", ["test", "test2"], [], "test,test2"),
    ("json", "test", [], "test"),
    ("percentencode", ["foo()bar BAZ", "test2"], [], "%7Bfoo%28%29bar%20BAZ%2Ctest2%7D"),
    ("singlequote", "test", [], "'test'"),
    ("singlequote", ["test", "test'2"], [], "'test','test\\'2'"),
    ("doublequote", "test", [], '"test"'),
    ("doublequote", ["test", 'test"2'], [], '"test","test\\"2"'),
    ("sqlstring", "test'value", [], "'test''value'"),
    ("sqlstring", 'test"value', [], "'test\\\"value'"),
    ("sqlstring", ["test", "test'value2"], [], "'test','test''value2'"),
    ("sqlstring", ["test", "test'value2", 'test"value3'], [], "'test','test''value2','test\\\"value3'"),
    ("join", "hello", [], "hello"),
    ("join", ["hello"], [], "hello"),
    ("join", ["hello", "world"], [], "hello,world"),
    ("join", ["hello", "world"], [" | "], "hello | world"),
    ("customqueryparam", ["api", "database"], [], "server=api&server=database"),
    ("customqueryparam", ["api", "database"], ["p-server", "v-"], "p-server=v-api&p-server=v-database"),
    ("customqueryparam", "api", ["p-server"], "p-server=api"),
    (
        "customqueryparam",
        ["mysql&postgres", "databases!"],
        ["space & ampersand!", "v& "],
        "space%20%26%20ampersand%21=v%26%20mysql%26postgres&space%20%26%20ampersand%21=v%26%20databases%21",
    ),
    (
        "uriencode",
        "/any-path/any-second-path?query=foo()bar BAZ",
        [],
        "/any-path/any-second-path?query=foo%28%29bar%20BAZ",
    ),
]


@pytest.mark.parametrize(("fmt", "value", "args", "expected"), GRAFANA_EXPECTATIONS)
def test_formats_match_grafanas_own_tests(
    fmt: str, value: str | list[str], args: list[str], expected: str
) -> None:
    assert format_value(value, ":".join([fmt, *args]), "server") == expected


def test_percentencode_leaves_nothing_a_string_literal_could_trip_on() -> None:
    every_character = "".join(chr(code) for code in range(1, 0x300)) + "☎電話\U0001f600"
    encoded = format_value([every_character, "'\\"], "percentencode", "tenant")
    assert set(encoded) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~%")


def test_no_format_means_the_plugins_own_unescaped_list() -> None:
    """CHDatasource.format: arrays as ``'a','b'`` with nothing escaped, single values raw."""
    assert interpolate("IN ($tenant) AND q = ${queue}", {"tenant": ["a", "b'c"], "queue": "x\\"}) == (
        "IN ('a','b'c') AND q = x\\"
    )


def test_variables_first_then_the_plugins_macros() -> None:
    """A value is pasted before the backend expands macros: a raw value could smuggle one in."""
    window = TimeRange(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    assert expand("SELECT $x, '${x:percentencode}'", window, {"x": "$__toTime"}) == (
        "SELECT toDateTime(1767312000), '%24__toTime'"
    )
    with pytest.raises(ValueError, match="not modelled"):
        interpolate("${x:lucene}", {"x": "a"})
    with pytest.raises(KeyError):
        interpolate("$unknown", {})


def test_a_variable_holds_what_grafana_holds() -> None:
    options = [Option("acme", "x61636D65"), Option("", "x")]
    multi = {"name": "tenant", "multi": True, "includeAll": True}
    assert choose(multi, options, "acme") == ["x61636D65"]
    assert choose(multi, options, All()) == ["x61636D65", "x"]
    assert choose({"name": "tenant"}, options, "") == "x"
    assert choose({"name": "tenant"}, options, Url("anything")) == "anything"
    with pytest.raises(KeyError):
        choose({"name": "tenant"}, options, "globex")
