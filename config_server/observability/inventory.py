"""Instance reports: who asked for which environment, what it was served, what it runs, what it refused.

Every Environment GET and long poll carries (optionally) the headers of protocol.md, "Instance
reports": `X-Config-Client-Id`, `X-Config-Client-Labels`, `X-Config-Applied`, `X-Config-Rejected`.
`parse_client_headers` validates them (a malformed one is `InvalidHeader`, a 400 naming it, and
nothing is stored); a caller that sends no id (a Spring client, curl) is known by its remote
address and User-Agent.

`Inventory.observe` only appends to an in-memory queue: the request never waits for a disk. A
flusher on a real OS thread (not a greenlet: SQLite would block the gevent loop) writes the queue
to the state store once a second, collapsing repeated reports of one instance and skipping a
report that repeats what it wrote less than 30 s ago (a watcher re-polling with nothing new), in
transactions of at most 500 rows; it forgets instances unseen for a day. A write that fails (the
SQLite file locked beyond its busy timeout, Redis away) drops nothing it accepted: the next flush
writes those reports first, merged with newer ones, at most `MAX_QUEUED_REPORTS` of them. An
instance unseen for three minutes is `gone`.

Ids are chosen by the caller, and so are the application, profiles and label a row is keyed by
with the id, so what one caller can make the store hold is capped: within an hour, one remote
address may introduce at most `max_ids_per_address` distinct instance ids
(`--instance-ids-per-address`, default `MAX_IDS_PER_ADDRESS_PER_HOUR`) and `ROWS_PER_ID` times as
many rows, and all addresses together `MAX_NEW_IDS_PER_HOUR` ids and `MAX_NEW_ROWS_PER_HOUR` rows
(all per worker process); reports beyond them are dropped (counted in `dropped_reports`, logged
once per address and hour). Reads are bounded too: `instances` returns at most `limit` rows
(`MAX_SCAN_ROWS` by default). Header parsing is linear, once per request, and its answers are
remembered within MAX_PARSE_CACHE_BYTES.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from config_server.concurrency import call_cooperatively, real_thread_primitives
from config_server.errors import InvalidHeader, StateUnavailable
from config_server.names import INSTANCE_LABEL, EnvironmentRequest
from config_server.observability.byte_cache import ByteBoundedCache
from config_server.state import InstanceRecord, InstanceReport, StateStore

log = logging.getLogger(__name__)

#: An instance not seen for this long is gone (a watcher re-polls at least every 60 s).
GONE_AFTER_SECONDS = 180.0
#: A gone instance stays in the history this long, then is forgotten.
HISTORY_SECONDS = 86400.0
#: Queued reports beyond this are dropped (the oldest first): an instance reports again soon. Reports
#: a failed flush could not write are kept for the next one (one per instance) up to this many too.
MAX_QUEUED_REPORTS = 200_000
#: A report that repeats what was written is written again only after this long (last seen
#: is therefore exact to within this; `gone` is decided at 180 s).
REWRITE_AFTER_SECONDS = 30.0
#: Distinct instance ids one remote address may introduce per hour (per worker process): far above
#: the pods of one node or the instances behind one NAT address, far below what fills a disk.
MAX_IDS_PER_ADDRESS_PER_HOUR = 1000
#: Distinct instance ids all addresses together may introduce per hour (per worker process).
MAX_NEW_IDS_PER_HOUR = 100_000
#: Rows (an instance id with one application, profiles and label) one address may add per hour,
#: per id it may add: room for anonymous callers (one id per address and User-Agent) that read
#: several applications, not for one id asking for thousands of profiles.
ROWS_PER_ID = 2
#: Rows all addresses together may add per hour (per worker process).
MAX_NEW_ROWS_PER_HOUR = ROWS_PER_ID * MAX_NEW_IDS_PER_HOUR
#: The window of the caps.
ID_WINDOW_SECONDS = 3600.0
#: The most rows one read of the inventory returns (the console, the metrics scrape).
MAX_SCAN_ROWS = 10_000
#: Rows per transaction: the flusher pauses between chunks so a big batch never holds the GIL long.
FLUSH_CHUNK = 500

_CLIENT_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
_LABEL_PAIR = re.compile(f"({INSTANCE_LABEL})=({INSTANCE_LABEL})")
_VERSION = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Every pattern applied to a header is linear: no two parts of a pattern can match the same text
# (the version stops at a blank or `;`, the blanks at `;`, an escape is one backslash and one
# character), so a failed match gives back each character once. Applied to the stripped value,
# after its length is checked.
_REJECTED = re.compile(r'(?P<version>[^;\s]+)(?:\s*;\s*reason="(?P<reason>[^"\\]*(?:\\.[^"\\]*)*)")?')
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_LABEL_PAIRS = 16
MAX_REASON_CHARS = 512
#: The longest `X-Config-Rejected` value read: a version, a reason of MAX_REASON_CHARS characters
#: each escaped, and a little room for blanks.
MAX_REJECTED_CHARS = 128 + 2 * MAX_REASON_CHARS + 64
#: Bytes of remembered header parses per worker (an instance sends the same headers again and
#: again): a caller's distinct, padded headers evict each other rather than grow the process.
MAX_PARSE_CACHE_BYTES = 4 * 1024 * 1024
#: The environ key under which a request's parsed report (or its InvalidHeader) is kept, so that
#: the fast path and the Flask view it hands a request to parse its headers once.
PARSED_ENVIRON_KEY = "config_server.client_headers"


@dataclass(frozen=True)
class ClientHeaders:
    """The caller's identity and report, validated."""

    instance_id: str
    anonymous: bool
    client_labels: str
    applied: str | None
    rejected_version: str | None
    rejected_reason: str | None
    remote: str
    user_agent: str


