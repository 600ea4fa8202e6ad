"""The rules of a submitted template, with a problem named for every offending field.

A submission is the Cloud API's template JSON: ``name``, ``language``, ``category``,
``components`` and optionally ``parameter_format`` (``POSITIONAL`` or ``NAMED``) and
``allow_category_change`` (accepted, not used: the operator decides the category). Types of
components, header formats, button and OTP types may be written in any case.

The checks follow the Cloud API's limits: a BODY (≤ 1024 characters) is required; a HEADER is
TEXT (≤ 60 characters, ≤ 1 placeholder) or a media format; a FOOTER has ≤ 60 characters and no
placeholders; BUTTONS are 1-10 of QUICK_REPLY, URL (≤ 2, one ``{{1}}`` at the end of the URL),
PHONE_NUMBER (≤ 1), COPY_CODE (≤ 1, not in authentication templates); authentication
templates have the platform's fixed body, no header, an optional code expiry instead of a
footer text and exactly one OTP button. Placeholders are ``{{1}}`` … ``{{n}}`` without gaps
(``{{first_name}}`` with ``NAMED``), each component numbered on its own, and need example
values. The body cannot start or end with a placeholder, and placeholders need text between
them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msgspec

from tresen.wire.business import Problem
from tresen.wire.templates import (
    BODY_MAX,
    BUTTON_TEXT_MAX,
    FOOTER_MAX,
    HEADER_TEXT_MAX,
    MAX_BUTTONS,
    NAME_MAX,
    NAMED_NAME,
    POSITIONAL_NAME,
    AnyComponent,
    HeaderFormat,
    OtpType,
    ParameterFormat,
    TemplateCategory,
    placeholders,
)

__all__ = ["InvalidTemplate", "TemplateSubmission", "validate_submission"]

_NAME = re.compile(rf"[a-z0-9_]{{1,{NAME_MAX}}}")
_LANGUAGE = re.compile(r"[a-z]{2,3}(_[A-Z]{2})?")
_PHONE = re.compile(r"\+?[0-9]{6,20}")
_SIGNATURE_HASH = re.compile(r"[A-Za-z0-9+/]{11}")
_PACKAGE = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+")
_ADJACENT = re.compile(r"\}\}\s*\{\{")

_TOP_FIELDS = {
    "name",
    "language",
    "category",
    "components",
    "parameter_format",
    "allow_category_change",
}
_COMPONENT_FIELDS = {
    "HEADER": {"type", "format", "text", "example"},
    "BODY": {"type", "text", "add_security_recommendation", "example"},
    "FOOTER": {"type", "text", "code_expiration_minutes"},
    "BUTTONS": {"type", "buttons"},
}
_BUTTON_FIELDS = {
    "QUICK_REPLY": {"type", "text"},
    "URL": {"type", "text", "url", "example"},
    "PHONE_NUMBER": {"type", "text", "phone_number"},
    "COPY_CODE": {"type", "example"},
    "OTP": {"type", "otp_type", "text", "autofill_text", "package_name", "signature_hash"},
}
_BUTTON_LIMITS = {"URL": 2, "PHONE_NUMBER": 1, "COPY_CODE": 1}
CODE_EXPIRATION_MAX = 90
COPY_CODE_MAX = 15
URL_MAX = 2000


@dataclass(frozen=True, slots=True)
class TemplateSubmission:
    """A template that passed every check, its components in canonical form."""

    name: str
    language: str
    category: TemplateCategory
    parameter_format: ParameterFormat
    components: list[AnyComponent]


class InvalidTemplate(ValueError):
    """A submission breaks the rules; ``problems`` names every offending field."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.problem}" for p in problems))
        self.problems = problems


def _choices(enum: type[Any]) -> str:
    return ", ".join(e.value for e in enum)


