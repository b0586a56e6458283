"""AWS error responses as each service's wire protocol shapes them.

botocore parses an error by its service's protocol (a JSON ``__type``, a
rest-json ``x-amzn-ErrorType`` header, an XML ``<Error><Code>``); an error
the runtime makes up (an injected fault, an IAM denial, a quota) is written
in that same shape so the caller's SDK raises exactly what it raises on AWS.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from xml.sax.saxutils import escape

__all__ = ["error_response"]


def error_response(
    operation_model: Any, code: str, message: str, status: int, *, message_key: str = "message"
) -> tuple[int, dict[str, str], str]:
    """``(status, headers, body)`` of an error in the operation's protocol.

    ``message_key`` is the casing the service uses for the message member
    (DynamoDB and Step Functions write ``Message`` for AccessDeniedException).
    A HEAD request has no body on AWS: botocore then reports the status code
    as the error code ("403", "Forbidden").
    """
    protocol = operation_model.service_model.resolved_protocol
    request_id = str(uuid.uuid4())
    if operation_model.http.get("method") == "HEAD":
        return status, {"x-amz-request-id": request_id}, ""
    if protocol == "json":
        prefix = operation_model.service_model.metadata.get("targetPrefix", "")
        return (
            status,
            {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": request_id},
            json.dumps({"__type": f"{prefix}#{code}" if prefix else code, message_key: message}),
        )
    if protocol == "rest-json":
        return (
            status,
            {"Content-Type": "application/json", "x-amzn-ErrorType": code, "x-amzn-RequestId": request_id},
            json.dumps({message_key: message}),
        )
    text = escape(message)
    if protocol in ("query", "ec2"):
        return (
            status,
            {"Content-Type": "text/xml", "x-amzn-RequestId": request_id},
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{text}</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>",
        )
    return (
        status,
        {"Content-Type": "application/xml", "x-amz-request-id": request_id},
        f"<Error><Code>{code}</Code><Message>{text}</Message><RequestId>{request_id}</RequestId></Error>",
    )
