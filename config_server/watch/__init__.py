"""Watching for changes, in three modules, one job each (import them directly; this package
imports nothing, so the gunicorn master can load `direct` without GitPython):

- `detector`: notices new commits (watchdog, remote refresh, safety poll) and asks the hub to check;
- `hub`: holds long-poll waiters per environment and wakes them when its content ETag moves;
- `direct`: a waiting connection the hub may answer itself, and the raw HTTP bytes it writes.
"""
