"""The JWS Compact Serialization (RFC 7515 §7.1, RFC 7519 §7.2), read strictly.

Every token is parsed here, before any key is looked up or any signature
computed, and nothing else parses a token: one parser, so no two readings of
the same bytes can disagree. PyJWT (2.15) has grown strict about the
alphabet and canonical encoding, but still accepts ``=`` padding (for AWS ALB),
reads header and payload with ``json.loads(bytes)`` — the last of two
duplicate members wins, ``NaN``/``Infinity`` are numbers, UTF-16 and UTF-32
are guessed — and older versions dropped characters outside the alphabet, so
a forged token could be read differently from the one that was signed. Its
decoder is therefore not used on tokens at all (its algorithm objects still do
the cryptography).

Here a token is refused (:class:`TokenInvalidError`, a fixed phrase that never
quotes the token) unless:

* it is at most ``max_bytes`` long (checked first, so an oversized token costs
  nothing to refuse);
* it is exactly three segments (a JWE's five and a two-part token refused),
  each only ``[A-Za-z0-9_-]`` (no ``=`` padding, no ``+``/``/``, no whitespace,
  no empty header or payload — an empty signature is left to the algorithm
  check, so ``alg: none`` is refused for what it is);
* each segment is *canonical* base64url: a length ≡ 1 (mod 4) and set trailing
  bits are refused (RFC 7515 App. C; otherwise several strings decode to the
  same bytes and a token could be varied without breaking its signature);
* header and payload are UTF-8 JSON objects (RFC 7515 §5.2 step 4, RFC 7519
  §7.2 steps 3 and 10), with no duplicate member names at any depth (RFC 7515
  §5.2 and RFC 7519 §4 let a parser reject them; a strict one must) and no
  ``NaN``/``Infinity`` (not JSON, RFC 8259 §6);
* the header is one breakwater can honour: ``alg`` a string, ``kid`` if present
  a non-empty string, ``typ`` if present ``JWT`` or ``at+jwt`` (RFC 7519 §5.1,
  RFC 9068; Cognito sends none), no ``crit`` (RFC 7515 §4.1.11: any critical
  extension must be understood — breakwater understands none), no ``cty``
  (nested JWTs are not accepted), and no key-bearing parameter (``jwk``,
  ``jku``, ``x5u``, ``x5c``: the verification key never comes from the token).

Which ``alg`` goes with which key, the signature and the claims are
:mod:`resilience.tokens`' to check.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any, NoReturn

from resilience.errors import TokenInvalidError

__all__ = ["DEFAULT_MAX_TOKEN_BYTES", "CompactJws", "b64url_decode", "parse_compact"]

#: See ``MaxTokenBytes`` in the template for why 8 KiB.
DEFAULT_MAX_TOKEN_BYTES = 8192
_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
_TYPES = frozenset({"jwt", "at+jwt", "application/jwt", "application/at+jwt"})
#: Header parameters that would take the key from the token (RFC 7515 §4.1.2-4.1.6), or that we do not implement.
_REFUSED_HEADERS = {
    "jwk": "embedded key not accepted",
    "jku": "embedded key not accepted",
    "x5u": "embedded key not accepted",
    "x5c": "embedded key not accepted",
    "crit": "critical header not understood",
    "cty": "nested token not accepted",
    "b64": "unencoded payload not accepted",
    "enc": "encrypted token not accepted",
    "zip": "encrypted token not accepted",
}


@dataclass(frozen=True, slots=True)
class CompactJws:
    """A token that passed the syntax checks: nothing in it is verified yet."""

    header: dict[str, Any]
    claims: dict[str, Any]
    #: ``ASCII(BASE64URL(header) || '.' || BASE64URL(payload))``, what the signature covers.
    signing_input: bytes = field(repr=False)
    signature: bytes = field(repr=False)

    @property
    def alg(self) -> str:
        alg: str = self.header["alg"]
        return alg

    @property
    def kid(self) -> str | None:
        kid: str | None = self.header.get("kid")
        return kid


def b64url_decode(segment: str) -> bytes:
    """One base64url segment without padding, canonical only (RFC 7515 §2 and App. C)."""
    if not _SEGMENT.fullmatch(segment):
        raise TokenInvalidError("malformed token: not base64url")
    if len(segment) % 4 == 1:
        raise TokenInvalidError("malformed token: not canonical base64url")
    try:
        data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TokenInvalidError("malformed token: not base64url") from exc
    # Trailing bits set in the last character decode to the same bytes; re-encoding tells.
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii") != segment:
        raise TokenInvalidError("malformed token: not canonical base64url")
    return data


class _DuplicateMemberError(ValueError):
    pass


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members: dict[str, Any] = {}
    for name, value in pairs:
        if name in members:
            raise _DuplicateMemberError
        members[name] = value
    return members


def _not_json(constant: str) -> NoReturn:
    raise ValueError("NaN and Infinity are not JSON")


def _json_object(segment: str, what: str) -> dict[str, Any]:
    data = b64url_decode(segment)
    try:
        # bytes.decode, not json.loads(bytes): json.loads would also guess UTF-16 and UTF-32.
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TokenInvalidError(f"malformed token: {what} is not UTF-8") from exc
    try:
        value = json.loads(text, object_pairs_hook=_unique_members, parse_constant=_not_json)
    except _DuplicateMemberError as exc:
        raise TokenInvalidError(f"malformed token: duplicate member in {what}") from exc
    except (ValueError, RecursionError) as exc:
        raise TokenInvalidError(f"malformed token: {what} is not JSON") from exc
    if not isinstance(value, dict):
        raise TokenInvalidError(f"malformed token: {what} is not a JSON object")
    return value


def _check_header(header: dict[str, Any]) -> None:
    for name, reason in _REFUSED_HEADERS.items():
        if name in header:
            raise TokenInvalidError(reason)
    if not isinstance(header.get("alg"), str):
        raise TokenInvalidError("malformed token: no algorithm")
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid):
        raise TokenInvalidError("malformed token: key id is not a string")
    typ = header.get("typ")
    # RFC 7515 §4.1.9: media types compare case-insensitively, "application/" may be omitted.
    if typ is not None and (not isinstance(typ, str) or typ.casefold() not in _TYPES):
        raise TokenInvalidError("wrong token type")


def parse_compact(raw: object, *, max_bytes: int = DEFAULT_MAX_TOKEN_BYTES) -> CompactJws:
    """``raw`` as a compact JWS, or TokenInvalidError saying which rule it broke."""
    if not isinstance(raw, str) or not raw:
        raise TokenInvalidError("malformed token: not a string")
    if len(raw) > max_bytes:  # characters: anything non-ASCII is refused below anyway
        raise TokenInvalidError("malformed token: too large")
    parts = raw.split(".")
    if len(parts) != 3:
        raise TokenInvalidError("malformed token: not three segments")
    header_segment, payload_segment, signature_segment = parts
    if not header_segment or not payload_segment:
        raise TokenInvalidError("malformed token: empty segment")
    header = _json_object(header_segment, "header")
    claims = _json_object(payload_segment, "payload")
    signature = b64url_decode(signature_segment)
    _check_header(header)
    return CompactJws(
        header=header,
        claims=claims,
        signing_input=f"{header_segment}.{payload_segment}".encode("ascii"),
        signature=signature,
    )
