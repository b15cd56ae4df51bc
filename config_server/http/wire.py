"""WSGI environ keys shared by the gevent worker and the environment endpoint (no imports, on purpose:
the gunicorn master loads the worker module and must not import GitPython through it)."""

#: The raw client connection the gevent worker offers for direct long-poll answers.
DIRECT_SOCKET = "config_server.direct_socket"
#: Set by the endpoint when the hub has already written the answer on that connection.
ANSWERED = "config_server.answered"
