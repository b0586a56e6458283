"""Tenant validation and configuration from S3, in two phases (seed 000: fail closed).

1. The **mapping** object (``tenants/mapping.json``: tenant hint — a tenant id,
   a domain or an app client id — to tenant id) says which tenant a connection
   belongs to.
2. The tenant's **config** object (``tenants/<tenantId>/config.json``) says what
   the tenant allows; it must match ``schemas/tenant_config.json``.

Both objects are cached for ``BW_TENANT_CONFIG_CACHE_TTL`` (10 min) and served
stale for at most one more TTL while S3 is down. The *decision* — this hint is a
known, enabled tenant that admits this client — is cached for
``BW_TENANT_VALIDATION_CACHE_TTL`` (2 min), positive answers only, never stale.
Unknown, disabled or unverifiable (S3 down and nothing usable cached) tenants,
a token of another tenant, an anonymous listener where the tenant wants tokens,
and a config that is not valid JSON or does not match the schema are all a
:class:`TenantRejectedError` (403 TENANT_REJECTED) whose message says which.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

import jsonschema
from botocore.exceptions import BotoCoreError, ClientError

from resilience.cache import (
    CachePolicy,
    ResilientCache,
    tenant_config_policy,
    tenant_validation_policy,
)
from resilience.clients import error_code, translate_errors
from resilience.errors import BreakwaterError, DependencyUnavailableError, RetryableError, TenantRejectedError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["MAPPING_KEY", "TenantAdmission", "TenantDirectory", "config_key", "validate_config"]

MAPPING_KEY = "tenants/mapping.json"
_MAX_OBJECT_BYTES = 256 * 1024
_SCHEMA: dict[str, Any] = json.loads(
    resources.files("resilience").joinpath("schemas/tenant_config.json").read_text(encoding="utf-8")
)
_VALIDATOR = jsonschema.Draft7Validator(_SCHEMA)


def config_key(tenant_id: str) -> str:
    return f"tenants/{tenant_id}/config.json"


def validate_config(document: object) -> dict[str, Any]:
    """The config if it matches the schema; TenantRejectedError naming the first problem otherwise."""
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(document))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise TenantRejectedError(f"TENANT_CONFIG_INVALID: {where}: {error.message[:120]}")
    assert isinstance(document, dict)
    return document


@dataclass(frozen=True, slots=True)
class TenantAdmission:
    """A tenant that admits this connection, and the config the session needs."""

    tenant_id: str
    config: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        public = {k: self.config[k] for k in ("allowAnonymousListeners", "maxListenersPerSession") if k in self.config}
        return {"tenantId": self.tenant_id, "config": public}


class TenantDirectory:
    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        *,
        config_policy: CachePolicy | None = None,
        validation_policy: CachePolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self.objects: ResilientCache[str, Any] = ResilientCache(config_policy or tenant_config_policy(), clock=clock)
        self.decisions: ResilientCache[tuple[str, str | None, bool], TenantAdmission] = ResilientCache(
            validation_policy or tenant_validation_policy(), clock=clock
        )

    def admit(self, hint: str, *, token_tenant: str | None, anonymous: bool) -> TenantAdmission:
        """The tenant ``hint`` names, if it admits this client; TenantRejectedError otherwise."""
        key = (hint, token_tenant, anonymous)
        cached = self.decisions.get(key)
        if cached is not None:
            return cached
        admission = self._decide(hint, token_tenant=token_tenant, anonymous=anonymous)
        self.decisions.set(key, admission)
        return admission

    def _decide(self, hint: str, *, token_tenant: str | None, anonymous: bool) -> TenantAdmission:
        mapping = self._object(MAPPING_KEY)
        if not isinstance(mapping, dict):
            raise TenantRejectedError("TENANT_MAPPING_INVALID: the mapping is not an object")
        tenant_id = mapping.get(hint)
        if not isinstance(tenant_id, str):
            raise TenantRejectedError("unknown tenant")
        # A signed-in client belongs to exactly one tenant: a token that names none is
        # not admitted anywhere (it would otherwise be admitted to every tenant).
        if not anonymous and token_tenant is None:
            raise TenantRejectedError("the token names no tenant")
        if token_tenant is not None and token_tenant != tenant_id:
            raise TenantRejectedError("the token belongs to another tenant")
        config = validate_config(self._object(config_key(tenant_id)))
        if config["tenantId"] != tenant_id:
            raise TenantRejectedError("TENANT_CONFIG_INVALID: tenantId does not match its key")
        if not config["enabled"]:
            raise TenantRejectedError("tenant disabled")
        if anonymous and not config["allowAnonymousListeners"]:
            raise TenantRejectedError("the tenant does not admit anonymous listeners")
        return TenantAdmission(tenant_id=tenant_id, config=config)

    def _object(self, key: str) -> Any:
        try:
            found = self.objects.get_or_load(key, lambda: self._load(key))
        except TenantRejectedError:
            raise
        except BreakwaterError as exc:
            raise TenantRejectedError("the tenant cannot be verified right now") from exc
        if found is None:
            raise TenantRejectedError("unknown tenant")
        return found

    def _load(self, key: str) -> Any:
        try:
            with translate_errors("s3", "GetObject"):
                response = self._s3.get_object(Bucket=self._bucket, Key=key)
                # The body streams after the response: a read timeout there is S3 failing too.
                body = response["Body"].read(_MAX_OBJECT_BYTES + 1)
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                # A definitive "no such tenant": returned, not raised, so it is never
                # answered from a stale copy and the cache forgets the key (positive-only).
                return None
            # Access denied, a missing bucket: the deployment is broken, not the tenant.
            raise DependencyUnavailableError(f"s3.GetObject refused ({error_code(exc)})") from exc
        except BotoCoreError as exc:
            # A body cut short (IncompleteReadError) and the like: could not find out.
            raise RetryableError(f"s3.GetObject could not be read ({type(exc).__name__})") from exc
        if len(body) > _MAX_OBJECT_BYTES:
            raise TenantRejectedError(f"TENANT_CONFIG_INVALID: {key} is too large")
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep to parse
            raise TenantRejectedError(f"TENANT_CONFIG_INVALID: {key} is not JSON") from exc
