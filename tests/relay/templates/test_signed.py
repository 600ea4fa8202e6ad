"""The signed form of an approved template: exactly what the business submitted, bound to
the business, signed by the operator's current key, and signed again after a rotation."""

from __future__ import annotations

from typing import Any

import msgspec

from tresen.client.templates import verify_template
from tresen.wire.templates import SignedTemplate, decode_signed_body


async def test_the_signed_form_verifies_and_binds_the_template(tpl: Any) -> None:
    shop = await tpl.business()
    customer = await tpl.relay.register()
    template_id = await tpl.approved(shop)

    r = await tpl.signed(customer, template_id)
    signed = SignedTemplate.from_json(r.json())
    template = verify_template(signed, await tpl.ring(), tpl.relay.ctx.clock.now_ms())

    own = await tpl.own(shop, template_id)
    assert template.id == int(template_id)
    assert template.business_account == shop.account_id
    assert (template.name, template.language, template.category) == (
        "order_shipped",
        "en_US",
        "UTILITY",
    )
    assert msgspec.to_builtins(template.components) == own["components"]
    # Fetched again, it is the same bytes: clients may cache it.
    assert (await tpl.signed(customer, template_id)).json() == r.json()


async def test_after_a_key_rotation_the_template_is_signed_with_the_new_key(tpl: Any) -> None:
    shop = await tpl.business()
    template_id = await tpl.approved(shop)
    before = SignedTemplate.from_json((await tpl.signed(shop, template_id)).json())

    r = await tpl.http.post(
        "/v1/admin/operator-keys/rotate", json={"overlap_days": 0}, headers=await tpl.operator()
    )
    assert r.status_code == 200, r.text
    new_key = r.json()["key_id"]
    after = SignedTemplate.from_json((await tpl.signed(shop, template_id)).json())

    ring = await tpl.ring()  # pinned to the new key, as a client that followed the rotation
    now = tpl.relay.ctx.clock.now_ms()
    assert verify_template(after, ring, now).key_id == new_key
    # Only the key differs: the template is the one the operator approved.
    old, new = decode_signed_body(before.body), decode_signed_body(after.body)
    assert old.key_id != new.key_id
    assert msgspec.structs.replace(old, key_id=new.key_id) == new