#: Parsed headers by their raw values; an entry is charged twice the characters of its key (the
#: key's own, and the stripped and joined copies the answer holds).
_PARSED: ByteBoundedCache[ClientHeaders] = ByteBoundedCache(MAX_PARSE_CACHE_BYTES)


def parse_client_headers(environ: MutableMapping[str, Any]) -> ClientHeaders:
    """Read the four report headers from a WSGI environ; raise InvalidHeader naming a malformed one.

    Parsed once per request: the answer (or the error) is kept in the environ, so the Flask view
    that the fast path hands a request to reads it from there. The same instance sends the same
    headers again and again, so answers are also remembered across requests, within
    MAX_PARSE_CACHE_BYTES.
    """
    done = environ.get(PARSED_ENVIRON_KEY)
    if isinstance(done, ClientHeaders):
        return done
    if isinstance(done, InvalidHeader):
        raise done
    get = environ.get
    key = (
        str(get("REMOTE_ADDR") or ""),
        str(get("HTTP_USER_AGENT") or "")[:256],
        get("HTTP_X_CONFIG_CLIENT_ID"),
        get("HTTP_X_CONFIG_CLIENT_LABELS"),
        get("HTTP_X_CONFIG_APPLIED"),
        get("HTTP_X_CONFIG_REJECTED"),
    )
    parsed = _PARSED.get(key)
    if parsed is None:
        try:
            parsed = _parse(*key)
        except InvalidHeader as exc:
            environ[PARSED_ENVIRON_KEY] = exc
            raise
        _PARSED.put(key, parsed, 2 * sum(len(part) for part in key if part))
    environ[PARSED_ENVIRON_KEY] = parsed
    return parsed


def _parse(
    remote: str,
    user_agent: str,
    raw_id: str | None,
    raw_labels: str | None,
    applied: str | None,
    raw_rejected: str | None,
) -> ClientHeaders:
    if raw_id is None:
        instance_id, anonymous = _anonymous_id(remote, user_agent), True
    else:
        instance_id, anonymous = raw_id.strip(), False
        if not _CLIENT_ID.fullmatch(instance_id):
            raise InvalidHeader(
                "X-Config-Client-Id must be 1-128 characters of letters, digits and . _ : @ -"
            )
    labels = _client_labels(raw_labels)
    if applied is not None:
        applied = applied.strip()
        if not _VERSION.fullmatch(applied):
            raise InvalidHeader("X-Config-Applied must be a version (a commit id)")
    rejected_version, reason = _rejected(raw_rejected)
    return ClientHeaders(
        instance_id, anonymous, labels, applied, rejected_version, reason, remote, user_agent
    )


