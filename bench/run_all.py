"""`make bench`: every benchmark at its full size, one after the other; JSON lands in bench/results/.

.venv/bin/python -m bench.run_all            # every one: several minutes on a 2-core machine
.venv/bin/python -m bench.run_all serving    # only the named ones
"""

from __future__ import annotations

import sys

from bench import (
    client_reads,
    cluster,
    commit_to_callback,
    diff_scale,
    expansion_bomb,
    hostile_load,
    propagation,
    repo_scale,
    rollout_halt,
    serving,
    spellings,
    validate_scale,
    watcher_memory,
)
from bench.common import machine

BENCHMARKS = {
    "serving": serving.main,
    "propagation": propagation.main,
    "watcher_memory": watcher_memory.main,
    "repo_scale": repo_scale.main,
    "validate_scale": validate_scale.main,
    "diff_scale": diff_scale.main,
    "client": client_reads.main,
    "commit_to_callback": commit_to_callback.main,
    "expansion_bomb": expansion_bomb.main,
    "cluster": cluster.main,
    "rollout_halt": rollout_halt.main,
    "hostile_load": hostile_load.main,
    "spellings": spellings.main,
}


def main(argv: list[str] | None = None) -> None:
    """Run the named benchmarks (all by default) with their default sizes."""
    names = (argv if argv is not None else sys.argv[1:]) or list(BENCHMARKS)
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        raise SystemExit(f"unknown benchmarks {sorted(unknown)}; choose from {sorted(BENCHMARKS)}")
    print(f"machine: {machine()}")
    for name in names:
        BENCHMARKS[name]([])


if __name__ == "__main__":
    main()