class _Checker:
    def __init__(self, category: TemplateCategory | None, fmt: ParameterFormat) -> None:
        self.problems: list[Problem] = []
        self.category = category
        self.fmt = fmt

    @property
    def auth(self) -> bool:
        return self.category is TemplateCategory.AUTHENTICATION

    def add(self, field: str, problem: str) -> None:
        self.problems.append(Problem(field, problem))

    def fields(self, path: str, raw: Mapping[str, Any], allowed: set[str]) -> None:
        for key in raw:
            if key not in allowed:
                self.add(f"{path}.{key}", "unknown field")

    def text(
        self, path: str, value: Any, limit: int, *, required: bool = True, newlines: bool = True
    ) -> str | None:
        if value is None:
            if required:
                self.add(path, "is required")
            return None
        if not isinstance(value, str):
            self.add(path, "must be text")
            return None
        if not value.strip():
            self.add(path, "must not be empty")
            return None
        if len(value) > limit:
            self.add(path, f"has {len(value)} characters; at most {limit} are allowed")
            return None
        if not newlines and ("\n" in value or "\r" in value):
            self.add(path, "must be one line")
            return None
        return value

    def absent(self, path: str, raw: Mapping[str, Any], key: str, why: str) -> None:
        if raw.get(key) is not None:
            self.add(f"{path}.{key}", why)

    # --- placeholders ------------------------------------------------------------------------

    def names(self, path: str, text: str, fmt: ParameterFormat | None = None) -> list[str] | None:
        """The distinct placeholders of ``text`` in order ("1", "2" … or the names), or
        ``None`` when they break the rules."""
        fmt = fmt or self.fmt
        found = placeholders(text)
        ok = True
        for inner in found:
            if fmt is ParameterFormat.POSITIONAL and not POSITIONAL_NAME.fullmatch(inner):
                hint = (
                    "; {{" + inner + "}} is a named placeholder (parameter_format NAMED)"
                    if NAMED_NAME.fullmatch(inner)
                    else ""
                )
                self.add(path, "placeholders are {{1}}, {{2}}, … in the POSITIONAL format" + hint)
                ok = False
                break
            if fmt is ParameterFormat.NAMED and not NAMED_NAME.fullmatch(inner):
                self.add(
                    path,
                    "named placeholders are lowercase letters, digits and _ starting with a "
                    "letter, e.g. {{first_name}}",
                )
                ok = False
                break
        rest = re.sub(r"\{\{[^{}]*\}\}", "", text)
        if "{{" in rest or "}}" in rest:
            self.add(path, "a placeholder is not closed: write {{1}} (two braces on each side)")
            ok = False
        if not ok:
            return None
        distinct: list[str] = []
        for inner in found:
            if inner not in distinct:
                distinct.append(inner)
        if fmt is ParameterFormat.POSITIONAL and distinct:
            numbers = sorted(int(n) for n in distinct)
            if numbers != list(range(1, len(numbers) + 1)):
                self.add(
                    path,
                    f"placeholders must be numbered 1 to {len(numbers)} without gaps; found "
                    + ", ".join(str(n) for n in numbers),
                )
                return None
            distinct = [str(n) for n in numbers]
        return distinct

    def named_examples(self, path: str, value: Any, names: list[str]) -> list[dict[str, str]]:
        if not isinstance(value, list) or not all(isinstance(e, Mapping) for e in value):
            self.add(path, "give a list of {param_name, example} objects")
            return []
        given: list[dict[str, str]] = []
        for i, entry in enumerate(value):
            self.fields(f"{path}.{i}", entry, {"param_name", "example"})
            name = entry.get("param_name")
            example = self.text(f"{path}.{i}.example", entry.get("example"), BODY_MAX)
            if not isinstance(name, str):
                self.add(f"{path}.{i}.param_name", "is required")
            elif example is not None:
                given.append({"param_name": name, "example": example})
        given_names = [g["param_name"] for g in given]
        if len(given) == len(value) and sorted(given_names) != sorted(names):
            missing = [n for n in names if n not in given_names]
            extra = sorted({n for n in given_names if n not in names} | _repeated(given_names))
            parts = (["missing " + ", ".join(missing)] if missing else []) + (
                ["not in the text or repeated: " + ", ".join(extra)] if extra else []
            )
            self.add(path, "examples must name each placeholder once: " + "; ".join(parts))
        return given

    # --- components --------------------------------------------------------------------------

    def header(self, path: str, raw: Mapping[str, Any]) -> dict[str, Any]:
        if self.auth:
            self.add(path, "authentication templates have no header")
        fmt_raw = raw.get("format")
        fmt = _enum(HeaderFormat, fmt_raw)
        if fmt is None:
            self.add(f"{path}.format", f"must be one of {_choices(HeaderFormat)}")
            return {}
        out: dict[str, Any] = {"type": "HEADER", "format": fmt.value}
        example = raw.get("example")
        if example is not None and not isinstance(example, Mapping):
            self.add(f"{path}.example", "must be an object")
            example = None
        if fmt is not HeaderFormat.TEXT:
            self.absent(path, raw, "text", f"a {fmt.value} header has no text")
            if example is not None:
                self.fields(f"{path}.example", example, {"header_handle"})
                handle = example.get("header_handle")
                if not (
                    isinstance(handle, list)
                    and len(handle) == 1
                    and isinstance(handle[0], str)
                    and handle[0]
                ):
                    self.add(f"{path}.example.header_handle", "give one media handle or link")
                else:
                    out["example"] = {"header_handle": handle}
            return out
        text = self.text(f"{path}.text", raw.get("text"), HEADER_TEXT_MAX, newlines=False)
        if text is None:
            return out
        out["text"] = text
        names = self.names(f"{path}.text", text)
        if names is None:
            return out
        if len(names) > 1:
            self.add(f"{path}.text", "a header has at most 1 placeholder")
            return out
        named = self.fmt is ParameterFormat.NAMED
        key = "header_text_named_params" if named else "header_text"
        if not names:
            if example is not None:
                self.add(f"{path}.example", "the header has no placeholders to give examples for")
            return out
        if example is None:
            self.add(f"{path}.example", f"an example is required for the placeholder ({key})")
            return out
        self.fields(f"{path}.example", example, {key})
        if named:
            given = self.named_examples(f"{path}.example.{key}", example.get(key), names)
            out["example"] = {key: given}
        else:
            values = example.get(key)
            if not (
                isinstance(values, list)
                and len(values) == 1
                and isinstance(values[0], str)
                and values[0].strip()
            ):
                self.add(f"{path}.example.{key}", "give a list with one example value")
            else:
                out["example"] = {key: values}
        return out

    def body(self, path: str, raw: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "BODY"}
        if self.auth:
            self.absent(
                path,
                raw,
                "text",
                "authentication templates use the platform's fixed text; leave text out",
            )
            self.absent(path, raw, "example", "authentication templates take no example")
            security = raw.get("add_security_recommendation")
            if security is not None:
                if not isinstance(security, bool):
                    self.add(f"{path}.add_security_recommendation", "must be true or false")
                else:
                    out["add_security_recommendation"] = security
            return out
        self.absent(
            path,
            raw,
            "add_security_recommendation",
            "only authentication templates have a security recommendation",
        )
        text = self.text(f"{path}.text", raw.get("text"), BODY_MAX)
        if text is None:
            return out
        out["text"] = text
        names = self.names(f"{path}.text", text)
        if names is None:
            return out
        example = raw.get("example")
        if not names:
            if example is not None:
                self.add(f"{path}.example", "the body has no placeholders to give examples for")
            return out
        stripped = text.strip()
        if stripped.startswith("{{") or stripped.endswith("}}"):
            self.add(f"{path}.text", "the body cannot start or end with a placeholder")
        if _ADJACENT.search(text):
            self.add(f"{path}.text", "placeholders need text between them")
        named = self.fmt is ParameterFormat.NAMED
        key = "body_text_named_params" if named else "body_text"
        if example is None:
            self.add(
                f"{path}.example",
                f"examples are required for the {len(names)} placeholder(s) ({key})",
            )
            return out
        if not isinstance(example, Mapping):
            self.add(f"{path}.example", "must be an object")
            return out
        self.fields(f"{path}.example", example, {key})
        if named:
            given = self.named_examples(f"{path}.example.{key}", example.get(key), names)
            out["example"] = {key: given}
            return out
        values = example.get(key)
        if not (
            isinstance(values, list)
            and len(values) == 1
            and isinstance(values[0], list)
            and all(isinstance(v, str) and v.strip() for v in values[0])
        ):
            self.add(
                f"{path}.example.{key}",
                f'give one list of {len(names)} example values, e.g. [["Anna", "4711"]]',
            )
        elif len(values[0]) != len(names):
            self.add(
                f"{path}.example.{key}",
                f"{len(values[0])} example value(s) for {len(names)} placeholder(s)",
            )
        else:
            out["example"] = {key: values}
        return out

    def footer(self, path: str, raw: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "FOOTER"}
        if self.auth:
            self.absent(
                path,
                raw,
                "text",
                "authentication templates have a fixed footer; set code_expiration_minutes",
            )
            minutes = raw.get("code_expiration_minutes")
            if minutes is not None:
                if (
                    not isinstance(minutes, int)
                    or isinstance(minutes, bool)
                    or not 1 <= minutes <= CODE_EXPIRATION_MAX
                ):
                    self.add(
                        f"{path}.code_expiration_minutes",
                        f"must be a whole number from 1 to {CODE_EXPIRATION_MAX}",
                    )
                else:
                    out["code_expiration_minutes"] = minutes
            return out
        self.absent(
            path,
            raw,
            "code_expiration_minutes",
            "only authentication templates have a code expiry",
        )
        text = self.text(f"{path}.text", raw.get("text"), FOOTER_MAX)
        if text is not None:
            out["text"] = text
            if placeholders(text) or "{{" in text:
                self.add(f"{path}.text", "a footer has no placeholders")
        return out

    def buttons(self, path: str, raw: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "BUTTONS", "buttons": []}
        buttons = raw.get("buttons")
        if not isinstance(buttons, list) or not buttons:
            self.add(f"{path}.buttons", "give a list of 1 to 10 buttons")
            return out
        if len(buttons) > MAX_BUTTONS:
            self.add(f"{path}.buttons", f"{len(buttons)} buttons; at most {MAX_BUTTONS} allowed")
            return out
        counts: dict[str, int] = {}
        for i, button in enumerate(buttons):
            bpath = f"{path}.buttons.{i}"
            if not isinstance(button, Mapping):
                self.add(bpath, "must be an object")
                continue
            kind_raw = button.get("type")
            kind = kind_raw.upper() if isinstance(kind_raw, str) else None
            if kind not in _BUTTON_FIELDS:
                self.add(
                    f"{bpath}.type",
                    "must be one of QUICK_REPLY, URL, PHONE_NUMBER, COPY_CODE, OTP",
                )
                continue
            counts[kind] = counts.get(kind, 0) + 1
            self.fields(bpath, button, _BUTTON_FIELDS[kind])
            out["buttons"].append(self.button(bpath, kind, button))
        for kind, limit in _BUTTON_LIMITS.items():
            if counts.get(kind, 0) > limit:
                self.add(f"{path}.buttons", f"at most {limit} {kind} button(s)")
        if self.auth and (len(buttons) != 1 or counts.get("OTP") != 1):
            self.add(f"{path}.buttons", "authentication templates have exactly one OTP button")
        return out

    def button(self, path: str, kind: str, raw: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"type": kind}
        if kind == "OTP":
            if not self.auth:
                self.add(f"{path}.type", "OTP buttons belong to authentication templates")
            otp = _enum(OtpType, raw.get("otp_type"))
            if otp is None:
                self.add(f"{path}.otp_type", f"must be one of {_choices(OtpType)}")
                return out
            out["otp_type"] = otp.value
            for key in ("text", "autofill_text"):
                value = self.text(f"{path}.{key}", raw.get(key), BUTTON_TEXT_MAX, required=False)
                if value is not None:
                    out[key] = value
            if otp is not OtpType.COPY_CODE:
                package = raw.get("package_name")
                if not (
                    isinstance(package, str) and len(package) <= 224 and _PACKAGE.fullmatch(package)
                ):
                    self.add(
                        f"{path}.package_name", f"a {otp.value} button needs the app's package name"
                    )
                else:
                    out["package_name"] = package
                signature = raw.get("signature_hash")
                if not (isinstance(signature, str) and _SIGNATURE_HASH.fullmatch(signature)):
                    self.add(
                        f"{path}.signature_hash", "must be the app's 11-character signature hash"
                    )
                else:
                    out["signature_hash"] = signature
            else:
                for key in ("package_name", "signature_hash"):
                    self.absent(path, raw, key, "only ONE_TAP and ZERO_TAP buttons name an app")
            return out
        if self.auth:
            self.add(f"{path}.type", "authentication templates have only an OTP button")
        if kind == "COPY_CODE":
            example = raw.get("example")
            if not (
                isinstance(example, str)
                and 0 < len(example) <= COPY_CODE_MAX
                and not any(c.isspace() for c in example)
            ):
                self.add(
                    f"{path}.example",
                    f"give a sample code of 1 to {COPY_CODE_MAX} characters without spaces",
                )
            else:
                out["example"] = example
            return out
        text = self.text(f"{path}.text", raw.get("text"), BUTTON_TEXT_MAX, newlines=False)
        if text is not None:
            out["text"] = text
            if "{{" in text or "}}" in text:
                self.add(f"{path}.text", "button texts have no placeholders")
        if kind == "PHONE_NUMBER":
            phone = raw.get("phone_number")
            if not (isinstance(phone, str) and _PHONE.fullmatch(phone)):
                self.add(
                    f"{path}.phone_number",
                    "an international number of 6 to 20 digits, e.g. +4930123456",
                )
            else:
                out["phone_number"] = phone
        elif kind == "URL":
            out.update(self.url(path, raw))
        return out

    def url(self, path: str, raw: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        url = self.text(f"{path}.url", raw.get("url"), URL_MAX, newlines=False)
        if url is None:
            return out
        out["url"] = url
        names = self.names(f"{path}.url", url, ParameterFormat.POSITIONAL)
        if names is None:
            return out
        if len(placeholders(url)) > 1:
            self.add(f"{path}.url", "a URL has at most one placeholder, {{1}}")
            return out
        if names and not url.endswith("{{1}}"):
            self.add(f"{path}.url", "the placeholder {{1}} must be at the end of the URL")
            return out
        parts = urlsplit(url.replace("{{1}}", "x"))
        if parts.scheme not in ("http", "https") or not parts.netloc or " " in url:
            self.add(f"{path}.url", "must be an absolute http(s) URL")
        example = raw.get("example")
        if not names:
            if example is not None:
                self.add(f"{path}.example", "the URL has no placeholder to give an example for")
            return out
        if not (
            isinstance(example, list)
            and len(example) == 1
            and isinstance(example[0], str)
            and example[0].strip()
        ):
            self.add(f"{path}.example", "give a list with one example value for {{1}}")
        else:
            out["example"] = example
        return out


def _repeated(names: list[str]) -> set[str]:
    return {n for n in names if names.count(n) > 1}


def _enum(enum: type[Any], value: Any) -> Any:
    if not isinstance(value, str):
        return None
    try:
        return enum(value.upper())
    except ValueError:
        return None


def validate_submission(raw: Any) -> TemplateSubmission:
    """The template in ``raw`` (parsed JSON), checked; raises :class:`InvalidTemplate` naming
    every problem (``field`` is the JSON path, e.g. ``components.1.example.body_text``)."""
    if not isinstance(raw, Mapping):
        raise InvalidTemplate([Problem("body", "must be a JSON object")])
    category = _enum(TemplateCategory, raw.get("category"))
    fmt_raw = raw.get("parameter_format")
    fmt = ParameterFormat.POSITIONAL if fmt_raw is None else _enum(ParameterFormat, fmt_raw)
    check = _Checker(category, fmt or ParameterFormat.POSITIONAL)
    for key in raw:
        if key not in _TOP_FIELDS:
            check.add(key, "unknown field")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        check.add("name", f"1 to {NAME_MAX} characters of a-z, 0-9 and _")
    language = raw.get("language")
    if not isinstance(language, str) or not _LANGUAGE.fullmatch(language):
        check.add("language", "a language code such as en, de, en_US or pt_BR")
    if category is None:
        check.add("category", f"must be one of {_choices(TemplateCategory)}")
    if fmt is None:
        check.add("parameter_format", f"must be one of {_choices(ParameterFormat)}")
    allow = raw.get("allow_category_change")
    if allow is not None and not isinstance(allow, bool):
        check.add("allow_category_change", "must be true or false")

    components = raw.get("components")
    normalized: list[dict[str, Any]] = []
    if not isinstance(components, list) or not components:
        check.add("components", "give a list of components with at least a BODY")
    else:
        seen: set[str] = set()
        for i, component in enumerate(components):
            path = f"components.{i}"
            if not isinstance(component, Mapping):
                check.add(path, "must be an object")
                continue
            kind_raw = component.get("type")
            kind = kind_raw.upper() if isinstance(kind_raw, str) else None
            if kind not in _COMPONENT_FIELDS:
                check.add(f"{path}.type", "must be one of HEADER, BODY, FOOTER, BUTTONS")
                continue
            if kind in seen:
                check.add(f"{path}.type", f"a template has only one {kind} component")
                continue
            seen.add(kind)
            check.fields(path, component, _COMPONENT_FIELDS[kind])
            if kind == "HEADER":
                normalized.append(check.header(path, component))
            elif kind == "BODY":
                normalized.append(check.body(path, component))
            elif kind == "FOOTER":
                normalized.append(check.footer(path, component))
            else:
                normalized.append(check.buttons(path, component))
        if "BODY" not in seen:
            check.add("components", "a BODY component is required")
        if check.auth and "BUTTONS" not in seen:
            check.add(
                "components", "authentication templates need a BUTTONS component with an OTP button"
            )
    if check.problems:
        raise InvalidTemplate(check.problems)
    assert isinstance(name, str)
    assert isinstance(language, str)
    assert category is not None
    assert fmt is not None
    return TemplateSubmission(
        name=name,
        language=language,
        category=category,
        parameter_format=fmt,
        components=msgspec.convert(normalized, list[AnyComponent]),
    )
