"""Lists as the business edits them, segments by label and attribute, and the list's link
and QR code."""

from __future__ import annotations

import io

import pytest
import segno
from gateway_support import RunningGateway
from PIL import Image
from sqlalchemy import insert

from tresen.gateway.schema import conversation_labels, labels
from tresen.gateway.subscribers import (
    AudienceInvalid,
    ListInvalid,
    ListSpec,
    Purpose,
    Source,
    State,
    Subscriber,
    Subscribers,
    repo,
)


def subscribers_of(gw: RunningGateway) -> Subscribers:
    found: Subscribers = gw.app.state.subscribers
    return found


async def test_lists_are_checked_and_edited(gw: RunningGateway) -> None:
    lists = subscribers_of(gw).lists
    news = await lists.create_list(
        ListSpec(name=" News ", keyword=" news", purpose=Purpose.MARKETING)
    )
    assert (news.name, news.keyword) == ("News", "NEWS")
    with pytest.raises(ListInvalid, match="keyword"):
        await lists.create_list(ListSpec(name="Other", keyword="NEWS", purpose=Purpose.MARKETING))
    with pytest.raises(ListInvalid, match="letters"):
        await lists.create_list(ListSpec(name="Other", keyword="big news", purpose=Purpose.UTILITY))
    with pytest.raises(ListInvalid, match="means something"):
        await lists.create_list(ListSpec(name="Other", keyword="STOP", purpose=Purpose.UTILITY))
    edited = await lists.edit_list(
        news.id, ListSpec(name="Newsletter", keyword="NEWS", purpose=Purpose.MARKETING)
    )
    assert edited.name == "Newsletter"
    assert [f.name for f in await lists.lists()] == ["Newsletter"]
    await lists.delete_list(news.id)
    assert await lists.lists() == []


async def test_segments_by_label_and_attributes(gw: RunningGateway) -> None:
    subs = subscribers_of(gw)
    news = await subs.lists.create_list(ListSpec(name="News", purpose=Purpose.MARKETING))
    people = {
        "a1": ("subscribed", {"city": "Berlin", "tier": "gold", "birthday": "05-01"}),
        "a2": ("subscribed", {"city": "Berlin", "tier": "silver"}),
        "a3": ("subscribed", {"city": "Hamburg", "tier": "gold"}),
        "a4": ("pending", {"city": "Berlin", "tier": "gold"}),
        "a5": ("unsubscribed", {"city": "Berlin", "tier": "gold"}),
    }
    async with subs.lists.db.write() as conn:
        for n, (account, (state, attributes)) in enumerate(people.items()):
            await repo.put_subscriber(
                conn,
                Subscriber(
                    list_id=news.id,
                    account_id=account,
                    phone=f"+49151000000{n}",
                    state=State(state),
                    source=Source.IMPORT,
                    attributes=attributes,
                    evidence=None,
                    reason=None,
                    created_ms=1000 + n,
                    updated_ms=1000 + n,
                ),
            )
        vip = (
            await conn.execute(insert(labels).values(name="vip", created_ms=1))
        ).inserted_primary_key
        assert vip is not None
        for account in ("a1", "a3", "a4"):
            await conn.execute(insert(conversation_labels).values(contact=account, label_id=vip[0]))

    async def who(spec: dict[str, object]) -> list[str]:
        return [r.account_id for r in await subs.segments.recipients({"list": news.id, **spec})]

    assert await who({}) == ["a1", "a2", "a3"]
    assert await who({"where": {"city": "Berlin"}}) == ["a1", "a2"]
    assert await who({"where": {"tier": {"in": ["gold", "bronze"]}}}) == ["a1", "a3"]
    assert await who({"where": {"birthday": {"has": True}}}) == ["a1"]
    assert await who({"where": {"birthday": {"has": False}}}) == ["a2", "a3"]
    assert await who({"labels": ["vip"]}) == ["a1", "a3"]
    assert await who({"labels": ["vip"], "where": {"city": "Berlin"}}) == ["a1"]
    assert await who({"labels": ["nobody-has-this"]}) == []
    [first] = await subs.segments.recipients(
        {"list": news.id, "where": {"birthday": {"has": True}}}
    )
    assert (first.phone, first.attributes["tier"]) == ("+491510000000", "gold")
    with pytest.raises(AudienceInvalid):
        await subs.segments.recipients({"list": news.id, "where": {"city": {"like": "B%"}}})


async def test_the_link_and_qr_code_open_the_chat_with_the_keyword(gw: RunningGateway) -> None:
    lists = subscribers_of(gw).lists
    news = await lists.create_list(ListSpec(name="News", keyword="NEWS", purpose=Purpose.MARKETING))
    link = await lists.link(news.id)
    assert link == (f"{gw.settings.relay_url}/app/#/chat/{gw.gateway.account_id}?text=START%20NEWS")
    svg = await lists.qr_code(news.id, "svg")
    assert svg.startswith(b"<svg")
    png = await lists.qr_code(news.id, "png")
    # The PNG's modules, read back at its scale, are the QR code of exactly this link.
    image = Image.open(io.BytesIO(png)).convert("L")
    expected = segno.make_qr(link, error="m", boost_error=False)
    size, scale, border = len(expected.matrix), 8, 4
    assert image.size == ((size + 2 * border) * scale,) * 2
    read = [
        [
            image.getpixel(((x + border) * scale + 4, (y + border) * scale + 4)) == 0
            for x in range(size)
        ]
        for y in range(size)
    ]
    assert read == [[bool(v) for v in row] for row in expected.matrix]
    plain = await lists.create_list(ListSpec(name="Plain", purpose=Purpose.UTILITY))
    with pytest.raises(ListInvalid, match="keyword"):
        await lists.link(plain.id)