def _anonymous_id(remote: str, user_agent: str) -> str:
    """A caller without an id is its address and User-Agent (both shown as they came)."""
    return f"{remote or 'unknown'} {user_agent}".strip()


def _client_labels(raw: str | None) -> str:
    if raw is None or not raw.strip():
        return ""
    pairs = [p.strip() for p in raw.split(",")]
    if len(pairs) > MAX_LABEL_PAIRS:
        raise InvalidHeader(f"X-Config-Client-Labels has more than {MAX_LABEL_PAIRS} pairs")
    for pair in pairs:
        if not _LABEL_PAIR.fullmatch(pair):
            raise InvalidHeader(
                "X-Config-Client-Labels must be k=v pairs separated by commas "
                "(1 to 128 letters, digits and . _ - each)"
            )
    return ",".join(pairs)


def _rejected(raw: str | None) -> tuple[str | None, str | None]:
    if raw is None:
        return None, None
    raw = raw.strip()
    if len(raw) > MAX_REJECTED_CHARS:
        raise InvalidHeader(f"X-Config-Rejected is longer than {MAX_REJECTED_CHARS} characters")
    match = _REJECTED.fullmatch(raw)
    if not match or not _VERSION.fullmatch(match["version"]):
        raise InvalidHeader('X-Config-Rejected must be <version>; reason="<text>"')
    reason = match["reason"]
    if reason is not None:
        reason = re.sub(r"\\(.)", r"\1", reason)
        if len(reason) > MAX_REASON_CHARS or _CONTROL.search(reason):
            raise InvalidHeader(
                f"X-Config-Rejected: the reason must be at most {MAX_REASON_CHARS} printable characters"
            )
    return match["version"], reason


