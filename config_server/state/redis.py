"""The state store in Redis, for a cluster (`--redis`): every replica reads and writes one inventory.

The same interface and the same answers as the SQLite store (`sqlite.py`), so `/instances`, the
metrics' instance counts and the console are the same from every replica. Layout, all under
`config-server:`:

- `instance:<application>\\x1f<profiles>\\x1f<label>\\x1f<instance id>`: a hash per instance of an
  environment (its latest report, `first_seen`, `last_seen`, `version_since`);
- `instances`: the same keys by `last_seen` (a sorted set), for pruning;
- `instances:ordered`: the same keys in (application, profiles, label, instance id) order (a
  sorted set read by `ZRANGEBYLEX`: the separator sorts below every character of a name), so a
  read walks an ordered index in chunks and stops at its `limit`, as the SQLite store's does;
- `served-versions`: the versions served to instances, by when they last were (a sorted set).

A report is merged by a Lua script, atomically, with the SQLite store's rules (a report without
`applied` keeps the earlier one; `version_since` moves only when the running version changes;
`last_seen` never goes back). Every call has a socket timeout; redis-py's sockets are
cooperative under the gevent worker. Redis needs no persistence for this: after a restart the
inventory fills again as the instances poll, and the replicas put back the rollouts' records
(`rollout_memory.py`). A record that is not what a server wrote (a time that is not a number, a
key of another type) is read as that record's `problem`, never raised for all.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from config_server.errors import StateRecordError, StateUnavailable
from config_server.state.base import (
    MAX_APPROVALS,
    MAX_SERVED_PER_ROLLOUT,
    ApprovalRecord,
    InstanceRecord,
    InstanceReport,
    PinRecord,
    RolloutRecord,
    RolloutRejection,
    ScheduleAnchor,
    StateStore,
    read_time,
    restored_fields,
    rollout_record,
    rollout_rejection,
    served_in,
)

PREFIX = "config-server:"
_ALL = PREFIX + "instances"
_ORDERED = PREFIX + "instances:ordered"
_SERVED = PREFIX + "served-versions"
#: Index entries read per round trip.
_CHUNK = 500
_SEP = "\x1f"

_FIELDS = (
    "instance_id",
    "application",
    "profiles",
    "label",
    "served",
    "applied",
    "rejected_version",
    "rejected_reason",
    "client_labels",
    "remote",
    "user_agent",
    "anonymous",
    "first_seen",
    "last_seen",
    "version_since",
)

# KEYS: instance hash, the set by last_seen, the ordered set.
# ARGV: member, served, applied, rejected_version, rejected_reason, client_labels, remote,
#       user_agent, anonymous, seen, instance_id, application, profiles, label.
# Optional values are stored as '' (None) or '=' followed by the value.
_UPSERT = """
local h = KEYS[1]
local seen = tonumber(ARGV[10])
if redis.call('EXISTS', h) == 0 then
  redis.call('HSET', h, 'instance_id', ARGV[11], 'application', ARGV[12], 'profiles', ARGV[13],
    'label', ARGV[14], 'served', ARGV[2], 'applied', ARGV[3], 'rejected_version', ARGV[4],
    'rejected_reason', ARGV[5], 'client_labels', ARGV[6], 'remote', ARGV[7], 'user_agent', ARGV[8],
    'anonymous', ARGV[9], 'first_seen', ARGV[10], 'last_seen', ARGV[10], 'version_since', ARGV[10])
else
  local old = redis.call('HMGET', h, 'served', 'applied', 'last_seen')
  local served, applied, last = old[1] or '', old[2] or '', tonumber(old[3])
  local function coalesce(a, b) if a ~= '' then return a end return b end
  local before = coalesce(applied, served)
  local after = coalesce(ARGV[3], coalesce(applied, coalesce(ARGV[2], served)))
  if after ~= before then redis.call('HSET', h, 'version_since', ARGV[10]) end
  redis.call('HSET', h, 'served', coalesce(ARGV[2], served), 'applied', coalesce(ARGV[3], applied),
    'rejected_version', ARGV[4], 'rejected_reason', ARGV[5], 'client_labels', ARGV[6],
    'remote', ARGV[7], 'user_agent', ARGV[8])
  if seen > last then redis.call('HSET', h, 'last_seen', ARGV[10]) else seen = last end
