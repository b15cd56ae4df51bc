"""A least-recently-used map bounded by the bytes of what it holds, not by its number of entries.

For answers computed from what a caller sends (request headers): an entry count alone lets a
caller that pads its values to kilobytes make the same count hold a thousand times more memory.
Each entry is charged the size its caller declares (roughly the characters of its key and value);
once the total passes the budget, the least recently used entries go. An entry larger than a
sixteenth of the budget is not kept at all, so one caller cannot flush the map with a few of them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")

#: What an entry is charged besides its declared size: the key tuple, the value object, the
#: map's slot and each string's header (for the inventory's parsed headers tracemalloc measures
#: about 300 bytes beyond their characters; charged generously).
ENTRY_OVERHEAD = 768


class ByteBoundedCache(Generic[V]):
    """Remembered values within `max_bytes`; safe to share between threads and greenlets."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        # Held only around dictionary operations, which never switch greenlets: a real lock or a
        # gevent one (whichever `threading` is when this is created) never blocks the loop.
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        """The value remembered for `key` (now the most recently used), or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: Hashable, value: V, size: int) -> None:
        """Remember `value`, charged `size` bytes plus ENTRY_OVERHEAD, evicting the oldest entries."""
        cost = size + ENTRY_OVERHEAD
        if cost > self.max_bytes // 16:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._entries[key] = (value, cost)
            self._bytes += cost
            while self._bytes > self.max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted

    @property
    def bytes(self) -> int:
        """What the remembered entries are charged, in all."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0
