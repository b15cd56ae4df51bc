"""Repository backends: where configuration files come from (a git repository or a plain folder).

`base.py` is the interface, `factory.open_backend` picks one. This package's own module imports
nothing: the gunicorn master imports `mirror`, `repo_spec` and `sample` from here and must not
load GitPython on the way (`tests/integration/test_import_layout.py`).
"""
