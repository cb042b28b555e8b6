"""Property-based test of the whole API against its own OpenAPI schema (schemathesis).

Every operation in /api/schema gets generated requests, valid and invalid, sent in-process to
the WSGI app on real PostgreSQL as the owner of a tenant that has one object of each kind, so
path ids can name real objects and operations get past 404 (the inbox's operations are called
with that tenant's recipient's token). Each response must:
- not be a 5xx;
- have a status the schema documents for that operation;
- match the documented body schema and content type for that status.

The tenant's objects are written through the API before each operation's run, and every
generated request runs inside a savepoint that is rolled back after it: each request meets the
same objects (a DELETE does not leave the next request a 404), and a request that breaks its
transaction cannot break the next one.
"""

import json

import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.db import transaction
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import REAL_IDS

# Generated cases per operation, on top of schemathesis' deterministic coverage cases (boundary
# values, missing and malformed fields, unexpected methods: about 35 per operation), so ~45
# requests per operation in all. More finds little more and costs the whole suite's time.
EXAMPLES_PER_OPERATION = 10

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def served_schema() -> dict:
    """The document /api/schema serves, made by the same generator and read back as plain JSON."""
    document = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(document))


schema = schemathesis.openapi.from_dict(served_schema())
schema.app = WSGIHandler()


def real_path_parameters(path: str, generated: dict) -> dict:
    """`generated` with each parameter that names a real object of this collection replaced."""
    collection = path.removeprefix("/api/v1/").split("/")[0]
    real = dict(generated)
    for name in generated:
        value = REAL_IDS.get(f"{name}:{collection}", REAL_IDS.get(name))
        if value is not None:
            real[name] = value
    return real


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    # Half the cases name real objects (to reach the operation's logic), half keep the generated
    # ids (to reach its 404s and its input checks).
    if not path_parameters:
        return st.just(path_parameters)
    path = context.operation.path
    return st.one_of(st.just(path_parameters), st.builds(lambda: real_path_parameters(path, path_parameters)))


@schema.parametrize()
@hypothesis_settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: the failure report is enough
    suppress_health_check=list(HealthCheck),
)
def test_every_response_is_documented_and_not_a_server_error(case, credentials):
    case.validate_response(call_rolled_back(case, credentials), checks=CHECKS)


def call_rolled_back(case, credentials: dict[str, str]):
    """`case` sent with its operation's credential, inside a savepoint rolled back after it."""
    [scheme] = case.operation.definition.raw.get("security", [{"ApiKey": []}])[0] or ["ApiKey"]
    savepoint = transaction.savepoint()
    try:
        return case.call(headers={"Authorization": f"Bearer {credentials[scheme]}"})
    finally:
        transaction.savepoint_rollback(savepoint)
