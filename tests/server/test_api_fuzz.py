"""Generated input: schemathesis over /openapi.json, and hypothesis over the resolver and the routes.

Neither may find a 5xx, a crash, or an answer that breaks the OpenAPI description.
"""

import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config_server import create_app
from config_server.content.parsing import parse_file
from config_server.content.resolve import Request, resolve_environment
from config_server.errors import ConfigServerError
from config_server.http.openapi import SPEC
from config_server.settings import Settings
from tests.helpers import SPRING_VECTOR, GitRepo, LiveServer

SCHEMA = schemathesis.openapi.from_dict(SPEC)
FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """One server over a small repository (with a secret) for every generated request."""
    base = tmp_path_factory.mktemp("fuzz")
    repo = GitRepo(base / "repo")
    repo.commit(
        {
            "application.yml": "shared: 1\nurl: http://${host:localhost}/\n",
            "orders.yml": f"a: [1, 2]\nsecret: '{{cipher}}{SPRING_VECTOR}'\n",
            "orders-prod.yml": "a: [3]\n",
            "templates/t.txt": "a=${a[0]}\n",
        }
    )
    app = create_app(Settings(repo=str(repo.path), data_dir=str(base / "data"), encrypt_key="foo"))
    server = LiveServer(app)
    yield server
    server.stop()
    app.extensions["config_server"].close()


def test_the_description_is_valid_openapi(live):
    served = requests.get(f"{live.url}/openapi.json", timeout=5).json()
    assert served["openapi"].startswith("3.1") and "/{application}/{profiles}" in served["paths"]
    assert len(list(SCHEMA.get_all_operations())) >= 9
    # Every header an Environment answer may carry, and the 422 of a broken commit, are described.
    for path in ("/{application}/{profiles}", "/{application}/{profiles}/{label}"):
        responses = served["paths"][path]["get"]["responses"]
        assert {"ETag", "X-Config-Held-Back", "X-Config-Rollout"} <= set(responses["200"]["headers"])
        assert "422" in responses
    plain_text = served["paths"]["/{application}/{profiles}/{label}/{path}"]["get"]["responses"]
    assert "X-Config-Held-Back" in plain_text["200"]["headers"] and "422" in plain_text


@SCHEMA.parametrize()
@FUZZ
def test_no_generated_request_breaks_the_api(case, live):
    response = case.call(base_url=live.url, timeout=10)
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )


# -- hypothesis over the resolver ---------------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
keys = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
trees = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)),
    max_leaves=20,
)
documents = st.dictionaries(keys, trees, max_size=5)


@given(
    st.lists(documents, min_size=1, max_size=3), st.lists(st.sampled_from(["dev", "prod", "eu"]), max_size=2)
)
@settings(max_examples=150, deadline=None)
def test_resolver_never_crashes_on_valid_yaml(docs, profiles):
    text = "\n---\n".join(yaml.safe_dump(d, allow_unicode=True) for d in docs)
    files = {"orders.yml": text.encode(), "application.yml": b"shared: 1\n"}
    request = Request("orders", tuple(profiles) or ("default",), None)
    environment = resolve_environment(request, "v1", [""], files.get, "file:///repo")
    assert environment.property_sources[-1].source == {"shared": 1}
    for source in environment.property_sources:
        assert all(isinstance(k, str) for k in source.source)


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_parser_fails_only_with_a_clear_error(data):
    for name in ("x.yml", "x.properties"):
        try:
            parse_file(name, data)
        except ConfigServerError as exc:
            assert name in str(exc) or "UTF-8" in str(exc)


segment = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=30)


@given(app=segment, profiles=segment, label=st.one_of(st.none(), segment))
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_any_name_gets_a_json_answer_below_500(live, app, profiles, label):
    quote = requests.utils.quote
    path = f"/{quote(app, safe='')}/{quote(profiles, safe='')}" + (
        f"/{quote(label, safe='')}" if label else ""
    )
    response = requests.get(live.url + path, timeout=10)
    assert response.status_code < 500, (path, response.text)
    assert response.status_code == 200 or response.headers["Content-Type"].startswith("application/json")
