"""AuthorizeConnection's "Validate tenant and load its config" step (seed 000: fail closed).

Input ``{"tenantHint", "tokenTenant", "role", "anonymous", "correlationId"}``;
output ``{"tenantId", "config"}`` — the part of the tenant's configuration the
session needs. ``TenantRejectedError`` (403) for an unknown, disabled or
unverifiable tenant, a token of another tenant, an anonymous listener the tenant
does not admit, or a config that does not match ``schemas/tenant_config.json``.
"""

from __future__ import annotations

import os
from typing import Any

from resilience.alarm_metrics import CacheMetrics
from resilience.clients import default_clients
from resilience.errors import TenantRejectedError
from resilience.health import function_memory_bytes
from resilience.inputs import require_object
from resilience.observability import default_observability, with_observability
from resilience.tenants import TenantDirectory

_observability = default_observability()
_logger, _metrics = _observability.logger, _observability.metrics
_directory = TenantDirectory(default_clients().s3(), os.environ["BW_CONFIG_BUCKET"])
_cache_metrics = CacheMetrics((_directory.objects, _directory.decisions), function_memory_bytes(os.environ) or 0)


@with_observability
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    event = require_object(event, "the step's input")  # ValidationError: a workflow bug, never retried
    hint, token_tenant = event.get("tenantHint"), event.get("tokenTenant")
    if not isinstance(hint, str) or not hint or (token_tenant is not None and not isinstance(token_tenant, str)):
        raise TenantRejectedError("no tenant named")
    try:
        admission = _directory.admit(hint, token_tenant=token_tenant, anonymous=event.get("anonymous") is True)
    except TenantRejectedError as error:
        _metrics.add_metric(name="TenantRejected", unit="Count", value=1)
        _logger.info("tenant rejected", extra={"reason": str(error)})
        raise
    finally:
        _cache_metrics.emit(_metrics)
    return admission.to_json()
