"""Logging, metrics and tracing set-up shared by every function.

Every handler is wrapped the same way (``@with_observability`` or
``Observability.instrument``): Powertools ``Logger`` with the Lambda context,
``Metrics`` flushed as EMF at the end of the invocation, ``Tracer`` around the
handler, and one correlation id per invocation on every log line.

The correlation id is taken from the request (``x-correlation-id``), from the
workflow input (``correlationId``), from API Gateway's request id, or is
generated, in that order; a handler reads it with ``current_correlation_id()``
so its error responses can carry it (``BreakwaterError.to_response``).

No JWT or secret ever reaches a log line: the logger's formatter redacts the
fully assembled record (message, extra keys, appended keys, exception text)
just before it is serialised, which is the only point that sees all of them.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import uuid
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.logging.types import LogRecord
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

__all__ = [
    "CORRELATION_HEADER",
    "CORRELATION_ID_KEY",
    "REDACTED",
    "WORKFLOW_CORRELATION_FIELD",
    "Observability",
    "RedactingFormatter",
    "current_correlation_id",
    "default_observability",
    "extract_correlation_id",
    "instrument",
    "is_sensitive_key",
    "redact",
    "redact_text",
    "setup_observability",
    "with_observability",
]

#: A Lambda handler: (event, context) -> result.
type Handler[R] = Callable[[Any, Any], R]

CORRELATION_HEADER: Final = "x-correlation-id"
WORKFLOW_CORRELATION_FIELD: Final = "correlationId"
#: The log key Powertools' ``set_correlation_id`` writes.
CORRELATION_ID_KEY: Final = "correlation_id"
REDACTED: Final = "[REDACTED]"

# --------------------------------------------------------------------------- redaction

# Every pattern below runs on every log line, including text a caller controls, so each
# is linear: matching starts only where a run of token characters starts (lookbehind),
# and runs are consumed possessively (no backtracking into them). A naive "key somewhere
# in a word" pattern took over a minute on a 40 KB line of "a-a-a-...".
#
# A JWT (JWS or JWE): a base64url JSON header, which always starts with "eyJ" ('{"'),
# then two or more dot-separated base64url segments (the signature may be empty, alg
# "none"). The whole dotted run is redacted when its first segment contains "eyJ"
# anywhere, so a JWT glued to other characters is caught too (over-redaction is harmless).
_B64 = r"[A-Za-z0-9_-]"
_JWT = re.compile(rf"(?<!{_B64})(?={_B64}*?eyJ){_B64}++(?:\.{_B64}*+){{2,}}")
# "Bearer <token>" / "Basic <credentials>" wherever it appears (headers dumped as text, curl lines).
_AUTH_SCHEME = re.compile(r"(?i)(?<![\w-])(bearer|basic)(\s++)[A-Za-z0-9\-._~+/]++=*+")
# key=value / key: value / "key": "value" for a sensitive key name in free text; this is what
# catches "?token=...", "&access_token=...", "password=..." and JSON fragments inside a message.
_SENSITIVE_FRAGMENT = (
    r"token|secret|passw(?:or)?d|authorization|signing[_-]?key|jwt|api[_-]?key|private[_-]?key|credential|cookie"
)
_KEY_VALUE = re.compile(
    r"(?i)(?<![\w.-])(?P<key>(?=[\w.-]*?(?:" + _SENSITIVE_FRAGMENT + r"))[\w.-]++)"
    r"(?P<sep>[\"']?\s*+[:=]\s*+[\"']?)"
    r"(?P<value>(?:(?:bearer|basic)\s++)?[^\s\"'&,;#]++)"
)
# Key names are compared with separators removed, so signing_key, signingKey and
# Signing-Key are one name.
_SENSITIVE_KEY_PARTS: Final = (
    "token",
    "secret",
    "password",
    "passwd",
    "authorization",
    "signingkey",
    "jwt",
    "apikey",
    "privatekey",
    "credential",
    "cookie",
)
_KEY_SEPARATORS = re.compile(r"[\s_.-]")


def is_sensitive_key(key: str) -> bool:
    """Whether a structured field of this name may hold a secret (case and separators ignored)."""
    normalized = _KEY_SEPARATORS.sub("", key.lower())
    return any(part in normalized for part in _SENSITIVE_KEY_PARTS)


#: A PEM private key block; linear: no nested quantifiers, bounded body alphabet.
_PEM_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[A-Za-z0-9+/=\s\\n]*+(?:-----END [A-Z ]*PRIVATE KEY-----)?"
)


def redact_text(text: str) -> str:
    """``text`` with JWTs, PEM private keys, Bearer/Basic credentials and sensitive key=value pairs replaced."""
    text = _PEM_PRIVATE_KEY.sub(REDACTED, text)
    text = _JWT.sub(REDACTED, text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return _KEY_VALUE.sub(lambda m: f"{m.group('key')}{m.group('sep')}{REDACTED}", text)


def redact(value: object) -> object:
    """A JSON-ready copy of ``value`` with secrets removed, at any depth.

    Values under a sensitive key are replaced whole, whatever their type, except
    ``None`` and booleans, which cannot carry a secret and say useful things
    ("token_present": false). Numbers are redacted too: a PIN is a number, and a
    log field that must stay readable should not be named like a secret.
    Objects the JSON encoder would ``str()`` are converted here first, so an
    exception carrying a token in its message is redacted like any string.
    """
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        redacted: dict[str, object] = {}
        for key, item in value.items():
            name = str(key)
            if is_sensitive_key(name) and item is not None and not isinstance(item, bool):
                redacted[name] = REDACTED
            else:
                redacted[name] = redact(item)
        return redacted
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(item) for item in value]
    if isinstance(value, bytes | bytearray):
        return redact_text(bytes(value).decode("utf-8", errors="replace"))
    return redact_text(str(value))


class RedactingFormatter(LambdaPowertoolsFormatter):
    """The Powertools JSON formatter, redacting the whole record before it is serialised.

    ``serialize`` receives the final dict (message, extras, appended and
    thread-local keys, exception text and stack trace), so nothing added by any
    path can bypass it; a ``logging.Filter`` would only see the record's own
    message and extras, not the keys held by the formatter.
    """

    def serialize(self, log: LogRecord) -> str:
        return super().serialize(redact(log))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- correlation id

# Only ids of a safe shape are taken from a caller: a header value goes on every log
# line, so newlines, quotes or a megabyte of text would be log injection.
_VALID_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}")

_current_correlation_id: ContextVar[str | None] = ContextVar("breakwater_correlation_id", default=None)


def _valid_id(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value if _VALID_ID.fullmatch(value) else None


def _header(event: Mapping[str, Any], name: str) -> str | None:
    headers = event.get("headers")
    if isinstance(headers, Mapping):
        for key, value in headers.items():
            if isinstance(key, str) and key.lower() == name and (found := _valid_id(value)):
                return found
    multi = event.get("multiValueHeaders")
    if isinstance(multi, Mapping):
        for key, values in multi.items():
            if isinstance(key, str) and key.lower() == name and isinstance(values, list):
                for value in values:
                    if found := _valid_id(value):
                        return found
    return None


def extract_correlation_id(event: object) -> str | None:
    """The correlation id carried by ``event``, or ``None`` when it carries none.

    Order: the ``x-correlation-id`` request header (any case, ``headers`` or
    ``multiValueHeaders``), the workflow input field ``correlationId``, then
    API Gateway's ``requestContext.requestId``. Values of an unsafe shape are
    skipped, falling through to the next source.
    """
    if not isinstance(event, Mapping):
        return None
    if found := _header(event, CORRELATION_HEADER):
        return found
    if found := _valid_id(event.get(WORKFLOW_CORRELATION_FIELD)):
        return found
    request_context = event.get("requestContext")
    if isinstance(request_context, Mapping):
        return _valid_id(request_context.get("requestId"))
    return None


def current_correlation_id() -> str | None:
    """The correlation id of the invocation running in this thread, ``None`` outside one."""
    return _current_correlation_id.get()


def _new_id() -> str:
    return str(uuid.uuid4())


# --------------------------------------------------------------------------- set-up


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on", "y", "t"}


def instrument[R](
    logger: Logger,
    metrics: Metrics,
    tracer: Tracer,
    *,
    id_factory: Callable[[], str] = _new_id,
    capture_cold_start_metric: bool = True,
) -> Callable[[Handler[R]], Handler[R]]:
    """A decorator giving a Lambda handler the shared logging, metrics and tracing.

    The correlation id is set outermost, so lines written by the Powertools
    decorators themselves (and the metrics flush) carry it too.
    """

    def decorator(handler: Handler[R]) -> Handler[R]:
        @functools.wraps(handler)
        def annotated(event: Any, context: Any) -> R:
            correlation_id = _current_correlation_id.get()
            if correlation_id is not None:
                # Searchable in X-Ray and CloudWatch next to the log lines; no-ops when disabled.
                tracer.put_annotation(key=CORRELATION_ID_KEY, value=correlation_id)
                metrics.add_metadata(key=WORKFLOW_CORRELATION_FIELD, value=correlation_id)
            return handler(event, context)

        powertools_wrapped: Handler[R] = logger.inject_lambda_context(
            metrics.log_metrics(
                tracer.capture_lambda_handler(annotated),
                capture_cold_start_metric=capture_cold_start_metric,
            )
        )

        @functools.wraps(handler)
        def wrapper(event: Any, context: Any) -> R:
            correlation_id = extract_correlation_id(event) or id_factory()
            token = _current_correlation_id.set(correlation_id)
            # Process-wide key for threads the handler starts, plus a thread-local key that
            # wins over it: the offline runtime runs several handlers concurrently in one
            # process, sharing this logger, and each line must carry its own invocation's id.
            previous_local = logger.thread_safe_get_current_keys().get(CORRELATION_ID_KEY)
            logger.set_correlation_id(correlation_id)
            logger.thread_safe_append_keys(correlation_id=correlation_id)
            try:
                return powertools_wrapped(event, context)
            finally:
                if previous_local is None:
                    logger.thread_safe_remove_keys([CORRELATION_ID_KEY])
                else:
                    logger.thread_safe_append_keys(correlation_id=previous_local)
                _current_correlation_id.reset(token)

        return wrapper

    return decorator


def _new_formatter() -> RedactingFormatter:
    # UTC ISO-8601 timestamps: lines from several functions (and the offline runtime's
    # traces) line up without knowing each sandbox's local time zone.
    return RedactingFormatter(utc=True, use_rfc3339=True)


def _install_redaction(logger: Logger) -> None:
    """Make sure the handler's formatter redacts, even if the logger was configured elsewhere first.

    Powertools configures a named logger once per process; a plain ``Logger()``
    created earlier for the same service would otherwise keep a formatter that
    lets tokens through. Its keys (service, appended keys) are carried over.
    """
    current = logger.registered_formatter
    if isinstance(current, RedactingFormatter):
        return
    replacement = _new_formatter()
    replacement.append_keys(**current.get_current_keys())
    logger.registered_handler.setFormatter(replacement)


@dataclass(frozen=True)
class Observability:
    """The three Powertools utilities of one function, and the decorator that applies them."""

    logger: Logger
    metrics: Metrics
    tracer: Tracer
    id_factory: Callable[[], str] = field(default=_new_id)

    def instrument[R](self, handler: Handler[R]) -> Handler[R]:
        return instrument(self.logger, self.metrics, self.tracer, id_factory=self.id_factory)(handler)


def setup_observability(
    env: Mapping[str, str] | None = None,
    *,
    logger_handler: logging.Handler | None = None,
    id_factory: Callable[[], str] = _new_id,
) -> Observability:
    """Logger, Metrics and Tracer configured from ``env`` (the function's environment by default).

    ``POWERTOOLS_SERVICE_NAME``, ``POWERTOOLS_LOG_LEVEL``,
    ``POWERTOOLS_METRICS_NAMESPACE`` and ``POWERTOOLS_TRACE_DISABLED`` are read
    from ``env`` and passed explicitly, so a test's mapping wins over the process.

    Powertools configures a named logger once per process: a second call for the
    same service shares the first one's handler (``logger_handler`` is then
    ignored) but still gets the redacting formatter.
    """
    env = os.environ if env is None else env
    service = env.get("POWERTOOLS_SERVICE_NAME") or "breakwater"
    logger = Logger(
        service=service,
        level=env.get("POWERTOOLS_LOG_LEVEL") or None,
        logger_handler=logger_handler,
        logger_formatter=_new_formatter(),
    )
    _install_redaction(logger)
    namespace = env.get("POWERTOOLS_METRICS_NAMESPACE") or None
    # Its own metric set, not Powertools' class-level one: one Observability per function
    # sandbox already shares one set across its modules, and where several functions
    # share a process (the offline runtime) one handler's flush must not emit another's
    # metrics, or emit them without their correlation id.
    provider = AmazonCloudWatchEMFProvider(
        namespace=namespace, service=service, metric_set={}, dimension_set={}, metadata_set={}, default_dimensions={}
    )
    metrics = Metrics(service=service, namespace=namespace, provider=provider)
    # Only an explicit "disabled" is passed: None lets Powertools disable tracing by itself
    # outside Lambda (no X-Ray daemon), where forcing it on would fail every segment.
    tracer = Tracer(service=service, disabled=True if _truthy(env.get("POWERTOOLS_TRACE_DISABLED")) else None)
    return Observability(logger=logger, metrics=metrics, tracer=tracer, id_factory=id_factory)


_default: Observability | None = None


def default_observability() -> Observability:
    """The process's shared set-up, built from the environment on first use."""
    global _default
    if _default is None:
        _default = setup_observability()
    return _default


def with_observability[R](handler: Handler[R]) -> Handler[R]:
    """Decorate a Lambda handler with the shared set-up: ``@with_observability``."""
    return default_observability().instrument(handler)
