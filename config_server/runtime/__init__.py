"""Runtime: running the app on gunicorn: serving (the master), the gevent worker and its heartbeat."""
