"""`/docs` and `/openapi.json` of the HTTP API (docs/operations.md, "API docs") against a
real node: Swagger UI from local assets only, the bearer scheme on the authenticated routes,
the error answers."""

from __future__ import annotations

import re
from typing import Any

from tests.conftest import Harness
from tests.helpers import Apis

CONTENT_TYPES = {".js": ("text/javascript", "application/javascript"), ".css": ("text/css",),
                 ".png": ("image/png",)}


async def test_docs_load_swagger_ui_from_the_node_alone(rdv: Harness, http: Apis) -> None:
    api = http(rdv, None)
    docs = await api.raw("GET", "/docs")
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    assert not re.search(r"(https?:)?//[a-z0-9]", docs.text, re.IGNORECASE), \
        "an absolute URL in /docs"
    refs = re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']+)["']""", docs.text)
    assert any(ref.endswith(".js") for ref in refs) and any(ref.endswith(".css") for ref in refs)
    assert any(ref.endswith(".png") for ref in refs), "the favicon"
    for ref in refs:
        assert ref.startswith("/"), ref
        asset = await api.raw("GET", ref)
        assert asset.status_code == 200 and asset.content, ref
        suffix = ref[ref.rindex("."):]
        assert asset.headers["content-type"].startswith(CONTENT_TYPES[suffix]), ref
    assert "url: '/openapi.json'" in docs.text


async def test_openapi_has_the_bearer_scheme_on_authenticated_routes(rdv: Harness,
                                                                    http: Apis) -> None:
    spec = (await http(rdv, None).raw("GET", "/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    names = [name for name, scheme in schemes.items()
             if scheme == {**scheme, "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}]
    assert len(names) == 1, schemes
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if path.startswith("/v1/"):
                assert op.get("security") == [{names[0]: []}], (method, path)
            else:
                assert "security" not in op, (method, path)


def error_schema(spec: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    ref: str = answer["content"]["application/json"]["schema"]["$ref"]
    schema: dict[str, Any] = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return schema


async def test_openapi_describes_the_error_answers(rdv: Harness, http: Apis) -> None:
    spec = (await http(rdv, None).raw("GET", "/openapi.json")).json()
    settings = spec["paths"]["/v1/me/settings"]["get"]["responses"]
    for status in ("401", "429", "503"):
        schema = error_schema(spec, settings[status])
        assert schema["required"] == ["error"], schema
        detail = spec["components"]["schemas"][
            schema["properties"]["error"]["$ref"].rsplit("/", 1)[1]]
        assert set(detail["properties"]) == {"code", "msg", "reset_at"}  # reset_at: quotas
        assert sorted(detail["required"]) == ["code", "msg"]
    assert "Retry-After" in settings["429"]["headers"]
    swipes = spec["paths"]["/v1/swipes"]["post"]["responses"]
    assert {"400", "401", "413", "422", "429", "503"} <= set(swipes)
    unmatch = spec["paths"]["/v1/matches/{match_id}"]["delete"]["responses"]
    assert "403" in unmatch
    assert "docs/protocol.md" in spec["info"]["description"]


async def test_an_error_answers_the_documented_shape(rdv: Harness, http: Apis) -> None:
    response = await http(rdv, None).raw("GET", "/v1/me/settings")
    assert response.status_code == 401
    assert response.json() == {"error": {"code": "unauthorized",
                                         "msg": "Authorization: Bearer <JWT> required"}}
    authed = await http(rdv, "ann").raw("GET", "/v1/me/settings")
    assert authed.status_code == 200


async def test_openapi_shows_mute_and_push_kinds(rdv: Harness, http: Apis) -> None:
    spec = (await http(rdv, None).raw("GET", "/openapi.json")).json()
    mute = spec["paths"]["/v1/matches/{match_id}/mute"]
    assert set(mute) == {"put", "delete"}
    assert {"200", "403"} <= set(mute["put"]["responses"])
    assert "204" in mute["delete"]["responses"]
    schemas = spec["components"]["schemas"]
    assert set(schemas["MuteBody"]["properties"]) == {"until"}
    assert set(schemas["MuteAnswer"]["properties"]) == {"muted_until"}
    assert "push_kinds" in schemas["SettingsBody"]["properties"]
    assert set(schemas["PushKindsBody"]["properties"]) == {"message", "match", "like"}
