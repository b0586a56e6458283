"""Put a point-in-time restore back into the stack's own table (docs/runbook.md, "table swap").

Usage::

    python tools/restore_table.py copy-back --from <restored table> --to <stack table> [--delete-extra]

A restore always creates a *new* table, and the stack's functions, IAM
policies, alarms and TTL settings all name the table CloudFormation made. So
rather than re-pointing the stack (a template change, a redeploy, a new table
without TTL or PITR), the restored items are written back into the stack's
table: every restored item is put (overwriting the corrupted one), and with
``--delete-extra`` every item of the stack's table that the restore does not
have — written after the restore time, i.e. by the incident — is deleted. The
table keeps its name, ARN, TTL, PITR, alarms and policies; nothing is
redeployed. Items written after the restore time by legitimate traffic are
lost with ``--delete-extra`` (that is the RPO) and kept without it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["CopyBack", "copy_back", "main"]


@dataclass(frozen=True, slots=True)
class CopyBack:
    """What a copy-back did."""

    written: int
    deleted: int


def _keys(client: Any, table: str) -> list[str]:
    schema = client.describe_table(TableName=table)["Table"]["KeySchema"]
    return [entry["AttributeName"] for entry in schema]


def _scan(client: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    # Strongly consistent: the copy must not miss an item the restore has just written.
    for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        items.extend(page.get("Items", []))
    return items


def copy_back(
    client: Any,
    *,
    source: str,
    target: str,
    delete_extra: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> CopyBack:
    """Write every item of ``source`` into ``target`` (and delete ``target``'s others if asked)."""
    keys = _keys(client, target)
    if keys != _keys(client, source):
        raise ValueError(f"{source} and {target} do not have the same key schema")
    restored = _scan(client, source)
    restored_keys = {tuple(sorted((name, repr(item[name])) for name in keys)) for item in restored}
    extra = []
    if delete_extra:
        for item in _scan(client, target):
            key = {name: item[name] for name in keys}
            if tuple(sorted((name, repr(value)) for name, value in key.items())) not in restored_keys:
                extra.append(key)
    with _Batch(client, target, sleep) as batch:
        for item in restored:
            batch.put(item)
        for key in extra:
            batch.delete(key)
    return CopyBack(written=len(restored), deleted=len(extra))


class _Batch:
    """BatchWriteItem in 25s, unprocessed items resent with a backoff."""

    def __init__(self, client: Any, table: str, sleep: Callable[[float], None]) -> None:
        self._client, self._table, self._sleep = client, table, sleep
        self._pending: list[dict[str, Any]] = []

    def __enter__(self) -> _Batch:
        return self

    def put(self, item: dict[str, Any]) -> None:
        self._add({"PutRequest": {"Item": item}})

    def delete(self, key: dict[str, Any]) -> None:
        self._add({"DeleteRequest": {"Key": key}})

    def _add(self, request: dict[str, Any]) -> None:
        self._pending.append(request)
        if len(self._pending) == 25:
            self._flush()

    def _flush(self) -> None:
        requests, self._pending = self._pending, []
        attempt = 0
        while requests:
            if attempt:
                self._sleep(min(5.0, 0.1 * 2**attempt))  # unprocessed items mean throttling: back off
            answer = self._client.batch_write_item(RequestItems={self._table: requests})
            requests = answer.get("UnprocessedItems", {}).get(self._table, [])
            attempt += 1

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self._flush()


def main(argv: Sequence[str] | None = None) -> int:
    import boto3

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    back = commands.add_parser("copy-back", help="write a restored table's items into the stack's table")
    back.add_argument("--from", dest="source", required=True)
    back.add_argument("--to", dest="target", required=True)
    back.add_argument("--delete-extra", action="store_true", help="delete items the restore does not have")
    args = parser.parse_args(argv)
    done = copy_back(boto3.client("dynamodb"), source=args.source, target=args.target, delete_extra=args.delete_extra)
    print(f"{done.written} items written to {args.target}, {done.deleted} deleted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
