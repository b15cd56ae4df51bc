"""WSGI environ keys shared by the gevent worker and the environment endpoint (no imports, on purpose:
the gunicorn master loads the worker module and must not import GitPython through it)."""

#: The `watch.direct.DirectAnswer` the gevent worker offers for a long-poll GET on its connection.
DIRECT_ANSWER = "config_server.direct_answer"
#: Set by the endpoint when the hub has already written the answer on that connection.
ANSWERED = "config_server.answered"
