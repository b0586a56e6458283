"""SigV4 verification for routes with ``AuthorizationType: AWS_IAM`` (the HTTP API's IAM authorizer).

API Gateway recomputes the caller's Signature Version 4 signature (service
``execute-api``) with the secret of the access key it names and refuses the request
(403 ``{"message":"Forbidden"}``) when the signature is missing, does not match, names
another region or service, carries a session token that is not the key's, or is dated
more than 5 minutes from now (AWS's tolerance for clock skew). botocore's own signer
recomputes it, on exactly the headers the caller listed in ``SignedHeaders``.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

__all__ = ["MAX_SKEW_SECONDS", "Caller", "Key", "verify"]

#: How far a request's X-Amz-Date may be from the server's clock.
MAX_SKEW_SECONDS = 300.0
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,"
    r"\s*SignedHeaders=(?P<signed>[a-z0-9;_.-]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


@dataclass(frozen=True)
class Key:
    """An access key the runtime knows: its secret, its session token, the principal it signs as."""

    secret: str
    token: str | None
    arn: str


@dataclass(frozen=True)
class Caller:
    access_key: str
    arn: str


def verify(
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    keys: Mapping[str, Key],
    region: str,
    now: float | Sequence[float],
    service: str = "execute-api",
) -> Caller | None:
    """The signing caller, or None when API Gateway's IAM authorizer would refuse the request.

    ``now`` may name several clocks the signature may be dated by (the stack's virtual
    time for clients in this process, the wall clock for clients outside it)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    match = _AUTHORIZATION.match(lowered.get("authorization", "").strip())
    if match is None or match["region"] != region or match["service"] != service:
        return None
    key = keys.get(match["key"])
    amz_date = lowered.get("x-amz-date", "")
    if key is None or not amz_date.startswith(match["date"]):
        return None
    try:
        signed_at = datetime.strptime(amz_date, SIGV4_TIMESTAMP).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None
    clocks = [now] if isinstance(now, int | float) else list(now)
    if all(abs(signed_at - clock) > MAX_SKEW_SECONDS for clock in clocks):
        return None
    if key.token is not None and lowered.get("x-amz-security-token") != key.token:
        return None
    signed = match["signed"].split(";")
    if "host" not in signed or any(name not in lowered for name in signed):
        return None
    request = AWSRequest(
        method=method,
        url=f"http://{lowered['host']}{target}",
        headers={name: lowered[name] for name in signed},
        data=body,
    )
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(match["key"], key.secret, key.token), service, region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if not hmac.compare_digest(expected, match["signature"]):
        return None
    return Caller(match["key"], key.arn)
