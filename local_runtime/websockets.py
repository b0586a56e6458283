"""The WebSocket side of API Gateway, as the management API sees it.

moto's ``postToConnection`` accepts any connection id. AWS answers 410
``GoneException`` for a connection that is unknown or closed, and that
answer drives disconnect cleanup, so the runtime keeps a registry of
connections and records every message posted to each one: tests and the
demo read what every client received.

Under ``bw up`` a connection also has a *socket* (:class:`Socket`, the live
gateway's end of a real WebSocket, see :mod:`local_runtime.gateway`): a post
is sent on it, in the order posts were accepted, and ``deleteConnection``
closes it (which runs ``$disconnect``, as on AWS).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from local_runtime.limits import POST_TO_CONNECTION_MAX_BYTES

#: Frames the registry keeps per live (``bw up``) connection, newest last: a stack that runs
#: for hours must not hold every message it ever sent.
LIVE_FRAMES_KEPT = 1000

__all__ = ["Connection", "ConnectionGoneError", "ConnectionRegistry", "PayloadTooLargeError", "Socket"]


class Socket(Protocol):
    """A live client's end of the connection (never blocks: both calls hand over to the gateway)."""

    def send(self, data: bytes) -> None: ...

    def close(self, code: int, reason: str) -> None: ...


class ConnectionGoneError(Exception):
    """The connection is unknown or closed (API Gateway answers 410 GoneException)."""


class PayloadTooLargeError(Exception):
    """``Data`` is over the 128 KB message quota (API Gateway answers 413 PayloadTooLargeException)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"Message of {size} bytes exceeds the maximum message payload size of {limit} bytes")
        self.size = size
        self.limit = limit


@dataclass
class Connection:
    connection_id: str
    connected_at: float
    last_active_at: float
    source_ip: str = "127.0.0.1"
    user_agent: str = "bw-local"
    open: bool = True
    closed_at: float | None = None
    received: list[bytes] = field(default_factory=list)
    #: The real WebSocket under ``bw up``; None for a connection that exists only in the registry.
    socket: Socket | None = field(default=None, repr=False)

    def messages(self) -> list[Any]:
        """Received frames, JSON-decoded where they are JSON."""
        decoded: list[Any] = []
        for frame in self.received:
            try:
                decoded.append(json.loads(frame))
            except ValueError:
                decoded.append(frame.decode("utf-8", "replace"))
        return decoded


class ConnectionRegistry:
    """Open and closed WebSocket connections of the local stack."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._connections: dict[str, Connection] = {}

    def connect(
        self,
        connection_id: str,
        *,
        source_ip: str = "127.0.0.1",
        user_agent: str = "bw-local",
        socket: Socket | None = None,
        connected_at: float | None = None,
    ) -> Connection:
        now = self._clock() if connected_at is None else connected_at
        with self._lock:
            connection = Connection(
                connection_id,
                connected_at=now,
                last_active_at=now,
                source_ip=source_ip,
                user_agent=user_agent,
                socket=socket,
            )
            self._connections[connection_id] = connection
            return connection

    def touch(self, connection_id: str) -> None:
        """The client sent a frame: API Gateway updates lastActiveAt."""
        with self._lock:
            connection = self._open(connection_id)
            connection.last_active_at = self._clock()

    def disconnect(self, connection_id: str) -> None:
        """The client went away (or was closed); later posts get 410."""
        with self._lock:
            connection = self._connections.get(connection_id)
            if connection is not None and connection.open:
                connection.open = False
                connection.closed_at = self._clock()

    def post(self, connection_id: str, data: bytes) -> None:
        """``postToConnection``: 413 past the message quota, 410 for a gone connection."""
        if len(data) > POST_TO_CONNECTION_MAX_BYTES:
            raise PayloadTooLargeError(len(data), POST_TO_CONNECTION_MAX_BYTES)
        with self._lock:
            connection = self._open(connection_id)
            connection.received.append(bytes(data))
            if connection.socket is not None:
                # A live client keeps what it received; the registry only the latest frames.
                del connection.received[:-LIVE_FRAMES_KEPT]
                # Under the lock: concurrent posters' frames reach the socket in acceptance order.
                connection.socket.send(bytes(data))

    def get(self, connection_id: str) -> Connection:
        with self._lock:
            return self._open(connection_id)

    def delete(self, connection_id: str) -> None:
        """``deleteConnection``: closes an open connection, 410 for an unknown one."""
        with self._lock:
            connection = self._open(connection_id)
            connection.open = False
            connection.closed_at = self._clock()
            socket = connection.socket
        if socket is not None:
            # After every frame posted before it; the gateway then runs $disconnect.
            socket.close(1001, "Going away")

    def clear(self) -> None:
        """Forget every connection (a live stack's reset between tests)."""
        with self._lock:
            self._connections.clear()

    def find(self, connection_id: str) -> Connection | None:
        with self._lock:
            return self._connections.get(connection_id)

    def all(self) -> list[Connection]:
        with self._lock:
            return list(self._connections.values())

    def received(self, connection_id: str) -> list[Any]:
        connection = self.find(connection_id)
        return connection.messages() if connection else []

    def _open(self, connection_id: str) -> Connection:
        connection = self._connections.get(connection_id)
        if connection is None or not connection.open:
            raise ConnectionGoneError(connection_id)
        return connection
