"""Safety: a version reaches callers only when it resolves and passes its checks; the configuration
service (label -> version -> checked environment), its cache, the memory of broken versions, schemas and
the `validate` command.
"""