class Inventory:
    """Collects instance reports in memory and writes them to the state store in the background."""

    def __init__(
        self,
        store: StateStore,
        flush_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        enabled: bool = True,
        max_ids_per_address: int = MAX_IDS_PER_ADDRESS_PER_HOUR,
    ) -> None:
        self.store = store
        self.enabled = enabled
        self.flush_interval = flush_interval
        self.clock = clock
        self._queue: deque[tuple[Any, ...]] = deque(maxlen=MAX_QUEUED_REPORTS)
        self._closed = False
        self._started = False
        self._last_prune = 0.0
        self._written: dict[tuple[str, str, str, str], tuple[tuple[str | None, ...], float]] = {}
        self._sleep: Callable[[float], None] = time.sleep
        #: Background flushes that failed in a row (`flush_in_background`), and what failed last.
        self.failed_flushes = 0
        self._failing: str | None = None
        self.max_ids_per_address = max_ids_per_address
        self.max_new_ids = MAX_NEW_IDS_PER_HOUR
        self._window_start = clock()
        self._ids_by_remote: dict[str, set[str]] = {}
        self._ids_in_window = 0
        self.max_new_rows = MAX_NEW_ROWS_PER_HOUR
        # Rows admitted this hour, per address, as hashes of their keys (a key may be kilobytes).
        self._rows_by_remote: dict[str, set[int]] = {}
        self._rows_in_window = 0
        self._refused_remotes: set[str] = set()
        self.dropped_reports = 0
        #: Reports a failed flush could not write, by instance, written first by the next flush.
        self._unwritten: dict[tuple[str, str, str, str], InstanceReport] = {}

    def observe(
        self,
        headers: ClientHeaders,
        application: str,
        profiles: str | Sequence[str],
        label: str,
        served: str | None,
    ) -> None:
        """Queue one report (a deque append: no lock, no I/O, safe from any thread or greenlet).

        The report is queued as a plain tuple; the flusher builds the InstanceReport, off the request.
        """
        if self.enabled:
            self._queue.append((headers, application, profiles, label, served, self.clock()))

    def observe_request(
        self, headers: ClientHeaders, asked: EnvironmentRequest, default_label: str, served: str | None
    ) -> None:
        """Queue the report of an Environment request (`observe`), the one way both paths name it:
        the applications and labels joined with `,` (`default_label` when none was asked)."""
        if self.enabled:
            label = ",".join(asked.labels) if asked.labels is not None else default_label
            self.observe(headers, asked.applications_text, asked.profile_names, label, served)

    def start(self) -> Inventory:
        """Start the flusher on a real OS thread (also under gevent's monkey patching)."""
        if not self._started:
            self._started = True
            start_new_thread, self._sleep = real_thread_primitives()
            start_new_thread(self._run, ())
        return self

    def flush(self) -> int:
        """Write what is queued now (collapsed per instance) to the store; returns how many rows."""
        # Collapse the raw observations first (a busy instance repeats itself thousands of times a
        # second): the later one wins, keeping an earlier served/applied version it does not carry.
        latest: dict[tuple[Any, ...], list[Any]] = {}
        queue = self._queue
        while True:
            try:
                headers, application, profiles, label, served, seen = queue.popleft()
            except IndexError:
                break
            key = (headers.instance_id, application, profiles, label)
            entry = latest.get(key)
            if entry is None:
                latest[key] = [headers, served, seen, headers.applied]
            else:
                entry[0], entry[2] = headers, seen
                entry[1] = served or entry[1]
                entry[3] = headers.applied or entry[3]
        reports = (
            _report(headers, key[1], key[2], key[3], served, seen, applied)
            for key, (headers, served, seen, applied) in latest.items()
        )
        rows = [report for report in reports if self._admitted(report) and self._changed(report)]
        rows = self._after_unwritten(rows)
        written = 0
        try:
            for start in range(0, len(rows), FLUSH_CHUNK):
                if start:
                    self._sleep(0.001)  # let the workers' loops have the GIL between chunks
                chunk = rows[start : start + FLUSH_CHUNK]
                self.store.record_instances(chunk)
                written = start + len(chunk)
                for report in chunk:
                    self._written[report.key] = (_state_of(report), report.seen)
        except BaseException:
            self._keep_unwritten(rows[written:])  # accepted, so never dropped: the next flush retries
            raise
        now = self.clock()
        if now - self._last_prune > 60:
            self._last_prune = now
            self.store.prune(now - HISTORY_SECONDS)
            for key, (_, seen) in list(self._written.items()):
                if now - seen > REWRITE_AFTER_SECONDS:
                    self._written.pop(key, None)
        return len(rows)

    @property
    def max_rows_per_address(self) -> int:
        """Rows one address may add per hour: ROWS_PER_ID for each id it may add."""
        return ROWS_PER_ID * self.max_ids_per_address

    def _after_unwritten(self, rows: list[InstanceReport]) -> list[InstanceReport]:
        """The reports a failed flush could not write, then `rows`: a newer report of the same
        instance replaces its unwritten one, keeping a served or applied version it does not carry."""
        if not self._unwritten:
            return rows
        unwritten, self._unwritten = self._unwritten, {}
        merged = []
        for report in rows:
            older = unwritten.pop(report.key, None)
            if older is not None:
                report = replace(
                    report, served=report.served or older.served, applied=report.applied or older.applied
                )
            merged.append(report)
        return [*unwritten.values(), *merged]

    def _keep_unwritten(self, rows: list[InstanceReport]) -> None:
        """Keep what a failed flush could not write for the next one, at most MAX_QUEUED_REPORTS
        (the newest; one per instance already): memory stays bounded while the store is away."""
        if len(rows) > MAX_QUEUED_REPORTS:
            rows = sorted(rows, key=lambda report: report.seen)
            self.dropped_reports += len(rows) - MAX_QUEUED_REPORTS
            rows = rows[-MAX_QUEUED_REPORTS:]
        self._unwritten = {report.key: report for report in rows}

    def _admitted(self, report: InstanceReport) -> bool:
        """False for a report beyond the hour's caps: of new ids, and of new rows (an id with an
        application, profiles and label), per remote address and in all."""
        now = self.clock()
        if now - self._window_start >= ID_WINDOW_SECONDS:
            self._window_start = now
            self._ids_by_remote.clear()
            self._rows_by_remote.clear()
            self._refused_remotes.clear()
            self._ids_in_window = 0
            self._rows_in_window = 0
        row = hash(report.key)
        rows = self._rows_by_remote.get(report.remote)
        if rows is not None and row in rows:
            return True
        ids = self._ids_by_remote.get(report.remote)
        new_id = ids is None or report.instance_id not in ids
        if (
            (new_id and ids is not None and len(ids) >= self.max_ids_per_address)
            or (new_id and self._ids_in_window >= self.max_new_ids)
            or (rows is not None and len(rows) >= self.max_rows_per_address)
            or self._rows_in_window >= self.max_new_rows
        ):
            self.dropped_reports += 1
            if report.remote not in self._refused_remotes and len(self._refused_remotes) < 1000:
                self._refused_remotes.add(report.remote)
                log.warning(
                    "instance reports from %r dropped: this hour's cap of new instance ids or rows "
                    "is reached (%d ids and %d rows per address, %d ids and %d rows in all, per worker)",
                    report.remote,
                    self.max_ids_per_address,
                    self.max_rows_per_address,
                    self.max_new_ids,
                    self.max_new_rows,
                )
            return False
        if new_id:
            self._ids_by_remote.setdefault(report.remote, set()).add(report.instance_id)
            self._ids_in_window += 1
        self._rows_by_remote.setdefault(report.remote, set()).add(row)
        self._rows_in_window += 1
        return True

    def _changed(self, report: InstanceReport) -> bool:
        """False for a report that repeats what this inventory wrote less than 30 s ago."""
        written = self._written.get(report.key)
        if written is None:
            return True
        state, seen = written
        return state != _state_of(report) or report.seen - seen >= REWRITE_AFTER_SECONDS

    def close(self) -> None:
        """Stop the flusher and write what is still queued."""
        self._closed = True
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - shutting down: log, never raise
            log.exception("could not write the last instance reports")

    def _run(self) -> None:
        while not self._closed:
            self._sleep(self.flush_interval)
            if self._closed:
                return
            self.flush_in_background()

    def flush_in_background(self) -> None:
        """One flush of the background flusher, which must outlive a locked or full disk and a
        Redis that went away: a failure is said once (a traceback for anything but the state store
        being away), not every second, until it fails differently or writes again; then one line
        says how many attempts failed (`failed_flushes` counts them)."""
        try:
            self.flush()
        except Exception as exc:  # noqa: BLE001 - the flusher must outlive a locked or full disk
            self.failed_flushes += 1
            described = f"{type(exc).__name__}: {exc}"
            if described == self._failing:
                return
            self._failing = described
            if isinstance(exc, StateUnavailable):  # Redis away (cluster mode): no traceback
                log.warning(
                    "instance reports are kept (the newest per instance, at most %d) until the "
                    "state store is back: %s",
                    MAX_QUEUED_REPORTS,
                    exc,
                )
            else:
                log.exception("could not write instance reports (said once until it changes or recovers)")
            return
        if self._failing is not None:
            log.warning("instance reports are written again, after %d failed attempts", self.failed_flushes)
            self._failing = None
            self.failed_flushes = 0

    def instances(
        self,
        application: str | None = None,
        profiles: str | None = None,
        label: str | None = None,
        limit: int = MAX_SCAN_ROWS,
        accept: Callable[[InstanceRecord], bool] | None = None,
    ) -> list[InstanceRecord]:
        """Instances seen within the history window (gone ones included), from the shared store.

        At most `limit` (of those `accept` accepts, when given), in the store's order
        (application, profiles, label, id).
        """
        since = self.clock() - HISTORY_SECONDS
        return call_cooperatively(
            self.store, self.store.instances, application, profiles, label, since, limit, accept
        )


