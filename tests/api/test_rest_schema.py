"""Property tests of /api/v1 against its own OpenAPI description (schemathesis): for generated requests — valid
and not — no 5xx, and every response matches the status codes and bodies the description declares.

Runs as member "fuzz" (its own rows only). A bounded number of examples per operation; the operations that start
long work on this 2-core machine (a fine-tune, an evaluation, a battle's answers) are checked with invalid input
only, so a generated valid request cannot start minutes of training: their happy paths have their own tests."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

pytestmark = pytest.mark.api

# Operations whose valid requests start long work (or change what other requests see for minutes).
HEAVY = ("POST /finetunes", "POST /finetunes/{run_id}/resume", "POST /evaluations", "POST /evaluations/{eval_id}/resume",
         "POST /arena/battles")


@pytest.fixture(scope="module")
def rest_schema(api_studio):
    spec = httpx.get(api_studio.url + "api/v1/openapi.json", timeout=60,
                     headers={"Authorization": f"Bearer {api_studio.fuzz_key}"}).json()
    spec["servers"] = [{"url": api_studio.url.rstrip("/") + "/api/v1"}]
    return schemathesis.openapi.from_dict(spec)


schema = schemathesis.pytest.from_fixture("rest_schema")


@schema.parametrize()
@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_server_error_and_every_response_matches_the_description(case, api_studio) -> None:
    headers = {"Authorization": f"Bearer {api_studio.fuzz_key}"}
    label = f"{case.method.upper()} {case.operation.path}"
    if label in HEAVY:
        response = case.call(headers=headers, json={"not": "a valid request"}, timeout=60)
        assert response.status_code in (400, 404, 422), (label, response.status_code, response.text[:300])
        return
    case.call_and_validate(headers=headers, timeout=120)
