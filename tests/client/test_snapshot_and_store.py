import json
import logging

import pytest

from config_client.errors import InvalidResponse
from config_client.snapshot import Snapshot, merge_sources, unflatten
from config_client.store import LastKnownGood


def env(*sources, version="v1"):
    return {
        "name": "a",
        "version": version,
        "propertySources": [{"name": f"s{i}", "source": s} for i, s in enumerate(sources)],
    }


def test_merge_prefers_specific_sources_and_replaces_lists_whole():
    merged = merge_sources([{"l[0]": "x", "a": 1}, {"l[0]": "p", "l[1]": "q", "a": 2, "b": 3}])
    assert merged == {"l[0]": "x", "a": 1, "b": 3}


def test_snapshot_reads_and_nested_view():
    snap = Snapshot(env({"db.pool.max": 10, "hosts[0]": "a", "hosts[1]": "b"}), etag="e1")
    assert snap.get("db.pool.max") == 10
    assert snap.get("missing", 5) == 5
    assert snap.nested() == {"db": {"pool": {"max": 10}}, "hosts": ["a", "b"]}
    nested = snap.nested()
    nested["db"]["pool"]["max"] = 0
    assert snap.nested()["db"]["pool"]["max"] == 10
    with pytest.raises(TypeError):
        snap.values["db.pool.max"] = 1  # type: ignore[index]


def test_diff_lists_added_removed_and_changed():
    old = Snapshot(env({"a": 1, "b": 2}), etag="1")
    new = Snapshot(env({"a": 1, "b": 3, "c": 4}, version="v2"), etag="2")
    change = old.diff(new)
    assert change.added == {"c": 4}
    assert change.changed == {"b": (2, 3)}
    assert change.removed == {}
    assert (change.old_version, change.new_version) == ("v1", "v2")
    assert change.keys == ["b", "c"]
    assert change.only(["c*"]).keys == ["c"]
    assert not change.only(["zzz"])


@pytest.mark.parametrize("bad", [[], {"propertySources": "x"}, {"propertySources": [{"name": "n"}]}])
def test_malformed_environment_is_refused(bad):
    with pytest.raises(InvalidResponse):
        Snapshot(bad)


def test_unflatten_handles_gaps_and_conflicts():
    assert unflatten({"l[2]": "c", "l[0]": "a"}) == {"l": ["a", None, "c"]}
    assert unflatten({"a": 1, "a.b": 2}) == {"a": 1}


def test_store_round_trip_is_atomic(tmp_path):
    store = LastKnownGood(tmp_path, "orders", "prod", "feature/x")
    assert store.load() is None
    store.save(env({"a": 1}), "etag-1")
    store.save(env({"a": 2}), "etag-2")
    environment, etag = store.load()
    assert etag == "etag-2" and environment["propertySources"][0]["source"] == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == [store.path.name]


def test_corrupt_store_is_ignored_with_a_warning(tmp_path, caplog):
    store = LastKnownGood(tmp_path, "orders", "prod", None)
    store.path.write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert store.load() is None
    assert "corrupt" in caplog.text
    store.path.write_text(json.dumps({"etag": 1}))
    assert store.load() is None
