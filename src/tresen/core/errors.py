"""Error codes of the relay protocol.

Codes reuse the WhatsApp Cloud API numbers where the meaning is the same, so that the business
gateway can pass them through unchanged; relay-only meanings live in the 150000 range.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

__all__ = ["ErrorCode", "TresenError", "http_status_for"]


class ErrorCode(IntEnum):
    # Cloud API codes
    REQUEST_RATE_LIMITED = 4
    INVALID_PARAMETER = 100
    INVALID_TOKEN = 190
    INTERNAL = 131000
    THROUGHPUT_REACHED = 130429
    RECIPIENT_IS_SENDER = 131021
    ACCOUNT_RESTRICTED = 131031
    UNDELIVERABLE = 131026
    # platform rules (relay/policy, templates, billing)
    REENGAGEMENT = 131047
    SPAM_RATE_LIMITED = 131048
    MARKETING_STOPPED = 131050
    PAIR_RATE_LIMITED = 131056
    TEMPLATE_PARAMS_MISMATCH = 132000
    TEMPLATE_NOT_FOUND = 132001
    TEMPLATE_PAUSED = 132015
    TEMPLATE_DISABLED = 132016
    REGISTRATION_RATE_LIMITED = 133016
    # Relay-only codes
    UNSUPPORTED_VERSION = 150000
    FRAME_TOO_LARGE = 150001
    QUEUE_FULL = 150002
    DEVICE_MISMATCH = 150003
    UNKNOWN_MESSAGE = 150004
    RESEND_LIMIT_REACHED = 150005
    INVALID_PHONE_NUMBER = 150010
    CODE_INCORRECT = 150011
    CODE_EXPIRED = 150012
    CODE_ATTEMPTS_EXCEEDED = 150013
    TOO_MANY_ONE_TIME_KEYS = 150020
    BAD_KEY_SIGNATURE = 150021
    IDENTITY_KEYS_MISSING = 150022
    TOO_MANY_DEVICES = 150023
    UNKNOWN_DEVICE = 150024
    BUSINESS_ACCOUNT_NOT_DELETABLE = 150025
    # operator: business verification and administration (relay/operator)
    NOT_A_BUSINESS = 150050
    NO_PENDING_REQUEST = 150051
    NO_CURRENT_CERTIFICATE = 150052
    ALREADY_SUSPENDED = 150053
    NOT_SUSPENDED = 150054
    # businesses: profiles, names and verification requests (relay/businesses)
    VERIFICATION_PENDING = 150030
    NAME_CONFUSABLE = 150031
    ALREADY_VERIFIED = 150032
    BUSINESS_SUSPENDED = 150033
    # platform rules: blocks, consent, templates (relay/policy)
    BLOCKED_BY_YOU = 150060
    INVALID_CONSENT = 150061
    ATTESTED_CONSENT_REFUSED = 150062
    TEMPLATE_EXISTS = 150063
    # attachments: the blob store of encrypted files (relay/attachments)
    ATTACHMENT_TOO_LARGE = 150070
    ATTACHMENT_QUOTA_EXCEEDED = 150071
    ATTACHMENT_NOT_FOUND = 150072
    ATTACHMENT_OFFSET_MISMATCH = 150073
    ATTACHMENT_COMPLETE = 150074
    ATTACHMENT_RANGE_NOT_SATISFIABLE = 150075
    # operations
    NOT_READY = 150080
    # key transparency (relay/transparency)
    NO_EPOCH = 150081
    NOT_FOUND_IN_LOG = 150082


_HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.REQUEST_RATE_LIMITED: 429,
    ErrorCode.INVALID_PARAMETER: 400,
    ErrorCode.INVALID_TOKEN: 401,
    ErrorCode.INTERNAL: 500,
    ErrorCode.THROUGHPUT_REACHED: 429,
    ErrorCode.RECIPIENT_IS_SENDER: 400,
    ErrorCode.ACCOUNT_RESTRICTED: 403,
    ErrorCode.UNDELIVERABLE: 404,
    ErrorCode.REENGAGEMENT: 403,
    ErrorCode.SPAM_RATE_LIMITED: 429,
    ErrorCode.MARKETING_STOPPED: 403,
    ErrorCode.PAIR_RATE_LIMITED: 429,
    ErrorCode.TEMPLATE_PARAMS_MISMATCH: 400,
    ErrorCode.TEMPLATE_NOT_FOUND: 404,
    ErrorCode.TEMPLATE_PAUSED: 403,
    ErrorCode.TEMPLATE_DISABLED: 403,
    ErrorCode.REGISTRATION_RATE_LIMITED: 429,
    ErrorCode.UNSUPPORTED_VERSION: 400,
    ErrorCode.FRAME_TOO_LARGE: 413,
    ErrorCode.QUEUE_FULL: 507,
    ErrorCode.DEVICE_MISMATCH: 409,
    ErrorCode.UNKNOWN_MESSAGE: 404,
    ErrorCode.RESEND_LIMIT_REACHED: 409,
    ErrorCode.INVALID_PHONE_NUMBER: 400,
    ErrorCode.CODE_INCORRECT: 403,
    ErrorCode.CODE_EXPIRED: 410,
    ErrorCode.CODE_ATTEMPTS_EXCEEDED: 429,
    ErrorCode.TOO_MANY_ONE_TIME_KEYS: 400,
    ErrorCode.BAD_KEY_SIGNATURE: 400,
    ErrorCode.IDENTITY_KEYS_MISSING: 409,
    ErrorCode.TOO_MANY_DEVICES: 409,
    ErrorCode.UNKNOWN_DEVICE: 404,
    ErrorCode.BUSINESS_ACCOUNT_NOT_DELETABLE: 409,
    # operator
    ErrorCode.NOT_A_BUSINESS: 404,
    ErrorCode.NO_PENDING_REQUEST: 409,
    ErrorCode.NO_CURRENT_CERTIFICATE: 404,
    ErrorCode.ALREADY_SUSPENDED: 409,
    ErrorCode.NOT_SUSPENDED: 409,
    # businesses
    ErrorCode.VERIFICATION_PENDING: 409,
    ErrorCode.NAME_CONFUSABLE: 409,
    ErrorCode.ALREADY_VERIFIED: 409,
    ErrorCode.BUSINESS_SUSPENDED: 403,
    # platform rules
    ErrorCode.BLOCKED_BY_YOU: 403,
    ErrorCode.INVALID_CONSENT: 400,
    ErrorCode.ATTESTED_CONSENT_REFUSED: 403,
    ErrorCode.TEMPLATE_EXISTS: 409,
    # attachments
    ErrorCode.ATTACHMENT_TOO_LARGE: 413,
    ErrorCode.ATTACHMENT_QUOTA_EXCEEDED: 429,
    ErrorCode.ATTACHMENT_NOT_FOUND: 404,
    ErrorCode.ATTACHMENT_OFFSET_MISMATCH: 409,
    ErrorCode.ATTACHMENT_COMPLETE: 409,
    ErrorCode.ATTACHMENT_RANGE_NOT_SATISFIABLE: 416,
    ErrorCode.NOT_READY: 503,
    ErrorCode.NO_EPOCH: 404,
    ErrorCode.NOT_FOUND_IN_LOG: 404,
}


def http_status_for(code: ErrorCode) -> int:
    return _HTTP_STATUS.get(code, 400)


class TresenError(Exception):
    """A rejection that a client sees: a stable numeric code, a message and details."""

    def __init__(self, code: ErrorCode, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"code": int(self.code), "message": self.message, "details": self.details}

    def __repr__(self) -> str:
        return f"TresenError({self.code.name}, {self.message!r}, {self.details!r})"