def _report(
    headers: ClientHeaders,
    application: str,
    profiles: str | Sequence[str],
    label: str,
    served: str | None,
    seen: float,
    applied: str | None,
) -> InstanceReport:
    """The InstanceReport of one (collapsed) observation."""
    return InstanceReport(
        instance_id=headers.instance_id,
        application=application,
        profiles=profiles if isinstance(profiles, str) else ",".join(profiles),
        label=label,
        served=served,
        applied=applied,
        rejected_version=headers.rejected_version,
        rejected_reason=headers.rejected_reason,
        client_labels=headers.client_labels,
        remote=headers.remote,
        user_agent=headers.user_agent,
        seen=seen,
        anonymous=headers.anonymous,
    )


def _state_of(report: InstanceReport) -> tuple[str | None, ...]:
    """What a report says besides when: a repeat of it needs no write until REWRITE_AFTER_SECONDS."""
    return (
        report.served,
        report.applied,
        report.rejected_version,
        report.rejected_reason,
        report.client_labels,
        report.remote,
        report.user_agent,
    )


def status_of(record: InstanceRecord, now: float) -> str:
    """`gone` (unseen for 3 minutes), `rejected` (refuses a version now), else `up`."""
    if now - record.last_seen > GONE_AFTER_SECONDS:
        return "gone"
    if record.rejected_version:
        return "rejected"
    return "up"


