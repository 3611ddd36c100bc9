"""Keys inside Nacos data ids: properties edited without disturbing the rest of the file,
YAML and JSON by dotted keys."""

from __future__ import annotations

import pytest
from grayrelease_adapters.nacos.files import FORMATS
from hypothesis import given
from hypothesis import strategies as st

PROPERTIES = FORMATS["properties"]
FILE = (
    "# 数据库连接池 (database pool)\n"
    "! another comment\n"
    "database.url = jdbc:mysql://db-old:3306/demo\n"
    "database.maxPoolSize: 10\n"
    "\n"
    "long.value = first \\\n"
    "    second\n"
    "key\\ with\\=odd\\:chars = v\n"
    "unicode = \\u4e2d\\u6587\n"
    "database.maxPoolSize = 20\n"
    "last.line=no newline"
)


def test_properties_are_read_as_java_reads_them() -> None:
    assert PROPERTIES.read(FILE) == {
        "database.url": "jdbc:mysql://db-old:3306/demo",
        "database.maxPoolSize": "20",  # the last one wins
        "long.value": "first second",
        "key with=odd:chars": "v",
        "unicode": "中文",
        "last.line": "no newline",
    }


def test_setting_a_key_changes_only_its_line() -> None:
    written = PROPERTIES.write(FILE, "database.url", "jdbc:mysql://db-new:3306/demo")
    before, after = FILE.splitlines(), written.splitlines()
    changed = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    assert changed == [
        (
            "database.url = jdbc:mysql://db-old:3306/demo",
            "database.url = jdbc:mysql://db-new:3306/demo",
        )
    ]
    assert PROPERTIES.read(written)["database.url"] == "jdbc:mysql://db-new:3306/demo"


def test_the_key_read_is_the_key_written_and_continuations_fold() -> None:
    written = PROPERTIES.write(FILE, "long.value", "one line")
    assert "second" not in written
    assert PROPERTIES.read(written)["long.value"] == "one line"
    twice = PROPERTIES.write(FILE, "database.maxPoolSize", "30")
    assert "database.maxPoolSize: 10" in twice  # the earlier, unread line is left alone
    assert PROPERTIES.read(twice)["database.maxPoolSize"] == "30"


def test_new_keys_are_appended_and_removed_keys_leave_no_line() -> None:
    added = PROPERTIES.write(FILE, "feature.flag", "true")
    assert added.startswith(FILE)
    assert added.endswith("\nfeature.flag=true\n")
    removed = PROPERTIES.write(FILE, "database.url", None)
    assert "database.url" not in removed
    assert removed.count("\n") == FILE.count("\n") - 1
    assert PROPERTIES.write("", "a", "b") == "a=b\n"
    crlf = PROPERTIES.write("a=1\r\nb=2\r\n", "c", "3")
    assert crlf == "a=1\r\nb=2\r\nc=3\r\n"


keys = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12)
values = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)


@given(key=keys, value=values, other=values)
def test_any_key_and_value_survive_a_write_and_leave_the_others(
    key: str, value: str, other: str
) -> None:
    base = PROPERTIES.write("# keep me\nother.key = x\n", "other.key", other)
    written = PROPERTIES.write(base, key, value)
    read = PROPERTIES.read(written)
    assert read[key] == value
    if key != "other.key":
        assert read["other.key"] == other
    assert written.startswith("# keep me\n")


def test_yaml_and_json_by_dotted_keys_keeping_numbers_numbers() -> None:
    yaml_file = "spring:\n  datasource:\n    url: jdbc:a\n    pool: 10\nlist:\n  - one\n"
    assert FORMATS["yaml"].read(yaml_file) == {
        "spring.datasource.url": "jdbc:a",
        "spring.datasource.pool": "10",
        "list[0]": "one",
    }
    written = FORMATS["yaml"].write(yaml_file, "spring.datasource.pool", "20")
    assert "pool: 20\n" in written
    assert FORMATS["yaml"].read(written)["list[0]"] == "one"
    added = FORMATS["yaml"].write(written, "feature.new", "中文 value")
    assert FORMATS["yaml"].read(added)["feature.new"] == "中文 value"
    json_file = '{"a": {"b": 1, "c": "x"}}'
    assert FORMATS["json"].read(json_file) == {"a.b": "1", "a.c": "x"}
    assert '"b": 2' in FORMATS["json"].write(json_file, "a.b", "2")
    assert '"c": "007"' in FORMATS["json"].write(json_file, "a.c", "007")  # not a number: 007
    with pytest.raises(ValueError, match="not a map"):
        FORMATS["json"].write(json_file, "a.b.c", "1")
    with pytest.raises(ValueError, match="not valid YAML"):
        FORMATS["yaml"].read("a: [unclosed")
    with pytest.raises(ValueError, match="Expecting property name"):
        FORMATS["json"].read("{")
