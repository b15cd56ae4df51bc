"""`GET /openapi.json`: an OpenAPI 3.1 description of the server's HTTP API.

Written by hand (it is small), kept honest by a schemathesis run in the test suite that calls every
operation with generated input and checks that no answer is a 5xx or breaks this description.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from config_server.names import MAX_LABEL_LENGTH, MAX_LIST_ITEMS, MAX_NAME_LENGTH
from config_server.version import __version__

blueprint = Blueprint("openapi", __name__)

_NAME = {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH}
_ERROR = {"$ref": "#/components/responses/Error"}
_TEXT = {"text/plain": {"schema": {"type": "string"}}}


def _path_param(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema or _NAME,
    }


_APPLICATION = _path_param(
    "application",
    "Application name, or several separated by commas (a later one wins), e.g. `orders` or `orders,shared`.",
    {"type": "string", "minLength": 1, "maxLength": MAX_LIST_ITEMS * (MAX_NAME_LENGTH + 1) - 1},
)
_PROFILES = _path_param("profiles", "Comma-separated profiles, later wins, e.g. `prod` or `dev,eu`.")
_LABEL = _path_param(
    "label",
    "Branch, tag or commit id, or several separated by commas (a later one wins; the version is "
    "their commit ids joined by `,`); `(_)` stands for `/` (so does a percent-encoded `/`).",
    {"type": "string", "minLength": 1, "maxLength": MAX_LIST_ITEMS * (MAX_LABEL_LENGTH + 1) - 1},
)
_WAIT = {
    "name": "wait",
    "in": "query",
    "required": False,
    "description": "Long poll: hold the request until the ETag differs from If-None-Match, at most "
    "this many seconds (capped at 60).",
    "schema": {"type": "number", "minimum": 0, "maximum": 60},
}
_IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "description": "The ETag the caller holds: 304 when it is still current.",
    "schema": {"type": "string", "pattern": '^"[0-9a-f]{32}"$'},
}
_ERRORS = {str(code): _ERROR for code in (400, 401, 403, 404, 413, 421, 500)}


def _report_header(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": {"type": "string"},
    }


#: Instance reports (protocol.md): optional; a malformed one is a 400 naming it.
_REPORT_HEADERS = [
    _report_header("X-Config-Client-Id", "Instance identity: 1-128 of `[A-Za-z0-9._:@-]`."),
    _report_header(
        "X-Config-Client-Labels", "`k=v,k=v` (at most 16 pairs; keys and values 1-128 of `[A-Za-z0-9._-]`)."
    ),
    _report_header("X-Config-Applied", "The version the instance runs."),
    _report_header("X-Config-Rejected", 'The newest version it refused: `<version>; reason="<text>"`.'),
]


_STRING = {"schema": {"type": "string"}}
#: A label whose newest commit is broken for the environment: the newest good version is served.
_HELD_BACK = {
    "X-Config-Held-Back": {
        **_STRING,
        "description": "The newest commit held back (broken, or awaiting a release approval); the "
        "answer is the newest good (approved) version.",
    },
    "X-Config-Held-Back-Reason": {
        **_STRING,
        "description": "`awaiting approval` when the held-back commit changes an environment "
        "policy/approvals.yml protects; absent when it is broken.",
    },
}
#: A pinned environment (`POST /pins/...`, docs/release-control.md): the pinned commit is served.
_PINNED = {
    "X-Config-Pinned": {
        **_STRING,
        "description": "`<commit>; by=<client>`: the environment is pinned to this commit, whatever its "
        "label's head is.",
    }
}
#: An application no configuration file names (`--unknown-applications`, docs/api.md).
_UNKNOWN = {
    "X-Config-Unknown-Application": {
        **_STRING,
        "description": "The application name(s) of the request that no configuration file names "
        "(comma-separated): the answer holds only the shared `application*` settings. Under "
        "`--unknown-applications deny` such a request is answered 404 naming them instead.",
    },
    "X-Config-Closest-Application": {
        **_STRING,
        "description": "`<unknown>=<closest known application>` for each unknown name with a close "
        "one (comma-separated); not sent by a server with an auth file.",
    },
}
#: Broken where nothing may stand in (docs/change-safety.md).
_BROKEN = {
    "422": {
        "description": "Broken (a file that does not parse, a schema violation, a value that does "
        "not decrypt) at a commit-id label, a label list, or with no good version before it: the "
        "message names file, line and reason.",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


def _query(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": _NAME}


def _environment_operation(summary: str, parameters: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": [*parameters, _WAIT, _IF_NONE_MATCH, *_REPORT_HEADERS],
            "security": [{}, {"bearer": []}, {"token": []}, {"basic": []}],
            "responses": {
                "200": {
                    "description": "The Environment, with its content ETag.",
                    "headers": {
                        "ETag": _STRING,
                        **_HELD_BACK,
                        **_PINNED,
                        **_UNKNOWN,
                        "X-Config-Rollout": {
                            **_STRING,
                            "description": "For a rollout's cohort: `<app>; step=<percent>; "
                            "state=<running|halted|complete>` (docs/rollouts.md).",
                        },
                    },
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Environment"}}},
                },
                "304": {"description": "The caller's ETag is current (or the long poll ended)."},
                "414": {"description": "Request line too long: refused by the HTTP server before the app."},
                **_BROKEN,
                **_ERRORS,
            },
        }
    }


def _pin_operations(label: list[dict[str, Any]]) -> dict[str, Any]:
    """`POST` (pin) and `DELETE` (unpin) of one environment (release role)."""
    parameters = [_path_param("app", "The application."), _path_param("profiles", "The profiles."), *label]
    answer = {"content": {"application/json": {"schema": {"type": "object"}}}}
    body = {
        "type": "object",
        "required": ["version", "reason"],
        "properties": {"version": {"type": "string"}, "reason": {"type": "string"}},
    }
    return {
        "post": {
            "summary": "Pin the environment to a commit of its label's history (release role)",
            "parameters": parameters,
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {
                "201": {"description": "Pinned: every instance is answered this commit", **answer},
                "422": {"description": "Not on the label's history, or broken there", **answer},
                **_ERRORS,
            },
        },
        "delete": {
            "summary": "Unpin the environment (release role)",
            "parameters": parameters,
            "responses": {"200": {"description": "Unpinned", **answer}, **_ERRORS},
        },
    }


def _text_post(summary: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": _TEXT},
            "responses": {"200": {"description": summary, "content": _TEXT}, **_ERRORS},
        }
    }


def _rollout_move(summary: str) -> dict[str, Any]:
    """A resume or an advance of a rollout: the same parameters, body and answers."""
    return {
        "post": {
            "summary": summary,
            "parameters": [
                _path_param("app", "The application."),
                _query("label", "The base label (default: the server's)."),
            ],
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"reason": {"type": "string"}},
                            "description": '`{"reason": "..."}`: why (the audit log, the status)',
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "`application`, `label`, `id`, `action`, `state`, `step`, `resumedAt`, "
                    "`lastMove`",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "409": {"description": "Not halted (resume) or not running (advance)"},
                **_ERRORS,
            },
        }
    }


SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "gitconfig-server",
        "version": __version__,
        "description": "Spring Cloud Config compatible configuration server over git. Rendered "
        "documents are also served at `/{application}-{profiles}.{yml|yaml|properties|json}` and "
        "`/{label}/{application}-{profiles}.{ext}`; see docs/api.md.",
    },
    "paths": {
        "/{application}/{profiles}": _environment_operation(
            "Environment at the default label", [_APPLICATION, _PROFILES]
        ),
        "/{application}/{profiles}/{label}": _environment_operation(
            "Environment at a label", [_APPLICATION, _PROFILES, _LABEL]
        ),
        "/{application}/{profiles}/{label}/{path}": {
            "get": {
                "summary": "A plain-text file with `${...}` placeholders substituted",
                "parameters": [
                    _APPLICATION,
                    _PROFILES,
                    _LABEL,
                    _path_param(
                        "path", "File path inside the repository.", {"type": "string", "minLength": 1}
                    ),
                ],
                "responses": {
                    "200": {
                        "description": "The file.",
                        "headers": {**_HELD_BACK, **_PINNED, **_UNKNOWN},
                        "content": {"*/*": {}},
                    },
                    **_BROKEN,
                    **_ERRORS,
                },
            }
        },
        "/health": {
            "get": {
                "summary": "Health: details for admins (everyone on an open server)",
                "responses": {
                    "200": {
                        "description": "UP (with --redis also `cluster`: UP, or DEGRADED without Redis)",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "503": {
                        "description": "DOWN",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                },
            }
        },
        "/livez": {
            "get": {
                "summary": "Liveness probe: this worker answers and its event loop turns",
                "responses": {
                    "200": {
                        "description": "UP",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "503": {
                        "description": "DOWN: the event loop has not turned for seconds",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                },
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness probe: the repository is readable and a remote's last fetch is recent",
                "responses": {
                    "200": {
                        "description": "UP (with --redis also `cluster`: UP, or DEGRADED, which stays ready)",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "503": {
                        "description": "DOWN: the repository cannot be read, or its last fetch is too old",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                },
            }
        },
        "/monitor": {
            "post": {
                "summary": "Push webhook (GitHub, GitLab, Gitea, Bitbucket or form `path=`)",
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {"schema": {"type": "object"}},
                        "application/x-www-form-urlencoded": {
                            "schema": {"type": "object", "properties": {"path": {"type": "string"}}}
                        },
                    },
                },
                "responses": {
                    "200": {
                        "description": "Applications refreshed",
                        "content": {
                            "application/json": {"schema": {"type": "array", "items": {"type": "string"}}}
                        },
                    },
                    "503": _ERROR,
                    **_ERRORS,
                },
            }
        },
        "/instances": {
            "get": {
                "summary": "Instances and the version each runs, with a summary per environment (read role)",
                "parameters": [
                    _query("application", "Only this application."),
                    _query("profiles", "Only these comma-separated profiles."),
                    _query("label", "Only this label."),
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "description": "At most this many instances (default 1000).",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 10000},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "Instances (gone ones kept for a day), per-environment summaries; "
                        "`truncated` (with a `note`) when more than `limit` matched",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["instances", "environments", "limit", "truncated"],
                                    "properties": {
                                        "instances": {"type": "array", "items": {"type": "object"}},
                                        "environments": {"type": "array", "items": {"type": "object"}},
                                        "limit": {"type": "integer"},
                                        "truncated": {"type": "boolean"},
                                        "note": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                    **_ERRORS,
                },
            }
        },
        "/diff": {
            "get": {
                "summary": "The effect of a change on every environment before it is merged (read role; "
                "a scoped client sees the environments it may read)",
                "parameters": [
                    {**_query("from", "The base: a branch, tag or commit id."), "required": True},
                    {**_query("to", "The head: a branch, tag or commit id."), "required": True},
                    _query("path", "Count only the changed files under this repository path."),
                ],
                "responses": {
                    "200": {
                        "description": "Per environment that changes: key changes (values masked), the file "
                        "and line of each new value, the held-back verdict and live instances; the shape of "
                        "`config-server diff --format json`",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["base", "head", "differs", "heldBack", "environments"],
                                    "properties": {
                                        "base": {"type": "object"},
                                        "head": {"type": "object"},
                                        "path": {"type": ["string", "null"]},
                                        "differs": {"type": "boolean"},
                                        "heldBack": {"type": "integer"},
                                        "environmentsNamed": {"type": "integer"},
                                        "environmentsResolved": {"type": "integer"},
                                        "environments": {"type": "array", "items": {"type": "object"}},
                                    },
                                }
                            }
                        },
                    },
                    **_ERRORS,
                },
            }
        },
        "/rollouts": {
            "get": {
                "summary": "Rollouts (state, step, cohort, versions, rejections) and ignored rollout files "
                "(rollout role)",
                "parameters": [
                    _query("application", "Only this application's rollout."),
                    _query("label", "Only rollouts of this base label."),
                ],
                "responses": {
                    "200": {
                        "description": "Rollouts whose file is at a label's head, and files that are ignored",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["rollouts", "errors"],
                                    "properties": {
                                        "rollouts": {"type": "array", "items": {"type": "object"}},
                                        "errors": {"type": "array", "items": {"type": "object"}},
                                        "labels": {"type": "array", "items": {"type": "string"}},
                                    },
                                }
                            }
                        },
                    },
                    **_ERRORS,
                },
            }
        },
        "/rollouts/{app}/halt": {
            "post": {
                "summary": "Halt the application's rollout now (rollout or release role); also an "
                "Alertmanager webhook",
                "parameters": [
                    _path_param("app", "The application."),
                    _query("label", "The base label (default: the server's)."),
                ],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "description": '`{"reason": "..."}`, or an Alertmanager notification '
                                "(`firing` halts, `resolved` does nothing)",
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "Halted (or, for a resolved alert, nothing done)",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **_ERRORS,
                },
            }
        },
        "/rollouts/{app}/resume": _rollout_move(
            "Resume the application's halted rollout: its halted step bakes again from now (rollout or "
            "release role); 409 unless halted"
        ),
        "/rollouts/{app}/advance": _rollout_move(
            "Start the application's rollout's next step now (rollout or release role; after the last "
            "step it is complete); 409 unless running"
        ),
        "/approvals": {
            "get": {
                "summary": "Release approvals given and the environments waiting for one (approver role)",
                "parameters": [_query("label", "Only this label's.")],
                "responses": {
                    "200": {
                        "description": "`approvals` (label, version, approver, reason, at) and `waiting`",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **_ERRORS,
                },
            }
        },
        "/approvals/{version}": {
            "post": {
                "summary": "Approve a commit for the protected environments of policy/approvals.yml "
                "(approver role; its author may not)",
                "parameters": [
                    _path_param("version", "The commit id (or a prefix of 7+ hex digits)."),
                    _query("label", "The label the commit is on (default: the server's)."),
                ],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {"type": "object", "description": '`{"reason": "..."}`'}
                        }
                    },
                },
                "responses": {
                    "201": {
                        "description": "The approval recorded",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **_ERRORS,
                },
            }
        },
        "/reverts/{version}": {
            "post": {
                "summary": "Revert a commit on the label with a new `git revert` commit (release role), "
                "or get the git command where the server may not write",
                "parameters": [
                    _path_param("version", "The commit id (full or abbreviated, lower-case hex)."),
                    _query("label", "The branch the commit is on (default: the server's)."),
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"type": "object", "description": '`{"reason": "..."}` (required)'}
                        }
                    },
                },
                "responses": {
                    "201": {
                        "description": "The revert commit on the label (`commit`, `parent`, `pushed`, "
                        "`message`, `by`, `reason`)",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "200": {
                        "description": 'Nothing changed: `{"reverted": false, "why", "command"}`, the git '
                        "command to run in a clone",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **_ERRORS,
                    "409": {**_ERROR, "description": "Refused, nothing changed (conflict, label moved)"},
                    "422": {**_ERROR, "description": "Not revertable (a merge commit, not on the label)"},
                    "502": {**_ERROR, "description": "git could not make or push it; nothing changed"},
                },
            }
        },
        "/pins": {
            "get": {
                "summary": "Every pin the client's globs cover (release role)",
                "parameters": [_query("application", "Only this application's pins.")],
                "responses": {
                    "200": {
                        "description": "The pins: environment, version, reason, who and when",
                        "content": {"application/json": {"schema": {"type": "object", "required": ["pins"]}}},
                    },
                    **_ERRORS,
                },
            }
        },
        "/pins/{app}/{profiles}": _pin_operations([]),
        "/pins/{app}/{profiles}/{label}": _pin_operations(
            [_path_param("label", "The label pinned (`(_)` for `/`; default: the server's).")]
        ),
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics, summed over all workers (monitor role)",
                "responses": {"200": {"description": "Prometheus text format", "content": _TEXT}, **_ERRORS},
            }
        },
        "/encrypt": _text_post("Encrypt the body; write the answer as `{cipher}<answer>`"),
        "/decrypt": _text_post("Decrypt the body (needs the decrypt role)"),
        "/encrypt/status": {
            "get": {
                "summary": "Whether a key is configured",
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **_ERRORS,
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI", "content": {"application/json": {}}}},
            }
        },
    },
    "components": {
        "schemas": {
            "Environment": {
                "type": "object",
                "required": ["name", "profiles", "propertySources"],
                "properties": {
                    "name": {"type": "string"},
                    "profiles": {"type": "array", "items": {"type": "string"}},
                    "label": {"type": ["string", "null"]},
                    "version": {"type": ["string", "null"]},
                    "state": {"type": ["string", "null"]},
                    "propertySources": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "source"],
                            "properties": {"name": {"type": "string"}, "source": {"type": "object"}},
                        },
                    },
                },
            },
            "Error": {
                "type": "object",
                "required": ["status", "error", "message", "path"],
                "properties": {
                    "timestamp": {"type": "string"},
                    "status": {"type": "integer"},
                    "error": {"type": "string"},
                    "message": {"type": "string"},
                    "path": {"type": "string"},
                },
            },
        },
        "responses": {
            "Error": {
                "description": "A Spring-style error body",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        },
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "basic": {"type": "http", "scheme": "basic", "description": "The token as the password."},
            "token": {"type": "apiKey", "in": "header", "name": "X-Config-Token"},
        },
    },
}


@blueprint.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI description."""
    return jsonify(SPEC)
