"""Watching for changes, in five modules, one job each (import them directly; this package
imports nothing, so the gunicorn master can load `direct` without GitPython):

- `detector`: notices new commits (watchdog, remote refresh, safety poll) and asks the hub to check;
- `file_watch`: runs watchdog off gevent's hub (in `file_watch_child`, a process of its own, under
  gevent) and hands each changed path to the detector;
- `hub`: holds long-poll waiters per environment and wakes them when its content ETag moves;
- `direct`: a waiting connection the hub may answer itself, and the raw HTTP bytes it writes.
"""
