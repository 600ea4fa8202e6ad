"""Whatever a client sends — NUL and other control characters, integers beyond 64 bits, in
the path, the query or the JSON body — the gateway answers 4xx in the Graph error envelope,
never a server error. On PostgreSQL, whose text holds no NUL and whose integers have 64 bits.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from gateway_support import API_VERSION, RunningGateway
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tresen.core.http import tls_context

EDGES = ["", "messages", "message_templates", "whatsapp_business_profile", "block_users"]
EDGES += ["subscribed_apps"]
QUERY_KEYS = ["name", "status", "category", "language", "limit", "after", "summary", "fields"]
QUERY_KEYS += ["hsm_id", "access_token"]
BODY_KEYS = ["messaging_product", "to", "recipient", "type", "text", "interactive", "template"]
BODY_KEYS += ["reaction", "context", "status", "message_id", "block_users", "about"]
BODY_KEYS += ["override_callback_uri", "verify_token", "webhook_configuration", "name"]
BODY_KEYS += ["language", "components", "category", "biz_opaque_callback_data"]

# Control characters (NUL first), then any text.
nasty_text = st.one_of(
    st.text(alphabet=st.characters(max_codepoint=0x1F), min_size=1, max_size=5),
    st.text(max_size=20),
    st.text(max_size=5).map(lambda t: t + "\x00"),
)
nasty_int = st.one_of(
    st.integers(min_value=2**63 - 2, max_value=2**70),
    st.integers(min_value=-(2**70), max_value=-(2**63) - 1),
    st.integers(min_value=-5, max_value=200),
)
scalar = st.one_of(nasty_text, nasty_int, st.booleans(), st.none())
json_value = st.recursive(
    scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(BODY_KEYS) | nasty_text, inner, max_size=4),
    ),
    max_leaves=12,
)


def send_with(field: str, value: Any) -> dict[str, Any]:
    """A valid-looking send (and its nested objects) with one field replaced."""
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "to": "+4915100000000",
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": "Pick"},
            "action": {"buttons": [{"type": "reply", "reply": {"id": "a", "title": "A"}}]},
        },
    }
    body[field] = value
    return body


@st.composite
def requests(draw: st.DrawFn, phone_number_id: str, waba_id: str) -> dict[str, Any]:
    node = draw(st.sampled_from([phone_number_id, waba_id]) | nasty_text | nasty_int.map(str))
    version = draw(st.sampled_from([API_VERSION]) | nasty_text)
    edge = draw(st.sampled_from(EDGES))
    path = f"/{quote(str(version), safe='')}/{quote(str(node), safe='')}"
    if edge:
        path += f"/{edge}"
    query = draw(st.dictionaries(st.sampled_from(QUERY_KEYS) | nasty_text, nasty_text | nasty_int))
    body = draw(
        st.one_of(
            st.none(),
            json_value,
            st.builds(send_with, st.sampled_from(BODY_KEYS), json_value),
        )
    )
    method = draw(st.sampled_from(["GET", "POST", "DELETE"]))
    return {"method": method, "path": path, "query": query, "body": body}


def never_a_server_error(gw: RunningGateway, examples: int) -> None:
    with httpx.Client(
        verify=tls_context(),
        base_url=gw.url,
        headers={"Authorization": f"Bearer {gw.token}"},
        timeout=30,
    ) as http:

        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(request=requests(gw.phone_number_id, gw.waba_id))
        def answer(request: dict[str, Any]) -> None:
            r = http.request(
                request["method"],
                request["path"],
                params={str(k): str(v) for k, v in request["query"].items()},
                json=request["body"],
            )
            assert r.status_code < 500, (request, r.text)
            if r.status_code >= 400:
                error = r.json()["error"]
                assert set(error) >= {"message", "type", "code", "error_data", "fbtrace_id"}
                assert isinstance(error["code"], int)

        answer()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_no_input_makes_a_server_error(gw: RunningGateway) -> None:
    started = time.monotonic()
    await asyncio.to_thread(never_a_server_error, gw, 300)
    assert time.monotonic() - started < 60
