"""Expansion bombs in committed content: placeholders and list indexes are bounded on every path.

A refused expansion is a ConfigLimitExceeded (an InvalidConfigFile: "this environment is broken"):
with change safety (tests/server/test_change_safety.py) a broken environment with no good version
before it is a JSON 422 naming the file and the key, while every other application keeps being
served; a bomb reached only through the server's own overrides is a 500 (no commit is to blame).
The requests carry a timeout: unbounded code would run for minutes (see bench/expansion_bomb.py
for the measured time and memory).
"""

import pytest

from config_server.content import render
from config_server.content.limits import MAX_EXPANSION_CHARS, MAX_LIST_INDEX, MAX_VALUE_CHARS
from config_server.content.parsing import parse_file
from config_server.errors import ConfigLimitExceeded, InvalidConfigFile
from config_server.model import PropertySource

#: The issue's bomb: 13 lines, each value its predecessor four times (a12 would be 160 MiB).
PLACEHOLDER_BOMB = "a0: xxxxxxxxxx\n" + "".join(
    f"a{i}: ${{a{i - 1}}}${{a{i - 1}}}${{a{i - 1}}}${{a{i - 1}}}\n" for i in range(1, 13)
)
#: Its first seven lines: a6 is 40,960 characters, within the limits, until something doubles it.
NEAR_BOMB = "".join(PLACEHOLDER_BOMB.splitlines(keepends=True)[:7])
DEADLINE = 10  # seconds; the bounded answer takes milliseconds, the unbounded one minutes


def test_limit_errors_are_invalid_config_files():
    assert issubclass(ConfigLimitExceeded, InvalidConfigFile)


def test_placeholder_bomb_in_a_rendered_answer_is_refused_naming_file_and_key(repo, serve, http):
    repo.commit({"bomb.yml": PLACEHOLDER_BOMB, "orders.yml": "greeting: hi ${name:there}\n"})
    server = serve(repo.path)
    for ext in ("yml", "properties", "json"):
        response = http.get(f"{server.url}/bomb-default.{ext}", timeout=DEADLINE)
        assert response.status_code == 422, ext
        message = response.json()["message"]
        assert "bomb.yml" in message and "'a7'" in message and str(MAX_VALUE_CHARS) in message
    # broken for every answer: the Environment JSON too (a client would resolve the placeholders)
    assert http.get(f"{server.url}/bomb/default", timeout=DEADLINE).status_code == 422
    assert http.get(f"{server.url}/orders-default.yml", timeout=DEADLINE).text == "greeting: hi there\n"


def test_placeholder_bomb_in_a_plain_text_resource_is_refused_naming_file_and_key(repo, serve, http):
    repo.commit(
        {
            "bomb.yml": NEAR_BOMB,
            "page.txt": "${a6}" * 110 + "\n",
            "many.txt": "${a6}" * (MAX_EXPANSION_CHARS // 40_000),
            "small.txt": "${a1}\n",
        }
    )
    server = serve(repo.path)
    for name in ("page.txt", "many.txt"):
        response = http.get(f"{server.url}/bomb/default/main/{name}", timeout=DEADLINE)
        assert response.status_code == 500, name
        message = response.json()["message"]
        assert name in message and "a" in message and str(MAX_EXPANSION_CHARS) in message
    small = http.get(f"{server.url}/bomb/default/main/small.txt", timeout=DEADLINE)
    assert small.status_code == 200 and small.text == "x" * 40 + "\n"


def test_many_large_values_are_bounded_in_total():
    value = "y" * (MAX_VALUE_CHARS // 2)
    flat = {"big": value, **{f"k{i}": "${big}" for i in range(MAX_EXPANSION_CHARS // len(value) + 2)}}
    sources = [PropertySource("file:///repo/wide.yml", flat)]
    with pytest.raises(ConfigLimitExceeded, match="wide.yml"):
        render.resolve_placeholders(render.merge(sources))


def test_values_within_the_limits_still_resolve():
    flat = render.merge([PropertySource("s", {"a": "x" * 100, "b": "${a}${a}", "c": "${missing:${a}}"})])
    resolved = render.resolve_placeholders(flat)
    assert resolved["b"] == "x" * 200 and resolved["c"] == "x" * 100
    assert render.resolve_text("${b}-${nope}", flat) == "x" * 200 + "-${nope}"


def test_list_index_bomb_in_properties_is_refused_naming_file_and_key(repo, serve, http):
    repo.commit({"servers.properties": "servers[2000000000]=x\n", "orders.yml": "a: [1, 2]\n"})
    server = serve(repo.path)
    for path in ("/servers-default.json", "/servers-default.yml", "/servers/default"):
        response = http.get(server.url + path, timeout=DEADLINE)
        assert response.status_code == 422, path
        message = response.json()["message"]
        assert "servers.properties" in message and "servers[2000000000]" in message
    assert http.get(f"{server.url}/orders-default.json", timeout=DEADLINE).json() == {"a": [1, 2]}


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("big.properties", f"list[{MAX_LIST_INDEX + 1}]=x\n"),
        ("big.properties", "list[" + "9" * 5000 + "]=x\n"),
        ("big.yml", f'"list[{MAX_LIST_INDEX + 1}]": x\n'),
        ("big.yml", f"a:\n  b[0].c[{MAX_LIST_INDEX + 1}]: x\n"),
    ],
)
def test_list_index_above_the_limit_is_refused_when_parsed(name, content):
    with pytest.raises(ConfigLimitExceeded, match=r"big\.(properties|yml).*list|b\[0\]"):
        parse_file(name, content.encode())


def test_list_index_at_the_limit_is_accepted():
    docs = parse_file("ok.properties", f"list[{MAX_LIST_INDEX}]=x\n".encode())
    assert docs[0].values == {f"list[{MAX_LIST_INDEX}]": "x"}


def test_unflatten_refuses_an_index_above_the_limit_naming_the_key():
    sources = [PropertySource("file:///repo/servers.properties", {"servers[2000000000]": "x"})]
    with pytest.raises(ConfigLimitExceeded, match=r"servers\.properties.*servers\[2000000000\]"):
        render.to_json(render.merge(sources))
    with pytest.raises(ConfigLimitExceeded, match=r"servers\[2000000000\]"):
        render.unflatten({"servers[2000000000]": "x"})


def test_placeholder_bomb_reached_from_a_server_override_is_refused_naming_the_key(repo, serve, http):
    repo.commit({"bomb.yml": NEAR_BOMB, "orders.yml": "a: 1\n"})
    server = serve(repo.path, overrides={"boom": "${a6}${a6}", "fine": "${a:none}"})
    response = http.get(f"{server.url}/bomb/default", timeout=DEADLINE)
    assert response.status_code == 500
    assert "overrides" in response.json()["message"] and "'boom'" in response.json()["message"]
    orders = http.get(f"{server.url}/orders/default", timeout=DEADLINE).json()
    assert orders["propertySources"][0]["source"]["fine"] == "1"
