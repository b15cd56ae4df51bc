"""Rollouts as JSON: what `/rollouts`, `/health` and the console show of the rollout runner's state.

The runner (`delivery/rollout_runner.py`) keeps the loop and what it read; this module shapes it
for HTTP: one rollout with its cohort, versions and rejections (`rollout_json`), an ignored rollout
file (`file_error_json`), and the `/health` summary (`rollouts_health_json`). `config-server
rollout status` prints the `/rollouts` answer as text (`cli.format_rollout_status`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from config_server.backends.base import Backend
from config_server.concurrency import call_cooperatively
from config_server.content.rollout_plan import (
    COMPLETE,
    HALTED,
    Instance,
    Phase,
    in_cohort,
    parse_client_labels,
    rollout_path,
)
from config_server.delivery.rollout_runner import Active, FileError, Rollouts
from config_server.errors import ConfigServerError
from config_server.state import InstanceRecord, ScheduleAnchor, StateStore


def rollout_json(
    active: Active,
    current: Phase,
    store: StateStore,
    now: float,
    live_after: float,
    backend: Backend | None = None,
    newest_settings: Callable[[InstanceRecord], str | None] | None = None,
) -> dict[str, Any]:
    """One rollout as `/rollouts`, the CLI and the console show it: file, phase, cohort, versions,
    rejections, time to the next step, and what to do once it is complete.

    `versions` counts live instances by the version they run; with `newest_settings`
    (`currency.CurrentSettings.newest_if_current`) one that runs the newest settings of its label
    counts under the newest version, so a commit to another application's file moves no count."""
    rollout = active.rollout
    instances = [
        r
        for r in call_cooperatively(
            store, store.instances, rollout.application, None, active.label, live_after
        )
        if rollout.applies_to(r.profiles.split(","))
    ]
    identified = [r for r in instances if not r.anonymous]
    matching = [r for r in identified if rollout.matches(parse_client_labels(r.client_labels))]
    cohort = [
        r.instance_id
        for r in matching
        if in_cohort(rollout, current.percent, Instance(r.instance_id, parse_client_labels(r.client_labels)))
    ]
    if current.state == HALTED:  # the cohort as it was: every instance the canary served
        served = call_cooperatively(store, store.canary_served_instances, *active.key, 1000)
        cohort = sorted(set(cohort) | set(served))
    versions: dict[str, int] = {}
    for record in instances:
        running = (newest_settings(record) if newest_settings is not None else None) or record.version
        versions[running or "unknown"] = versions.get(running or "unknown", 0) + 1
    canary_version = base_version = None
    if backend is not None:
        try:
            canary_version = backend.resolve(rollout.canary).version
            base_version = backend.resolve(active.label).version
        except ConfigServerError:
            pass
    rejections = call_cooperatively(store, store.rollout_rejections, *active.key)
    body: dict[str, Any] = {
        "application": rollout.application,
        "label": active.label,
        "id": rollout.rollout_id,
        "canary": rollout.canary,
        "canaryVersion": canary_version,
        "baseVersion": base_version,
        "file": rollout_path(rollout.application),
        "fileVersion": active.version,
        "state": current.state,
        "step": current.percent,
        "stepIndex": current.step,
        "steps": list(rollout.steps),
        "bakeSeconds": rollout.bake,
        "profiles": list(rollout.profiles) if rollout.profiles is not None else None,
        "match": dict(rollout.match_labels),
        "haltOn": {"rejected": rollout.halt_on_rejected},
        "started": active.record.started if active.record else None,
        "nextStepAt": current.next_step_at,
        "secondsToNextStep": None if current.next_step_at is None else max(0.0, current.next_step_at - now),
        "haltedAt": active.record.halted_at if active.record else None,
        "haltReason": active.record.halt_reason if active.record else None,
        "resumedAt": active.record.resumed_at if active.record else None,
        "lastMove": anchor_json(active.record.anchor) if active.record else None,
        "instances": len(instances),
        "matching": len(matching),
        "cohort": len(cohort),
        "cohortInstances": sorted(cohort)[:1000],
        "versions": dict(sorted(versions.items(), key=lambda kv: -kv[1])),
        "rejections": [
            {"instance": r.instance_id, "version": r.version, "reason": r.reason, "at": r.seen}
            for r in rejections
        ],
        "advice": advice(active, current),
    }
    return body


def anchor_json(anchor: ScheduleAnchor | None) -> dict[str, Any] | None:
    """An operator's last move of a rollout's schedule (resume or advance): when, the step it
    started (an index), and who did it and why."""
    if anchor is None:
        return None
    return {"at": anchor.at, "stepIndex": anchor.step, "note": anchor.note}


def advice(active: Active, current: Phase) -> str:
    """What the operator does next, in one sentence."""
    path = rollout_path(active.rollout.application)
    if current.state == COMPLETE:
        return (
            f"complete: merge {active.rollout.canary} into {active.label} and remove {path} "
            "(removing the file ends the rollout: everyone gets the base label's version)"
        )
    if current.state == HALTED:
        return (
            f"halted: every instance gets {active.label}; fix {active.rollout.canary} and resume it "
            f"(`config-server rollout resume`), or give the rollout a new `id` in {path} to start "
            "again with a new cohort, or remove the file"
        )
    return f"running: step {current.step + 1} of {len(active.rollout.steps)}"


def file_error_json(error: FileError) -> dict[str, Any]:
    """An ignored rollout file (or unreadable record), for `/health`, `/rollouts` and the console."""
    return {
        "application": error.application,
        "label": error.label,
        "version": error.version,
        "file": error.error.path,
        "line": error.error.line,
        "message": str(error.error),
    }


def rollouts_health_json(rollouts: Rollouts) -> dict[str, Any]:
    """For `/health`: halted rollouts and why, and ignored rollout files."""
    return {
        "halted": [
            {
                "application": active.rollout.application,
                "label": active.label,
                "id": active.rollout.rollout_id,
                "canary": active.rollout.canary,
                "step": current.percent,
                "haltedAt": active.record.halted_at if active.record else None,
                "haltReason": active.record.halt_reason if active.record else None,
            }
            for active, current in rollouts.halted()
        ],
        "errors": [file_error_json(error) for error in rollouts.errors()],
    }