end
redis.call('ZADD', KEYS[2], seen, ARGV[1])
redis.call('ZADD', KEYS[3], 0, ARGV[1])
return 1
"""


# Rollouts: a hash per rollout (`rollout:<application>\x1f<label>\x1f<id>`), the set of them
# (`rollouts`), and a hash of rejections per rollout (`rollout-rejections:...`, instance -> JSON).
_ROLLOUT = PREFIX + "rollout:"
_ROLLOUTS = PREFIX + "rollouts"
_REJECTIONS = PREFIX + "rollout-rejections:"
#: A hash per rollout: `<instance>\x1f<version>` -> when the canary first served it.
_SERVED = PREFIX + "rollout-served:"
_ROLLOUT_FIELDS = (
    "started",
    "halted_at",
    "halt_reason",
    "resumed_at",  # resume and advance (docs/rollouts.md, "Halt, resume, advance")
    "anchor_at",
    "anchor_step",
    "anchor_note",
)
#: Release approvals: one hash, `<label>\x1f<version>\x1f<approver>` -> `{"reason", "at"}`.
_APPROVALS = PREFIX + "approvals"

# KEYS: the rollout's hash, the set of rollouts. ARGV: member, now. (Indexed even when the record
# was there: a record whose index entry was lost is found again.)
_START_ROLLOUT = """
redis.call('HSETNX', KEYS[1], 'started', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return redis.call('HMGET', KEYS[1], 'started', 'halted_at', 'halt_reason', 'resumed_at', 'anchor_at',
                  'anchor_step', 'anchor_note')
"""

# KEYS: the rollout's hash. ARGV: now, reason. Nothing (nil) when there is no such rollout. A
# halt older than a resume is history: a new halt replaces it.
_HALT_ROLLOUT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
local halted = redis.call('HGET', KEYS[1], 'halted_at')
local resumed = redis.call('HGET', KEYS[1], 'resumed_at')
local h, r = tonumber(halted), tonumber(resumed)
if not halted or (h and r and h < r) then
  redis.call('HSET', KEYS[1], 'halted_at', ARGV[1], 'halt_reason', ARGV[2])
end
return redis.call('HMGET', KEYS[1], 'started', 'halted_at', 'halt_reason', 'resumed_at', 'anchor_at',
                  'anchor_step', 'anchor_note')
"""


class RedisStateStore(StateStore):
    """The state store in one Redis database, shared by every worker of every replica."""

    #: redis-py's sockets are cooperative under the gevent worker: no call blocks the loop.
    cooperative = True

    def __init__(self, url: str, timeout: float = 3.0) -> None:
        options = {
            "socket_timeout": timeout,
            "socket_connect_timeout": min(timeout, 2.0),
            "retry": Retry(NoBackoff(), 1),
            "decode_responses": True,
        }
        # Two clients, two connection pools: writes and pruning come from the inventory's
        # flusher (a real thread under gevent), reads from requests (greenlets); a pool and its
        # lock are never shared between the two.
        self.writer = redis.Redis.from_url(url, **options)
        self.reader = redis.Redis.from_url(url, **options)
        self._upsert = self.writer.register_script(_UPSERT)
        self._start = self.reader.register_script(_START_ROLLOUT)
        self._halt = self.reader.register_script(_HALT_ROLLOUT)

    def record_instances(self, reports: Sequence[InstanceReport]) -> None:
        """Merge the reports, oldest first, in one round trip."""
        if not reports:
            return
        pipe = self.writer.pipeline(transaction=False)
        for r in reports:
            member = _member(r.application, r.profiles, r.label, r.instance_id)
            self._upsert(
                keys=[PREFIX + "instance:" + member, _ALL, _ORDERED],
                args=[
                    member,
                    _put(r.served),
                    _put(r.applied),
                    _put(r.rejected_version),
                    _put(r.rejected_reason),
                    r.client_labels,
                    r.remote,
                    r.user_agent,
                    int(r.anonymous),
                    repr(float(r.seen)),
                    r.instance_id,
                    r.application,
                    r.profiles,
                    r.label,
                ],
                client=pipe,
            )
        # A plain ZADD: a replica's batch a second older may set a slightly earlier time, which
        # matters to nothing kept for a day (ZADD GT would need Redis 6.2).
        served = served_in(reports)
        if served:
            pipe.zadd(_SERVED, served)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            raise StateUnavailable(f"the state store in Redis cannot be reached: {exc}") from None

    def instances(
        self,
        application: str | None = None,
        profiles: str | None = None,
        label: str | None = None,
        seen_after: float = 0.0,
        limit: int = 10_000,
        accept: Callable[[InstanceRecord], bool] | None = None,
    ) -> list[InstanceRecord]:
        """Matching instances, ordered by environment then instance id; at most `limit`.

        Walks the ordered index from the narrowest prefix the filters allow, a chunk at a time,
        and stops once `limit` instances matched: one read has a known cost.
        """
        prefix = ""
        if application is not None:
            prefix = application + _SEP
            if profiles is not None:
                prefix += profiles + _SEP
                if label is not None:
                    prefix += label + _SEP
        low, high = ("[" + prefix, "(" + prefix[:-1] + chr(ord(_SEP) + 1)) if prefix else ("-", "+")
        records: list[InstanceRecord] = []
        offset, wanted = 0, max(0, int(limit))
        try:
            while len(records) < wanted:
                members = cast(
                    list[str], self.reader.zrangebylex(_ORDERED, low, high, start=offset, num=_CHUNK)
                )
                if not members:
                    break
                offset += len(members)
                pipe = self.reader.pipeline(transaction=False)
                for member in members:
                    pipe.hmget(PREFIX + "instance:" + member, _FIELDS)
                for values in pipe.execute(raise_on_error=False):
                    if isinstance(values, Exception) or values[0] is None:
                        continue  # pruned meanwhile (or a key of another type: nothing a server wrote)
                    record = _record(values)
                    if record.last_seen <= seen_after:
                        continue
                    if (profiles is not None and record.profiles != profiles) or (
                        label is not None and record.label != label
                    ):
                        continue
                    if accept is not None and not accept(record):
                        continue
                    records.append(record)
                    if len(records) == wanted:
                        break
        except redis.RedisError as exc:
            raise StateUnavailable(f"the state store in Redis cannot be reached: {exc}") from None
        return records

    def served_versions(self, since: float, limit: int = 10_000) -> list[str]:
        """Versions served after `since`, the most recently served first; at most `limit`."""
        try:
            return cast(
                list[str],
                self.reader.zrevrangebyscore(_SERVED, "+inf", f"({since!r}", start=0, num=max(0, int(limit))),
            )
        except redis.RedisError as exc:
            raise StateUnavailable(f"the state store in Redis cannot be reached: {exc}") from None

    def prune(self, seen_before: float) -> int:
        """Forget instances last seen, and versions last served, before `seen_before`."""
        try:
            self.writer.zremrangebyscore(_SERVED, "-inf", f"({seen_before!r}")
            members = cast(list[str], self.writer.zrangebyscore(_ALL, "-inf", f"({seen_before!r}"))
            if not members:
                return 0
            pipe = self.writer.pipeline(transaction=False)
            for member in members:
                pipe.delete(PREFIX + "instance:" + member)
                pipe.zrem(_ALL, member)
                pipe.zrem(_ORDERED, member)
            results = pipe.execute()
        except redis.RedisError as exc:
            raise StateUnavailable(f"the state store in Redis cannot be reached: {exc}") from None
        return sum(1 for deleted in results[0::3] if deleted)

    # --- rollout progress (`rollouts.py`): called from greenlets (the rollouts loop, requests), so
    # through the reader's pool, which only greenlets use; each call is one atomic step.

    def start_rollout(self, application: str, label: str, rollout_id: str, now: float) -> RolloutRecord:
        """Create the record unless it exists (the first start wins) and return it."""
        member = _SEP.join((application, label, rollout_id))
        values = self._call(self._start, keys=[_ROLLOUT + member, _ROLLOUTS], args=[member, repr(float(now))])
        return _rollout(application, label, rollout_id, values)

    def rollouts(self) -> list[RolloutRecord]:
        """Every rollout record, by application, label and id; a record that cannot be read (a
        key of another type, a time that is not one) is returned with its `problem`."""
        members = sorted(
            m for m in cast(set[str], self._call(self.reader.smembers, _ROLLOUTS)) if m.count(_SEP) == 2
        )
        if not members:
            return []
        pipe = self.reader.pipeline(transaction=False)
        for member in members:
            pipe.hmget(_ROLLOUT + member, _ROLLOUT_FIELDS)
        records = []
        for member, values in zip(members, self._call(pipe.execute, raise_on_error=False), strict=True):
            application, label, rollout_id = member.split(_SEP, 2)
            if isinstance(values, Exception):
                unreadable = RolloutRecord(
                    application, label, rollout_id, 0.0, 0.0, None, _wrong_type(values)
                )
                records.append(unreadable)
            elif values[0] is not None or values[1] is not None:
                records.append(_rollout(application, label, rollout_id, values))
        return records

    def halt_rollout(
        self, application: str, label: str, rollout_id: str, reason: str, now: float
    ) -> RolloutRecord | None:
        """Set the halt unless one is set (the first halt's time and reason stay)."""
        member = _SEP.join((application, label, rollout_id))
        values = self._call(self._halt, keys=[_ROLLOUT + member], args=[repr(float(now)), reason])
        return _rollout(application, label, rollout_id, values) if values else None

    def restore_rollout(
        self,
        application: str,
        label: str,
        rollout_id: str,
        started: float,
        halted_at: float | None,
        halt_reason: str | None,
        resumed_at: float | None = None,
        anchor: ScheduleAnchor | None = None,
    ) -> RolloutRecord:
        """Read the record and write it back merged (`restored_fields`) in one optimistic
        transaction (WATCH, MULTI, EXEC); a key of another type is replaced."""
        member = _SEP.join((application, label, rollout_id))
        key = _ROLLOUT + member
        fields = restored_fields(None, started, halted_at, halt_reason, resumed_at, anchor)

        def put_back(pipe: Any) -> None:
            nonlocal fields
            kind, index = pipe.type(key), pipe.type(_ROLLOUTS)
            stored = pipe.hmget(key, _ROLLOUT_FIELDS) if kind == "hash" else None
            if stored is not None and stored[0] is None and stored[1] is None:
                stored = None
            fields = restored_fields(stored, started, halted_at, halt_reason, resumed_at, anchor)
            start, halt, reason, resumed, moved = fields
            values = {"started": repr(start)}
            if halt is not None:
                values |= {"halted_at": repr(halt), "halt_reason": reason or ""}
            if resumed is not None:
                values["resumed_at"] = repr(resumed)
            if moved is not None:
                values |= {
                    "anchor_at": repr(moved.at),
                    "anchor_step": str(moved.step),
                    "anchor_note": moved.note or "",
                }
            pipe.multi()
            pipe.delete(key)  # what is not merged (an unreadable field) is not written back
            if index not in ("set", "none"):
                pipe.delete(_ROLLOUTS)  # the index is rebuilt as every replica puts back what it knows
            pipe.hset(key, mapping=values)
            pipe.sadd(_ROLLOUTS, member)

        self._call(self.reader.transaction, put_back, key, _ROLLOUTS)
        start, halt, reason, resumed, moved = fields
        return RolloutRecord(application, label, rollout_id, start, halt, reason, None, resumed, moved)

    def end_rollout(self, application: str, label: str, rollout_id: str) -> None:
        """Delete the record and its rejections, in one transaction."""
        member = _SEP.join((application, label, rollout_id))
        pipe = self.reader.pipeline(transaction=True)
        pipe.delete(_ROLLOUT + member, _REJECTIONS + member, _SERVED + member)
        pipe.srem(_ROLLOUTS, member)
        self._call(pipe.execute)

    def record_rollout_rejection(
        self,
        application: str,
        label: str,
        rollout_id: str,
        instance_id: str,
        version: str,
        reason: str | None,
        now: float,
        caller: str = "",
    ) -> int:
        """Set the instance's rejection and count the distinct callers, in one transaction."""
        key = _REJECTIONS + _SEP.join((application, label, rollout_id))
        pipe = self.reader.pipeline(transaction=True)
        value = {"version": version, "reason": reason, "seen": now, "caller": caller}
        pipe.hset(key, instance_id, json.dumps(value))
        pipe.hgetall(key)
        rows = cast(dict[str, str], self._call(pipe.execute)[1])
        return len({json.loads(raw).get("caller") or _SEP + instance for instance, raw in rows.items()})

    def record_canary_served(
        self, application: str, label: str, rollout_id: str, served: Sequence[tuple[str, str, float]]
    ) -> None:
        """`HSETNX` each (an earlier time stays), up to the cap, in one round trip."""
        if not served:
            return
        key = _SERVED + _SEP.join((application, label, rollout_id))
        room = MAX_SERVED_PER_ROLLOUT - int(self._call(self.reader.hlen, key))
        if room <= 0:
            return
        pipe = self.reader.pipeline(transaction=False)
        for instance_id, version, seen in served[:room]:
            pipe.hsetnx(key, instance_id + _SEP + version, repr(float(seen)))
        self._call(pipe.execute)

    def canary_served_at(
        self, application: str, label: str, rollout_id: str, instance_id: str, version: str
    ) -> float | None:
        """The stored time, if any."""
        key = _SERVED + _SEP.join((application, label, rollout_id))
        seen = self._call(self.reader.hget, key, instance_id + _SEP + version)
        return float(seen) if seen is not None else None

    def canary_served_instances(
        self, application: str, label: str, rollout_id: str, limit: int = 1000
    ) -> list[str]:
        """Distinct instance ids of the served hash's fields (`instance SEP version`), sorted."""
        key = _SERVED + _SEP.join((application, label, rollout_id))
        try:
            fields = cast(list[str], self._call(self.reader.hkeys, key))
        except StateRecordError:
            return []  # not a hash: nothing a server wrote
        return sorted({field.rsplit(_SEP, 1)[0] for field in fields})[: max(0, int(limit))]

    def rollout_rejections(self, application: str, label: str, rollout_id: str) -> list[RolloutRejection]:
        """The rejections, oldest first."""
        key = _REJECTIONS + _SEP.join((application, label, rollout_id))
        try:
            found = cast(dict[str, str], self._call(self.reader.hgetall, key))
        except StateRecordError:
            return []  # not a hash: nothing a server wrote
        rejections = [_rejection(instance, raw) for instance, raw in found.items()]
        return sorted(rejections, key=lambda r: (r.seen, r.instance_id))

    def put_pin(self, pin: PinRecord) -> None:
        """`HSET pins <key> <json>` and the intact mark, in one transaction."""
        pipe = self.reader.pipeline(transaction=True)
        pipe.hset(_PINS, _pin_field(pin.key), json.dumps(pin.to_json()))
        pipe.set(_PINS_INTACT, "1")
        self._call(pipe.execute)

    def remove_pin(self, application: str, profiles: str, label: str) -> PinRecord | None:
        """`HGET`, `HDEL` and the intact mark, in one transaction."""
        field = _pin_field((application, profiles, label))
        pipe = self.reader.pipeline(transaction=True)
        pipe.hget(_PINS, field)
        pipe.hdel(_PINS, field)
        pipe.set(_PINS_INTACT, "1")
        raw = self._call(pipe.execute)[0]
        return _pin_record(raw) if raw is not None else None

    def pins(self) -> list[PinRecord]:
        """Every pin (one that is not what a server wrote is left out)."""
        try:
            found = cast(dict[str, str], self._call(self.reader.hgetall, _PINS))
        except StateRecordError:
            return []
        records = [_pin_record(raw) for raw in found.values()]
        return sorted((r for r in records if r is not None), key=lambda r: r.key)

    def pins_intact(self) -> bool:
        """Whether the intact mark is there: a Redis that restarted without persistence lost it."""
        return bool(self._call(self.reader.exists, _PINS_INTACT))

    def restore_pins(self, pins: Sequence[PinRecord]) -> None:
        """`HSETNX` each pin (a stored one wins) and the intact mark, in one transaction."""
        pipe = self.reader.pipeline(transaction=True)
        for pin in pins:
            pipe.hsetnx(_PINS, _pin_field(pin.key), json.dumps(pin.to_json()))
        pipe.set(_PINS_INTACT, "1")
        self._call(pipe.execute)

    def record_approval(self, record: ApprovalRecord) -> bool:
        """`HSETNX approvals <label SEP version SEP approver> <json>`: the first approval is kept."""
        field = _SEP.join(record.key)
        value = json.dumps({"reason": record.reason, "at": record.at})
        return bool(self._call(self.writer.hsetnx, _APPROVALS, field, value))

    def approvals(self, limit: int = MAX_APPROVALS) -> list[ApprovalRecord]:
        """Every approval of the hash that a server wrote, the newest first."""
        try:
            found = cast(dict[str, str], self._call(self.reader.hgetall, _APPROVALS))
        except StateRecordError:
            return []  # not a hash: nothing a server wrote
        records = [r for r in (_approval(f, raw) for f, raw in found.items()) if r is not None]
        records.sort(key=lambda r: -r.at)
        return records[: max(0, int(limit))]

    def _call(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except redis.ResponseError as exc:
            if "WRONGTYPE" in str(exc):
                raise StateRecordError(f"a record in Redis is not what a server wrote: {exc}") from None
            raise StateUnavailable(f"the state store in Redis cannot be used: {exc}") from None
        except redis.RedisError as exc:
            raise StateUnavailable(f"the state store in Redis cannot be reached: {exc}") from None

    def close(self) -> None:
        """Close the connections."""
        self.writer.close()
        self.reader.close()


#: Pins: one hash, `<application>\x1f<profiles>\x1f<label>` -> the pin as JSON; the intact mark is
#: written with every change, so its absence says Redis lost the pins (`StateStore.pins_intact`).
_PINS = PREFIX + "pins"
_PINS_INTACT = PREFIX + "pins:intact"


def _pin_field(key: tuple[str, str, str]) -> str:
    return _SEP.join(key)


def _pin_record(raw: str) -> PinRecord | None:
    """A stored pin; None when it is not what a server wrote."""
    try:
        data = json.loads(raw)
        fields = [data[name] for name in ("application", "profiles", "label", "version", "reason", "by")]
        at = read_time(data["at"])
    except (ValueError, KeyError, TypeError):
        return None
    if at is None or not all(isinstance(value, str) for value in fields):
        return None
    application, profiles, label, version, reason, by = fields
    return PinRecord(application, profiles, label, version, reason, by, at)


def _approval(field: str, raw: str) -> ApprovalRecord | None:
    """An approval from its hash field and JSON value; None for what no server wrote."""
    parts = field.split(_SEP)
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    at = read_time(value.get("at")) if isinstance(value, dict) else None
    if len(parts) != 3 or at is None or not isinstance(value.get("reason", ""), str):
        return None
    return ApprovalRecord(parts[0], parts[1], parts[2], value.get("reason", ""), at)


def _rollout(application: str, label: str, rollout_id: str, values: list[str | None]) -> RolloutRecord:
    return rollout_record(application, label, rollout_id, *values)


def _wrong_type(error: Exception) -> str:
    return f"not a hash ({str(error)[:80]})"


def _rejection(instance: str, raw: str) -> RolloutRejection:
    """A stored rejection (JSON); one that is not what a server wrote is shown as unreadable."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        data = {}
    return rollout_rejection(instance, data.get("version"), data.get("reason"), data.get("seen"))


def _member(application: str, profiles: str, label: str, instance_id: str) -> str:
    return _SEP.join((application, profiles, label, instance_id))


def _put(value: str | None) -> str:
    return "" if value is None else "=" + value


def _get(value: str | None) -> str | None:
    return None if not value else value[1:]


def _record(values: list[str | None]) -> InstanceRecord:
    (
        instance_id,
        application,
        profiles,
        label,
        served,
        applied,
        rejected_version,
        rejected_reason,
        client_labels,
        remote,
        user_agent,
        anonymous,
        first_seen,
        last_seen,
        version_since,
    ) = values
    return InstanceRecord(
        instance_id or "",
        application or "",
        profiles or "",
        label or "",
        _get(served),
        _get(applied),
        _get(rejected_version),
        _get(rejected_reason),
        client_labels or "",
        remote or "",
        user_agent or "",
        anonymous == "1",
        read_time(first_seen) or 0.0,  # a time that is not one (what no server writes) reads as 0
        read_time(last_seen) or 0.0,
        read_time(version_since) or 0.0,
    )
