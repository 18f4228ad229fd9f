"""Property-based tests of the web API against its own OpenAPI schema (schemathesis): with a fixed seed and a
bounded number of cases per operation, no request gives a 5xx, every error is the JSON error body, and every
answer fits the schema it documents (status code, content type, body)."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the web extra (fastapi, uvicorn) is not installed: pip install '.[web]'")
schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (the dev extra)")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis import checks  # noqa: E402

import latentbridge as lb  # noqa: E402
from latentbridge.photos import photo_tensor  # noqa: E402
from latentbridge.web import WebConfig, create_app  # noqa: E402

CASES_PER_OPERATION = 25  # ~30 operations: about 750 requests, a few seconds on the shared 2-core machine


def _app():
    import atexit
    import shutil
    import tempfile
    from pathlib import Path

    base = Path(tempfile.mkdtemp(prefix="lb-schema-"))
    atexit.register(shutil.rmtree, base, True)  # the schema is built at import, before pytest's tmp_path exists
    root = base / "root"
    root.mkdir()
    lat = lb.Latent(photo_tensor("coffee", 64)[:, :3].mean(1, keepdim=True).repeat(1, 4, 1, 1)[:, :, ::8, ::8], None)
    lb.write_latent(lat.replace(format="zoo-a", space="raw"), root / "a.latent")
    return create_app(WebConfig(roots=(root,), work_dir=base / "work", max_upload_bytes=64 * 1024, max_jobs=8))


app = _app()
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schemathesis.check
def errors_are_json(ctx, response, case):
    """A 4xx/5xx answer is ``{"error": {"type", "message", "status"}}`` with the status it was sent with."""
    if response.status_code < 400:
        return None
    assert response.headers.get("content-type", [""])[0].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    assert body["error"]["status"] == response.status_code, body
    assert "Traceback" not in response.text
    return None


@schema.parametrize()
@settings(
    max_examples=CASES_PER_OPERATION,
    derandomize=True,  # a fixed seed: the same cases on every run
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_against_its_schema(case):
    case.call_and_validate(
        checks=[
            checks.not_a_server_error,
            checks.status_code_conformance,
            checks.content_type_conformance,
            checks.response_schema_conformance,
            errors_are_json,
        ]
    )


GOOD = [
    ("/api/info", "GET", None),
    ("/api/formats", "GET", None),
    ("/api/formats/{name}", "GET", {"name": "flux2"}),
    ("/api/findings", "GET", None),
    ("/api/browse", "GET", None),
    ("/api/inspect", "POST", {"file": {"path": "a.latent"}}),
    ("/api/identify", "POST", {"latent": {"path": "a.latent"}}),
    ("/api/check", "POST", {"latent": {"path": "a.latent"}, "vae": {"zoo": "zoo-b"}}),
    ("/api/preview", "POST", {"latent": {"path": "a.latent"}}),
    ("/api/jobs/decode", "POST", {"latent": {"path": "a.latent"}, "vae": {"zoo": "zoo-a"}}),
    ("/api/jobs", "GET", None),
]


@pytest.mark.parametrize(("path", "method", "data"), GOOD, ids=[f"{m} {p}" for p, m, _ in GOOD])
def test_answers_to_good_requests_fit_the_schema(path, method, data):
    """The bodies random cases rarely reach: real results, validated against the models the schema documents."""
    operation = schema[path][method]
    if path == "/api/formats/{name}":
        case = operation.Case(path_parameters=data)
    else:
        case = operation.Case(body=data) if data is not None else operation.Case()
    response = case.call_and_validate(
        checks=[checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
                checks.response_schema_conformance]
    )  # fmt: skip
    assert response.status_code < 300, response.text
