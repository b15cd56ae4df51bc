"""The server and the client each merge property sources and unflatten keys: they must agree.

The one test module that imports both packages (the client never imports the server): the same
documents go through `config_server.content.render` and `config_client.snapshot`, and through a real
server (its rendered `.json`) and a real client (`client.settings`).
"""

from __future__ import annotations

import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from config_client import ConfigClient
from config_client.snapshot import merge_sources, unflatten
from config_server.content.render import merge as server_merge
from config_server.content.render import unflatten as server_unflatten
from config_server.model import PropertySource

# Keys over a tiny alphabet so that sources collide: the same key, a list in one source and a map
# in another, a list set by a higher source over a longer one below, gaps in indexes.
_name = st.sampled_from(["a", "b", "c-d", "list", "x_y"])
_part = st.one_of(_name.map(lambda n: ("name", n)), st.integers(0, 3).map(lambda i: ("index", i)))


def _key(first: str, rest: list[tuple[str, object]]) -> str:
    text = first
    for kind, value in rest:
        text += f"[{value}]" if kind == "index" else f".{value}"
    return text


_keys = st.builds(_key, _name, st.lists(_part, max_size=3))
_values = st.one_of(st.integers(-2, 2), st.booleans(), st.none(), st.text("ab", max_size=2))
_sources = st.lists(st.dictionaries(_keys, _values, max_size=6), min_size=1, max_size=4)

FIXED = [
    [{"a.b": 1, "a[0]": 2}],
    [{"a[0]": 2}, {"a.b": 1}],
    [{"list[1]": "x"}, {"list[0]": "p", "list[1]": "q", "list[2]": "r"}],
    [{"a": 1, "a.b": 2}, {"a.b.c": 3}],
    [{"a[0].b": 1, "a[0][1]": 2}],
    [{"": 1, "a": 2}],
]


def _server(sources: list[dict[str, object]]) -> tuple[dict[str, object], dict[str, object]]:
    merged = server_merge(PropertySource(f"s{i}", s) for i, s in enumerate(sources))
    return merged, server_unflatten(merged)


def _client(sources: list[dict[str, object]]) -> tuple[dict[str, object], dict[str, object]]:
    merged = merge_sources(sources)
    return merged, unflatten(merged)


def test_fixed_documents_merge_and_unflatten_alike_in_server_and_client():
    for sources in FIXED:
        assert _client(sources) == _server(sources), sources


@settings(max_examples=400, deadline=None)
@given(_sources)
def test_generated_documents_merge_and_unflatten_alike_in_server_and_client(sources):
    assert _client(sources) == _server(sources)


def test_rendered_json_and_client_settings_agree_over_a_real_repository(repo, serve):
    repo.commit(
        {
            "application.yml": "shared:\n  hosts: [a, b, c]\n  mode: x\nlist: [1, 2, 3]\n",
            "orders.yml": "shared:\n  hosts: [z]\nnested:\n  deep:\n    - {k: 1}\n    - [2, 3]\n",
            "orders-prod.properties": "list[1]=replaced\nflag=true\nname.first=n\n",
        }
    )
    server = serve(repo.path)
    rendered = requests.get(f"{server.url}/orders-prod.json", timeout=5).json()
    client = ConfigClient(server.url, "orders", "prod", watch=False).start()
    try:
        assert client.settings == rendered
        assert rendered["shared"]["hosts"] == ["z"] and rendered["list"] == [None, "replaced"]
    finally:
        client.stop()


def test_server_and_client_use_the_client_packages_one_settings_implementation(monkeypatch):
    from config_client import settings_tree
    from config_client.snapshot import Snapshot
    from config_server.content import limits, render

    calls: list[str] = []
    for name in ("merge", "unflatten", "resolve_text"):
        real = getattr(settings_tree, name)
        monkeypatch.setattr(
            settings_tree, name, lambda *a, _n=name, _r=real, **k: calls.append(_n) or _r(*a, **k)
        )
    merged = server_merge([PropertySource("s", {"a": "x", "b": "${a}"})])
    assert render.resolve_placeholders(merged) == {"a": "x", "b": "x"}
    assert render.to_yaml(merged) == "a: x\nb: ${a}\n"
    assert calls == ["merge", "resolve_text", "unflatten"]
    calls.clear()
    snapshot = Snapshot(
        {"version": "v", "propertySources": [{"name": "s", "source": {"a": "x", "b": "${a}"}}]}
    )
    assert snapshot.get("b") == "x" and snapshot.nested() == {"a": "x", "b": "x"}
    assert calls == ["merge", "resolve_text", "unflatten"]
    assert render.MergedSettings is settings_tree.MergedSettings
    assert render.ExpansionTooLarge is settings_tree.ExpansionTooLarge
    assert (limits.MAX_LIST_INDEX, limits.MAX_VALUE_CHARS, limits.MAX_EXPANSION_CHARS) == (
        settings_tree.MAX_LIST_INDEX,
        settings_tree.MAX_VALUE_CHARS,
        settings_tree.MAX_EXPANSION_CHARS,
    )