def iso(timestamp: float) -> str:
    """A Unix time as ISO 8601 UTC with seconds."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


#: Judges whether a record runs the newest settings of its environment (`currency.CurrentSettings`):
#: True, False (behind), None (unknown).
IsCurrent = Callable[[InstanceRecord], bool | None]


def instance_json(record: InstanceRecord, now: float, is_current: IsCurrent | None = None) -> dict[str, Any]:
    """One instance as the `/instances` answer shows it; `current` says whether the settings it
    runs are the newest of its environment (by content: None when unknown)."""
    return {
        "id": record.instance_id,
        "application": record.application,
        "profiles": record.profiles,
        "label": record.label,
        "version": record.version,
        "served": record.served,
        "applied": record.applied,
        "since": iso(record.version_since),
        "firstSeen": iso(record.first_seen),
        "lastSeen": iso(record.last_seen),
        "status": status_of(record, now),
        "current": is_current(record) if is_current is not None else None,
        "rejected": (
            {"version": record.rejected_version, "reason": record.rejected_reason}
            if record.rejected_version
            else None
        ),
        "labels": dict(p.split("=", 1) for p in record.client_labels.split(",") if p),
        "remote": record.remote,
        "userAgent": record.user_agent,
        "identified": not record.anonymous,
    }


def summarize(
    records: Iterable[InstanceRecord],
    now: float,
    is_current: IsCurrent | None = None,
    changed_in: Callable[[str, str, str], str | None] | None = None,
) -> list[dict[str, Any]]:
    """Per environment: live instances per version, how many run the newest settings (`current`,
    by content), the commit that last changed its settings (`changedIn`, None when not known yet),
    and who rejects which version with what reason."""
    groups: dict[tuple[str, str, str], list[InstanceRecord]] = defaultdict(list)
    for record in records:
        groups[(record.application, record.profiles, record.label)].append(record)
    summary = []
    for (application, profiles, label), members in sorted(groups.items()):
        live = [r for r in members if status_of(r, now) != "gone"]
        versions = Counter(r.version or "unknown" for r in live)
        rejections: dict[tuple[str, str | None], list[str]] = defaultdict(list)
        for r in live:
            if r.rejected_version:
                rejections[(r.rejected_version, r.rejected_reason)].append(r.instance_id)
        summary.append(
            {
                "application": application,
                "profiles": profiles,
                "label": label,
                "instances": len(live),
                "gone": len(members) - len(live),
                "current": (sum(1 for r in live if is_current(r)) if is_current is not None else None),
                "changedIn": changed_in(application, profiles, label) if changed_in is not None else None,
                "versions": dict(versions.most_common()),
                "rejections": [
                    {"version": version, "reason": reason, "instances": sorted(ids)}
                    for (version, reason), ids in sorted(rejections.items(), key=lambda kv: kv[0][0])
                ],
            }
        )
    return summary
