"""Prometheus metrics (`prometheus-client`), correct across gunicorn's worker processes.

Under gunicorn, the master sets `PROMETHEUS_MULTIPROC_DIR` (`<data-dir>/metrics`, emptied at start)
before any worker forks (`serving.prepare_metrics`), so every worker's counters live in memory-mapped
files there; `GET /metrics`, whichever worker answers it, sums them (`MultiProcessCollector`). A
worker that exits has its live gauges dropped (`mark_process_dead`, gunicorn's `child_exit`); its
counters stay counted. Without that variable (tests, embedding) each app counts in its own registry.

`MetricsMiddleware` counts every request at the WSGI level, outside Flask, so the fast path and
direct long-poll answers are counted as well. Instances per application and version, and the
held-back environments, are read from the shared stores at scrape time (never per-worker gauges,
which would keep a value until that very worker served the environment again).
"""

from __future__ import annotations

import glob
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from config_server.content.rollout_plan import HALTED
from config_server.errors import StateUnavailable
from config_server.names import RENDERED_DOCUMENT
from config_server.safety.known_names import OTHER

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_PROPAGATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_WATCHER_BUCKETS = (0, 1, 10, 100, 1000, 10000, 100000)


class Metrics:
    """The server's metrics; one per app, so tests and embedders get their own registry."""

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "config_server_http_requests",
            "HTTP requests answered, by endpoint, method and status.",
            ["endpoint", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "config_server_http_request_duration_seconds",
            "Time to answer a request, by endpoint (long polls as endpoint=watch).",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.watchers = Gauge(
            "config_server_watchers",
            "Long-poll requests being held now.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.watchers_answered = Counter(
            "config_server_watchers_answered", "Long-poll watchers answered with a new version.", registry=r
        )
        self.watchers_per_change = Histogram(
            "config_server_watchers_answered_per_change",
            "Watchers answered by one environment's change.",
            buckets=_WATCHER_BUCKETS,
            registry=r,
        )
        self.propagation = Histogram(
            "config_server_propagation_seconds",
            "Seconds from a change being detected to the last of its watchers being answered.",
            buckets=_PROPAGATION_BUCKETS,
            registry=r,
        )
        self.validation_failures = Counter(
            "config_server_validation_failures",
            "Versions found broken for an application (parse, limits, decryption, schema).",
            ["application"],
            registry=r,
        )
        self.git_fetch = Histogram(
            "config_server_git_fetch_duration_seconds",
            "Time of a fetch of the remote repository.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.git_fetch_failures = Counter(
            "config_server_git_fetch_failures", "Fetches of the remote repository that failed.", registry=r
        )
        self.cache_hits = Counter(
            "config_server_cache_hits", "Resolved environments found in the cache.", registry=r
        )
        self.cache_misses = Counter(
            "config_server_cache_misses", "Resolved environments computed (not in the cache).", registry=r
        )
        self.polls_refused = Counter(
            "config_server_long_polls_refused",
            "Long polls answered 429 instead of parked: their address, their caller's watched environments "
            "or the worker was at its cap.",
            registry=r,
        )
        self._collectors: list[Collector] = []
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._cache_seen = (0, 0)

    def add_collector(self, collector: Collector) -> None:
        """A collector read at scrape time from shared state (such as instances from the store)."""
        self._collectors.append(collector)
        if not self.multiprocess:
            self.registry.register(collector)

    def exposition(self) -> bytes:
        """The Prometheus text format: every worker's values summed, plus the shared collectors."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        for collector in self._collectors:
            registry.register(collector)
        return generate_latest(registry)

    def watchers_in_all_workers(self) -> int | None:
        """Long polls held now by every worker (the `config_server_watchers` gauge summed over the
        workers' files, as a scrape sums it), or None without the shared folder (one process).

        Reads only the live-sum gauge files (one small memory-mapped file per worker)."""
        folder = os.environ.get(MULTIPROC_ENV)
        if not self.multiprocess or not folder:
            return None
        from prometheus_client.multiprocess import MultiProcessCollector

        files = sorted(glob.glob(os.path.join(folder, "gauge_livesum_*.db")))
        return int(
            sum(
                sample.value
                for metric in MultiProcessCollector.merge(files, accumulate=False)
                if metric.name == "config_server_watchers"
                for sample in metric.samples
            )
        )

    def count_request(self, endpoint: str, method: str, status: str, seconds: float) -> None:
        """One answered request: the counter and the latency histogram."""
        key = (endpoint, method, status)
        children = self._children.get(key)
        if children is None:
            if len(self._children) > 1000:  # bounded: methods and statuses are few, but hostile
                key = (endpoint, "other", status)
            children = self._children[key] = (
                self.requests.labels(*key),
                self.latency.labels(endpoint),
            )
        children[0].inc()
        children[1].observe(seconds)

    def sync_cache(self, hits: int, misses: int) -> None:
        """Carry this worker's cache hit and miss counts into the counters (by difference)."""
        seen_hits, seen_misses = self._cache_seen
        if hits == seen_hits and misses == seen_misses:
            return
        self._cache_seen = (hits, misses)
        if hits > seen_hits:
            self.cache_hits.inc(hits - seen_hits)
        if misses > seen_misses:
            self.cache_misses.inc(misses - seen_misses)

    def change_answered(self, watchers: int, seconds: float) -> None:
        """One environment's change reached its `watchers` in `seconds` (from the watch hub)."""
        self.watchers_answered.inc(watchers)
        self.watchers_per_change.observe(watchers)
        self.propagation.observe(seconds)

    def git_fetched(self, seconds: float, ok: bool) -> None:
        """One fetch of the remote repository."""
        self.git_fetch.observe(seconds)
        if not ok:
            self.git_fetch_failures.inc()

    def enable_cluster(self) -> None:
        """Add the cluster metrics (cluster mode only: without `--redis` they do not appear)."""
        self.cluster_redis_up = Gauge(
            "config_server_cluster_redis_up",
            "1 while the cluster's Redis is reachable, 0 while it is not (lowest over the workers).",
            multiprocess_mode="livemin",
            registry=self.registry,
        )
        self.cluster_events = Counter(
            "config_server_cluster_hints",
            "Change hints between replicas: published, received, and fetches they caused.",
            ["event"],
            registry=self.registry,
        )

    def set_cluster_redis_up(self, up: bool) -> None:
        """This worker reaches the cluster's Redis, or not."""
        self.cluster_redis_up.set(1 if up else 0)

    def count_cluster_event(self, event: str) -> None:
        """A hint published or received, or a fetch made for one."""
        self.cluster_events.labels(event).inc()

    def count_validation_failure(self, application: str) -> None:
        """A version of `application` was found broken."""
        self.validation_failures.labels(application).inc()


class InstancesCollector(Collector):
    """`config_server_instances{application,version}`: live instances, read from the shared store.

    Clients name the application they ask for: `application_label` maps a name the repository
    does not hold to `other`, so hostile names cannot grow the series. They also say which
    version they run (`X-Config-Applied`): a version is its own label only when the server served
    it (to this instance now, or to any within `served_versions`, the store's memory of a day);
    any other is `other`, so made-up versions cannot grow the series either.

    Current by content: `newest_settings` makes, per scrape, a judge that names the newest version
    of a record's label when the record runs its settings (`currency.CurrentSettings`); such an
    instance counts under that version, so a commit to another application's file moves every
    instance to the newest series, not the old one. The newest version is one the server serves,
    so the series stay bounded.
    """

    def __init__(
        self,
        live_instances: Callable[[], Iterable[Any]],
        application_label: Callable[[str], str] = str,
        served_versions: Callable[[], Iterable[str]] = tuple,
        newest_settings: Callable[[], Callable[[Any], str | None]] | None = None,
    ) -> None:
        self.live_instances = live_instances
        self.application_label = application_label
        self.served_versions = served_versions
        self.newest_settings = newest_settings

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One sample per (application, version) with at least one live instance."""
        family = GaugeMetricFamily(
            "config_server_instances",
            "Instances seen in the last 3 minutes, by application and the version they run.",
            labels=["application", "version"],
        )
        counts: dict[tuple[str, str], int] = {}
        try:
            records = list(self.live_instances())
            served = set(self.served_versions()) if records else set()
        except StateUnavailable as exc:  # Redis away: every other metric is still scraped
            log.warning("instances left out of the metrics: %s", exc)
            records = []
        except Exception as exc:  # noqa: BLE001 - a locked or broken SQLite file: the same
            log.warning("instances left out of the metrics: the state store failed: %s", exc)
            records = []
        applications: dict[str, str] = {}  # labels asked once per name, not once per instance
        newest_of = self.newest_settings() if self.newest_settings is not None and records else None
        for record in records:
            version = record.version
            newest = newest_of(record) if newest_of is not None else None
            if newest is not None:
                version = newest  # runs the newest settings of its label
            elif version is None:
                version = "unknown"
            elif version != record.served and version not in served:
                version = OTHER  # a version the instance names but the server never served
            application = applications.get(record.application)
            if application is None:
                application = applications[record.application] = self.application_label(record.application)
            key = (application, version)
            counts[key] = counts.get(key, 0) + 1
        for (application, version), count in sorted(counts.items()):
            family.add_metric([application, version], count)
        yield family


class HeldBackCollector(Collector):
    """`config_server_held_back_environments{application,profiles,label}`, from the shared verdicts.

    Computed at scrape time from the verdict store every worker shares (rows whose label moved on
    are dropped there), so a repair shows whichever worker answers the scrape, whether or not that
    worker has served the environment since.
    """

    def __init__(self, held_back: Callable[[], Iterable[tuple[str, str, str]]]) -> None:
        self.held_back = held_back

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One sample per held-back (application, profiles, label): how many are held back (1)."""
        family = GaugeMetricFamily(
            "config_server_held_back_environments",
            "Environments whose label's newest commit is broken, an older good version being served.",
            labels=["application", "profiles", "label"],
        )
        counts: dict[tuple[str, str, str], int] = {}
        for key in self.held_back():
            counts[key] = counts.get(key, 0) + 1
        for key, count in sorted(counts.items()):
            family.add_metric(list(key), count)
        yield family


class PinnedCollector(Collector):
    """`config_server_pinned_environments{application,profiles,label}` (1 per pinned environment),
    from the scraping worker's copy of the pins (`safety/pins.py`), current within half a second;
    names the repository does not hold are `other` (`known_names.py`)."""

    def __init__(self, pinned: Callable[[], Iterable[tuple[str, str, str]]]) -> None:
        self.pinned = pinned

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One sample per pinned environment."""
        family = GaugeMetricFamily(
            "config_server_pinned_environments",
            "Environments pinned to an earlier version: answered it whatever lands on their label.",
            labels=["application", "profiles", "label"],
        )
        counts: dict[tuple[str, str, str], int] = {}
        for key in self.pinned():
            counts[key] = counts.get(key, 0) + 1
        for key, count in sorted(counts.items()):
            family.add_metric(list(key), count)
        yield family


class RolloutsCollector(Collector):
    """`config_server_rollout_halted{application,label}` (1 halted, 0 running or complete) and
    `config_server_rollout_step_percent`, from the scraping worker's copy of the shared state.

    `progress` is the rollout runner's plain snapshot (`Rollouts.progress`: application, base
    label, state, step percent per active rollout), so this floor never imports the runner.
    """

    def __init__(self, progress: Callable[[], Iterable[tuple[str, str, str, float]]]) -> None:
        self.progress = progress

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One sample of each per rollout whose file is at its label's head."""
        halted = GaugeMetricFamily(
            "config_server_rollout_halted",
            "1 when the application's rollout is halted (its cohort is served the base label).",
            labels=["application", "label"],
        )
        step = GaugeMetricFamily(
            "config_server_rollout_step_percent",
            "The current step of the application's rollout, in percent of matching instances.",
            labels=["application", "label"],
        )
        for application, label, state, percent in self.progress():
            halted.add_metric([application, label], 1.0 if state == HALTED else 0.0)
            step.add_metric([application, label], percent)
        yield halted
        yield step


@dataclass(frozen=True)
class Limits:
    """The limits one worker applies, as `/health` and the metrics show them."""

    descriptors: int
    connections: int
    polls: int
    polls_per_address: int
    slots_per_caller: int = 0

    def as_dict(self) -> dict[str, int]:
        """The limits by their names in `/health`'s details."""
        return {
            "descriptors": self.descriptors,
            "connections": self.connections,
            "parkedPolls": self.polls,
            "parkedPollsPerAddress": self.polls_per_address,
            "slotsPerCaller": self.slots_per_caller,
        }


class LimitsCollector(Collector):
    """The caps a worker applies (`parked.py`): descriptors, connections, parked polls in all and
    per address, watched environments per caller. Every worker computes the same, so the scraped
    worker's values are the server's."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One gauge per limit."""
        for name, value, text in (
            ("descriptors", self.limits.descriptors, "The worker's descriptor limit (RLIMIT_NOFILE)."),
            ("connections", self.limits.connections, "Connections a worker holds at most."),
            ("parked_polls", self.limits.polls, "Long polls a worker parks at most."),
            (
                "parked_polls_per_address",
                self.limits.polls_per_address,
                "Long polls a worker parks at most per client address (0: no cap).",
            ),
            (
                "slots_per_caller",
                self.limits.slots_per_caller,
                "Distinct environments one caller waits on at most, per worker (0: no cap).",
            ),
        ):
            yield GaugeMetricFamily(f"config_server_limit_{name}", text, value=value)


def endpoint_of(path: str, query: str, fixed: dict[str, str]) -> str:
    """A low-cardinality endpoint name for a request path (never the path itself)."""
    name = fixed.get(path)
    if name is not None:
        return name
    if path.startswith("/console"):
        return "console"
    depth = path.count("/")
    if depth == 1:
        return "rendered"
    if depth == 2 and RENDERED_DOCUMENT.fullmatch(path.rsplit("/", 1)[1]):
        return "rendered"
    if depth == 3 and "useDefaultLabel" in query:
        return "resource"
    if depth in (2, 3):
        return "watch" if "wait=" in query else "environment"
    return "resource"


class MetricsMiddleware:
    """WSGI middleware counting every request (status, latency) and the long polls being held."""

    def __init__(
        self,
        app: Callable[..., Iterable[bytes]],
        metrics: Metrics,
        fixed_paths: Iterable[str],
        cache_stats: Callable[[], tuple[int, int]],
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.fixed = {p: p.strip("/").replace("/", "_") or "root" for p in fixed_paths}
        self.cache_stats = cache_stats

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Run the app; count the request once it has its answer."""
        started = time.perf_counter()
        endpoint = endpoint_of(environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""), self.fixed)
        status = ["500"]

        def start(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[0] = status_line[:3]
            return (
                start_response(status_line, headers, exc_info)
                if exc_info
                else start_response(status_line, headers)
            )

        watching = endpoint == "watch"
        if watching:
            self.metrics.watchers.inc()
        try:
            return self.app(environ, start)
        finally:
            if watching:
                self.metrics.watchers.dec()
            method = environ.get("REQUEST_METHOD", "")
            self.metrics.count_request(endpoint, method, status[0], time.perf_counter() - started)
            self.metrics.sync_cache(*self.cache_stats())
