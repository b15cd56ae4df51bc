"""Every benchmark runs at a tiny size in the suite, so that none of them can rot."""

import json

from bench import commit_to_callback


def test_commit_to_callback_smoke(tmp_path):
    out = tmp_path / "result.json"
    result = commit_to_callback.main(["--rounds", "2", "--workers", "1", "--json", str(out)])
    assert result["rounds"] == 2
    assert 0 < result["p50_ms"] < 10_000
    assert json.loads(out.read_text()) == result
