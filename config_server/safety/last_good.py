"""The newest good version of an environment on a label: what a broken head serves instead.

When a branch or tag's newest commit is broken for an environment (`validation.py`), the service
serves the newest good commit before it: `LastGood` walks the label's first-parent history back
(at most `MAX_WALK` commits), skipping versions the verdict memory already knows are broken, and
records the answer there (`verdicts.py`, the one memory of broken versions), so the walk runs
once per broken head and environment, not once per request.
"""

from __future__ import annotations

from collections.abc import Callable

from config_server.errors import BrokenEnvironment
from config_server.safety.verdicts import HeldBack, VerdictStore

#: How many commits back the walk looks for a good version before giving up (422).
MAX_WALK = 100


class LastGood:
    """Finds and remembers the newest good version before a broken head, per environment."""

    def __init__(
        self,
        store: VerdictStore,
        parents: Callable[[str], list[str]],
        max_walk: int = MAX_WALK,
    ) -> None:
        self.store = store
        self.parents = parents
        self.max_walk = max_walk

    def hold_back(
        self,
        head: str,
        environment: str,
        label: str,
        error: BrokenEnvironment,
        is_good: Callable[[str], bool],
        persist: Callable[[], bool] = lambda: True,
    ) -> HeldBack:
        """What to serve instead of the broken `head`: walk first parents until `is_good` says yes.
        `persist()` (asked only when the verdict is new) says whether it may be written to disk."""
        held = self.store.held(head, environment)
        if held is not None:
            return held
        good = None
        version = head
        for _ in range(self.max_walk):
            parents = self.parents(version)
            if not parents:
                break
            version = parents[0]
            if self.store.broken(version, environment) is not None:
                continue
            if is_good(version):
                good = version
                break
        held = HeldBack(head, good, tuple(error.problems))
        self.store.set_held(environment, label, held, persist())
        return held
