import pytest

from config_server.content import profiles
from config_server.content.parsing import flatten, parse_file, parse_properties
from config_server.errors import InvalidConfigFile


def test_flatten_nested_maps_and_lists_keep_json_types():
    data = {"a": {"b": 1, "c": [True, {"d": None}], "e": 1.5}, "empty": []}
    assert flatten(data) == {"a.b": 1, "a.c[0]": True, "a.c[1].d": None, "a.e": 1.5, "empty": ""}


def test_yaml_dates_become_iso_strings():
    [doc] = parse_file("a.yml", b"released: 2024-01-02\n")
    assert doc.values == {"released": "2024-01-02"}


def test_properties_separators_continuations_and_escapes():
    text = (
        "# comment\n! also comment\n"
        "a=1\nb : two\nc three\n"
        "long = first \\\n    second\n"
        "unicode=caf\\u00e9\nkey\\:colon=x\nempty=\n"
    )
    assert parse_properties(text) == {
        "a": "1",
        "b": "two",
        "c": "three",
        "long": "first second",
        "unicode": "café",
        "key:colon": "x",
        "empty": "",
    }


def test_properties_values_are_strings():
    [doc] = parse_file("a.properties", b"port=8080\nflag=true\n")
    assert doc.values == {"port": "8080", "flag": "true"}


def test_malformed_yaml_names_file_line_and_column():
    with pytest.raises(InvalidConfigFile) as err:
        parse_file("orders.yml", b"a: 1\nb: [unclosed\nc: 3\n")
    message = str(err.value)
    assert message.startswith("orders.yml:")
    assert "line 3" in message and "column" in message


def test_duplicate_keys_are_refused_with_their_position():
    with pytest.raises(InvalidConfigFile, match=r"duplicate key 'a'.*line 2, column 1"):
        parse_file("dup.yml", b"a: 1\na: 2\n")


def test_top_level_must_be_a_mapping():
    with pytest.raises(InvalidConfigFile, match="must be a mapping"):
        parse_file("list.yml", b"- a\n- b\n")


def test_not_utf8_is_refused():
    with pytest.raises(InvalidConfigFile, match="UTF-8"):
        parse_file("bin.yml", b"a: \xff\xfe\n")


def test_multi_document_activation_is_read_from_both_spellings():
    data = b"a: 1\n---\nspring:\n  profiles: dev\na: 2\n---\nspring.config.activate.on-profile: x\n"
    docs = parse_file("f.yml", data)
    assert [d.activation for d in docs] == [None, "dev", "x"]


@pytest.mark.parametrize(
    ("expression", "active", "expected"),
    [
        ("prod", ("prod",), True),
        ("prod", ("dev",), False),
        ("prod | eu", ("eu",), True),
        ("prod & eu", ("prod",), False),
        ("prod & eu", ("prod", "eu"), True),
        ("!prod", ("dev",), True),
        ("!prod", ("prod",), False),
        ("prod,eu", ("eu",), True),
        (["a", "b"], ("b",), True),
        ("(a | b) & !c", ("b",), True),
        ("(a | b) & !c", ("b", "c"), False),
    ],
)
def test_profile_expressions(expression, active, expected):
    assert profiles.is_active(expression, active) is expected


def test_rank_prefers_the_later_profile():
    assert profiles.rank("dev", ("dev", "prod")) < profiles.rank("prod", ("dev", "prod"))
    assert profiles.rank("!x", ("dev",)) == -1


def test_properties_entries_give_each_entry_with_its_first_line_and_line_of_key_finds_it():
    from config_server.content.parsing import line_of_key, properties_entries

    text = "# comment\na.b = 1\n  c:2 \\\n  more\nd\\:e = 3\n"
    entries = list(properties_entries(text))
    assert entries == [("a.b", "1", 2), ("c", "2 more", 3), ("d:e", "3", 5)]
    pairs = [(key, line) for key, _, line in entries]
    assert line_of_key(pairs, "c") == 3 and line_of_key(pairs, "a") == 2 and line_of_key(pairs, "x") is None
