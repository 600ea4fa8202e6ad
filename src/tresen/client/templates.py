"""Template messages on the client: the operator's signature on a template, and a received
template message held against it.

The relay prices and lets through a send that claims to be template T (``class`` template,
``template_ref`` T) without seeing its content. The recipient's client therefore fetches T's
operator-signed form, checks the signature with its pinned operator key ring (offline, like a
business certificate), checks that the ciphertext holds a ``Template`` payload of T from T's
business with parameters that fit, and shows only T rendered with those parameters. Anything
else is rejected and reported to the operator (``template_mismatch``), so free-form text
dressed up as a cheap notification never reaches the customer's screen.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tresen.client.api import RelayApi, RelayError
from tresen.client.store import LocalStore
from tresen.core.clock import Clock
from tresen.core.errors import ErrorCode
from tresen.crypto.certificates import CertificateError, KeyRing, UnknownOperatorKey
from tresen.wire.e2e import Payload, Template, Unsupported
from tresen.wire.relay import MessageClass
from tresen.wire.templates import (
    TEMPLATE_PREFIX,
    ParameterMismatch,
    QuickReplyButton,
    RenderedTemplate,
    SignedTemplate,
    SignedTemplateBody,
    component_keys,
    decode_signed_body,
    header_takes_file,
    render,
)

__all__ = [
    "REPORT_REASON",
    "ForgedTemplate",
    "RetiredTemplateKey",
    "TemplateBook",
    "TemplateMismatch",
    "TemplateRejected",
    "TemplateUnavailable",
    "check_template_message",
    "verify_template",
]

REPORT_REASON = "template_mismatch"
_CACHE_PREFIX = "template:"


class ForgedTemplate(CertificateError):
    """The signature does not verify, or the signed bytes are not a template."""


class RetiredTemplateKey(CertificateError):
    """Signed by an operator key that has retired (the relay signs again with the new one)."""


class TemplateRejected(Exception):
    """A template message the client does not show; ``reason`` says why."""

    report = False
    kind = "template_rejected"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TemplateMismatch(TemplateRejected):
    """The message is not what the template it claims allows: rejected and reported."""

    report = True
    kind = REPORT_REASON


class TemplateUnavailable(TemplateRejected):
    """The template could not be fetched or checked now (network, no pinned operator key):
    rejected, but nobody is reported for it."""

    kind = "template_unavailable"


def _verifier(ring: KeyRing, key_id: str) -> Ed25519PublicKey:
    text = ring.public_key(key_id)
    raw = base64.b64decode(text + "=" * (-len(text) % 4))
    return Ed25519PublicKey.from_public_bytes(raw)


def verify_template(signed: SignedTemplate, ring: KeyRing, now_ms: int) -> SignedTemplateBody:
    """The template, if the operator signed exactly these bytes with a key of ``ring`` that
    has not retired. Raises :class:`UnknownOperatorKey` (refresh the ring and try again),
    :class:`ForgedTemplate` or :class:`RetiredTemplateKey`."""
    try:
        body = decode_signed_body(signed.body)
    except ValueError as exc:
        raise ForgedTemplate(str(exc)) from None
    if body.key_id not in ring:
        raise UnknownOperatorKey(
            f"template {signed.template_id} is signed by operator key {body.key_id}, "
            "which this client does not trust"
        )
    try:
        signature = base64.b64decode(signed.signature + "=" * (-len(signed.signature) % 4))
        _verifier(ring, body.key_id).verify(signature, TEMPLATE_PREFIX + signed.body)
    except (InvalidSignature, binascii.Error, ValueError):
        raise ForgedTemplate(
            f"the operator's signature on template {signed.template_id} does not verify"
        ) from None
    retires = ring.retires_ms(body.key_id)
    if retires is not None and now_ms >= retires:
        raise RetiredTemplateKey(
            f"template {signed.template_id} is signed by operator key {body.key_id}, which retired"
        )
    if body.id != signed.template_id:
        raise ForgedTemplate(f"the signed template is {body.id}, not {signed.template_id}")
    return body


def check_template_message(
    template: SignedTemplateBody,
    payload: Template,
    *,
    sender: str,
    template_ref: str | None,
) -> RenderedTemplate:
    """``payload`` (from ``sender``) rendered with the verified ``template``; raises
    :class:`TemplateMismatch` when it is not a message that template allows.

    ``template_ref`` is the template the send claimed towards the relay, when the client
    knows it. Reasons never repeat parameter values: they go to the operator in a report.
    """
    if template.business_account != sender:
        raise TemplateMismatch(
            f"template {template.id} belongs to another business than the sender"
        )
    if template_ref is not None and template_ref != payload.template_id:
        raise TemplateMismatch(
            f"the message names template {payload.template_id}, the relay was told {template_ref}"
        )
    if (payload.name, payload.language) != (template.name, template.language):
        raise TemplateMismatch(
            f"template {template.id} is {template.name!r} in {template.language}, the message "
            f"names {payload.name!r} in {payload.language}"
        )
    attached = payload.header_media
    if attached is not None and not header_takes_file(template, attached.kind):
        raise TemplateMismatch(f"the message attaches a {attached.kind}; the header is not one")
    parameters: dict[str, list[str] | dict[str, str]] = dict(payload.parameters)
    quick = {k for k, c in component_keys(template.components) if isinstance(c, QuickReplyButton)}
    for key, value in payload.button_payloads.items():
        if key not in quick:
            raise TemplateMismatch(f"{key}: a payload for a button that is not a quick reply")
        if key in parameters:
            raise TemplateMismatch(f"{key}: the payload is given twice")
        parameters[key] = [value]
    try:
        return render(template, parameters)
    except ParameterMismatch as exc:
        problems = "; ".join(f"{p.field}: {p.problem}" for p in exc.problems)
        raise TemplateMismatch(f"the parameters do not fit (132000): {problems}") from None


VERIFIED_FOR_MS = 60_000
"""How long a verified template is used without checking its signature again (a key the
operator retires stops being trusted within this time)."""
VERIFIED_KEPT = 1_000


class TemplateBook:
    """Signed templates this client fetched and verified, kept in its local store.

    ``ring`` gives the client's operator key ring (``None`` before one is pinned) and
    ``refresh_keys`` follows the operator's rotations when a template names a key the ring
    does not know yet.
    """

    def __init__(
        self,
        api: RelayApi,
        store: LocalStore,
        clock: Clock,
        ring: Callable[[], KeyRing | None],
        refresh_keys: Callable[[], Awaitable[object]],
    ) -> None:
        self.api = api
        self.store = store
        self.clock = clock
        self._ring = ring
        self._refresh_keys = refresh_keys
        # Verified bodies by id, with the key ring and the time they were checked against: a
        # business sending one template thousands of times checks its signature once a
        # minute, not once a message.
        self._verified: dict[int, tuple[KeyRing, int, SignedTemplateBody]] = {}

    async def template(self, template_id: int) -> SignedTemplateBody:
        """The verified template ``template_id``, from the store or the relay.

        Raises :class:`TemplateMismatch` when the relay has no approved template of that id
        or serves one that does not verify, :class:`TemplateUnavailable` when it cannot be
        fetched or checked now.
        """
        ring = self._ring()
        if ring is None:
            raise TemplateUnavailable("no operator key is pinned to check templates with")
        now = self.clock.now_ms()
        known = self._verified.get(template_id)
        if known is not None and known[0] is ring and 0 <= now - known[1] < VERIFIED_FOR_MS:
            return known[2]
        body = await self._verify(template_id, ring)
        if len(self._verified) >= VERIFIED_KEPT:
            self._verified.clear()
        self._verified[template_id] = (ring, now, body)
        return body

    async def _verify(self, template_id: int, ring: KeyRing) -> SignedTemplateBody:
        cached = self._cached(template_id)
        if cached is not None:
            try:
                return verify_template(cached, ring, self.clock.now_ms())
            except CertificateError:
                pass  # e.g. its key retired: the relay has it signed anew
        signed = await self._fetch(template_id)
        try:
            try:
                body = verify_template(signed, ring, self.clock.now_ms())
            except UnknownOperatorKey:
                try:
                    await self._refresh_keys()
                except (RelayError, httpx.HTTPError) as exc:
                    raise TemplateUnavailable(f"operator keys unavailable: {exc}") from None
                body = verify_template(signed, ring, self.clock.now_ms())
        except CertificateError as exc:
            raise TemplateMismatch(str(exc)) from None
        self.store.set_meta(f"{_CACHE_PREFIX}{template_id}", json.dumps(signed.to_json()).encode())
        return body

    def _cached(self, template_id: int) -> SignedTemplate | None:
        raw = self.store.get_meta(f"{_CACHE_PREFIX}{template_id}")
        if raw is None:
            return None
        try:
            return SignedTemplate.from_json(json.loads(raw))
        except ValueError:
            return None

    async def _fetch(self, template_id: int) -> SignedTemplate:
        try:
            data = await self.api.signed_template(template_id)
        except RelayError as exc:
            if exc.code == ErrorCode.TEMPLATE_NOT_FOUND:
                raise TemplateMismatch(
                    f"template {template_id} is not a template the operator approved"
                ) from None
            raise TemplateUnavailable(f"the template could not be fetched: {exc}") from None
        except httpx.HTTPError as exc:
            raise TemplateUnavailable(f"the template could not be fetched: {exc!r}") from None
        try:
            signed = SignedTemplate.from_json(data)
        except ValueError as exc:
            raise TemplateMismatch(f"the relay served no signed template: {exc}") from None
        if signed.template_id != template_id:
            raise TemplateMismatch(f"asked for template {template_id}, got {signed.template_id}")
        return signed

    async def check(
        self,
        payload: Payload | Unsupported,
        *,
        sender: str,
        klass: MessageClass,
        template_ref: str | None,
    ) -> RenderedTemplate:
        """The rendering of a received template message; raises :class:`TemplateRejected`.

        A message of class TEMPLATE must carry a ``Template`` payload; a ``Template``
        payload is only shown as its signed template renders it, whatever the class.
        """
        if isinstance(payload, Unsupported):
            if payload.tag == "template":
                # A newer sender's template payload: not the sender's fault, nothing to show.
                raise TemplateUnavailable(f"a template payload of version {payload.v}")
            raise TemplateMismatch(f"a template message carries a {payload.tag} payload")
        if not isinstance(payload, Template):
            kind = payload.__struct_config__.tag
            raise TemplateMismatch(f"a template message carries a {kind} payload, not a template")
        ref = template_ref if klass is MessageClass.TEMPLATE else None
        template = await self.template(int(payload.template_id))
        return check_template_message(template, payload, sender=sender, template_ref=ref)
