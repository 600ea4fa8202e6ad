"""The gateway describes its Cloud API: ``/openapi.json`` names the endpoints an integrator
uses, and ``/docs`` shows them."""

from __future__ import annotations

import httpx
from gateway_support import RunningGateway

from tresen.core.http import tls_context


async def test_openapi_lists_the_cloud_api_paths(gw: RunningGateway) -> None:
    async with httpx.AsyncClient(verify=tls_context(), base_url=gw.url) as anonymous:
        r = await anonymous.get("/openapi.json")
        assert r.status_code == 200, r.text
        spec = r.json()
        paths = spec["paths"]
        assert set(paths["/{version}/{node}/messages"]) == {"post"}
        assert set(paths["/{version}/{node}/message_templates"]) == {"get", "post", "delete"}
        assert set(paths["/{version}/{node}/whatsapp_business_profile"]) == {"get", "post"}
        assert set(paths["/{version}/{node}/block_users"]) == {"get", "post", "delete"}
        assert set(paths["/{version}/{node}/subscribed_apps"]) == {"get", "post", "delete"}
        assert set(paths["/{version}/{node}"]) == {"get", "post", "delete"}  # and media ids
        assert set(paths["/{version}/{node}/media"]) == {"post"}
        assert set(paths["/media/{token}"]) == {"get"}
        send = paths["/{version}/{node}/messages"]["post"]
        example = send["requestBody"]["content"]["application/json"]["example"]
        assert example["messaging_product"] == "whatsapp"
        assert spec["info"]["title"] == "Tresen gateway"

        # Errors are the Graph envelope, on the statuses the routes answer; no 422.
        schemes = spec["components"]["securitySchemes"]
        assert schemes["bearer"]["scheme"] == "bearer"
        assert schemes["access_token"] == {
            "type": "apiKey",
            "in": "query",
            "name": "access_token",
            "description": schemes["access_token"]["description"],
        }
        assert "HTTPValidationError" not in spec["components"]["schemas"]
        for path, operations in paths.items():
            if path.startswith("/inbox/api/"):
                continue  # the inbox's own API, with its own envelope (test_inbox_api.py)
            for method, operation in operations.items():
                responses = operation["responses"]
                assert "422" not in responses, (method, path)
                assert {"200", "400", "401", "429"} <= set(responses), (method, path)
                bad = responses["400"]["content"]["application/json"]["schema"]
                assert bad == {"$ref": "#/components/schemas/GraphErrorEnvelope"}
                # A media's file is its bytes; an upload is a multipart form.
                answer = (
                    "application/octet-stream" if path == "/media/{token}" else "application/json"
                )
                assert "schema" in responses["200"]["content"][answer]
                if method == "post":
                    assert "413" in responses, (method, path)
                    form = "multipart/form-data" if path.endswith("/media") else "application/json"
                    assert operation["requestBody"]["content"][form]["schema"]

        r = await anonymous.get("/docs")
        assert r.status_code == 200
        assert "text/html" in r.headers["content-type"]
        assert "/openapi.json" in r.text
