from config_server.content import render
from config_server.model import PropertySource


def sources(*dicts):
    return [PropertySource(f"s{i}", d) for i, d in enumerate(dicts)]


def test_higher_source_wins():
    assert render.merge(sources({"a": 1}, {"a": 2, "b": 3})) == {"a": 1, "b": 3}


def test_list_is_replaced_whole():
    merged = render.merge(
        sources(
            {"tags[0]": "x"},
            {"tags[0]": "a", "tags[1]": "b", "other": 1},
        )
    )
    assert merged == {"tags[0]": "x", "other": 1}


def test_nested_list_replacement_keeps_unrelated_keys():
    merged = render.merge(
        sources(
            {"a.items[0].name": "high"},
            {"a.items[0].name": "low", "a.items[1].name": "low2", "a.size": 3},
        )
    )
    assert merged == {"a.items[0].name": "high", "a.size": 3}


def test_unflatten_rebuilds_maps_and_lists():
    flat = {"a.b[1].c": 2, "a.b[0].c": 1, "x": True}
    assert render.unflatten(flat) == {"a": {"b": [{"c": 1}, {"c": 2}]}, "x": True}


def test_unflatten_orders_indexes_numerically():
    flat = {f"l[{i}]": i for i in range(12)}
    assert render.unflatten(flat) == {"l": list(range(12))}


def test_placeholders_resolve_with_defaults_and_nesting():
    flat = {
        "host": "db",
        "url": "jdbc://${host}:${port:5432}/${name:${host}}",
        "n": 3,
        "count": "${n}",
        "missing": "${nope}",
    }
    resolved = render.resolve_placeholders(flat)
    assert resolved["url"] == "jdbc://db:5432/db"
    assert resolved["count"] == "3"
    assert resolved["missing"] == "${nope}"


def test_placeholder_cycles_terminate():
    resolved = render.resolve_placeholders({"a": "${b}", "b": "${a}"})
    assert "${" in resolved["a"]


def test_placeholders_never_read_process_environment(monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "leak")
    assert render.resolve_text("${SECRET_TOKEN}", {}) == "${SECRET_TOKEN}"


def test_properties_rendering_is_sorted_key_value_lines():
    assert render.to_properties({"b": True, "a": 1, "c": None}) == "a: 1\nb: true\nc: \n"
