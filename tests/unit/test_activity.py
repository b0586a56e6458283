"""Activity writes are bounded; the idle index's shard is stable."""

from __future__ import annotations

import pytest

from resilience.activity import ActivityPolicy, ActivityRecorder, idle_cutoff_ms, idle_shard, should_touch, touch
from resilience.clients import Clients, ClientSettings

POLICY = ActivityPolicy(idle_timeout_seconds=120, touch_interval_seconds=30, shards=4)


def test_the_shard_is_stable_and_spread():
    shards = [idle_shard(f"C{n}=", 4) for n in range(1000)]

    assert shards == [idle_shard(f"C{n}=", 4) for n in range(1000)]  # not Python's salted hash()
    assert set(shards) == {"0", "1", "2", "3"}
    assert min(shards.count(s) for s in "0123") > 200


@pytest.mark.parametrize(("last", "now", "expected"), [(None, 0, True), (0, 29_999, False), (0, 30_000, True)])
def test_should_touch_at_most_once_per_interval(last, now, expected):
    assert should_touch(last, now, POLICY) is expected


def test_the_idle_cutoff_allows_for_unrecorded_activity():
    # A frame within 30 s of the stored time is not stored: only a stored time older than
    # timeout + interval proves 120 s of silence.
    assert idle_cutoff_ms(1_000_000, POLICY) == 1_000_000 - 150_000
    exact = ActivityPolicy(idle_timeout_seconds=120, touch_interval_seconds=0, shards=4)
    assert idle_cutoff_ms(1_000_000, exact) == 1_000_000 - 120_000  # every frame written: seed 001's threshold


def test_the_policy_comes_from_the_environment_with_seed_001_defaults():
    assert ActivityPolicy.from_env({}) == ActivityPolicy(idle_timeout_seconds=120, touch_interval_seconds=30, shards=4)
    custom = ActivityPolicy.from_env(
        {
            "CONNECTION_IDLE_TIMEOUT_SECONDS": "300",
            "BW_ACTIVITY_WRITE_INTERVAL_SECONDS": "10",
            "BW_IDLE_INDEX_SHARDS": "8",
        }
    )
    assert custom == ActivityPolicy(idle_timeout_seconds=300, touch_interval_seconds=10, shards=8)
    assert idle_cutoff_ms(1_000_000, custom) == 1_000_000 - 310_000


def test_a_policy_needs_positive_numbers():
    with pytest.raises(ValueError, match="shards"):
        ActivityPolicy(shards=0)


def _put(stack, connection_id: str, last_ms: int) -> None:
    stack.client("dynamodb").put_item(
        TableName="ConnectionsTable",
        Item={"connectionId": {"S": connection_id}, "lastActivityTime": {"N": str(last_ms)}, "idleShard": {"S": "0"}},
    )


def _last(stack, connection_id: str) -> int:
    item = stack.client("dynamodb").get_item(TableName="ConnectionsTable", Key={"connectionId": {"S": connection_id}})
    return int(item["Item"]["lastActivityTime"]["N"])


def test_touch_moves_the_time_only_past_the_interval_and_never_resurrects(stack):
    client = Clients(settings=ClientSettings(max_attempts=1)).dynamodb()
    _put(stack, "A=", 1_000_000)

    assert touch(client, "ConnectionsTable", "A=", 1_020_000, POLICY) == "recent"
    assert _last(stack, "A=") == 1_000_000
    assert touch(client, "ConnectionsTable", "A=", 1_030_000, POLICY) == "touched"
    assert _last(stack, "A=") == 1_030_000
    assert touch(client, "ConnectionsTable", "Gone=", 1_030_000, POLICY) == "gone"
    assert stack.items("ConnectionsTable") == [{"connectionId": "A=", "lastActivityTime": 1_030_000, "idleShard": "0"}]


def test_a_warm_container_does_not_ask_again_within_the_interval(stack, clock):
    recorder = ActivityRecorder(
        Clients(settings=ClientSettings(max_attempts=1)).dynamodb(), "ConnectionsTable", POLICY, clock=clock
    )
    _put(stack, "A=", 0)
    updates = stack.requests[("dynamodb", "UpdateItem")]

    assert recorder.touch("A=", 1_000_000) == "touched"
    assert [recorder.touch("A=", 1_000_000 + n * 1000) for n in range(1, 10)] == ["recent"] * 9
    clock.now += 31
    assert recorder.touch("A=", 1_031_000) == "touched"
    assert stack.requests[("dynamodb", "UpdateItem")] - updates == 2


def test_a_recent_write_by_another_container_is_remembered_only_until_it_is_an_interval_old(stack, clock):
    recorder = ActivityRecorder(
        Clients(settings=ClientSettings(max_attempts=1)).dynamodb(), "ConnectionsTable", POLICY, clock=clock
    )
    _put(stack, "A=", 980_000)  # written 20 s ago, elsewhere
    updates = stack.requests[("dynamodb", "UpdateItem")]

    assert recorder.touch("A=", 1_000_000) == "recent"
    clock.now += 9
    assert recorder.touch("A=", 1_009_000) == "recent"  # remembered: DynamoDB not asked
    assert stack.requests[("dynamodb", "UpdateItem")] - updates == 1
    clock.now += 1  # the stored time is now 30 s old: this frame must be stored, not skipped for 30 s more
    assert recorder.touch("A=", 1_010_000) == "touched"
    assert _last(stack, "A=") == 1_010_000
    assert stack.requests[("dynamodb", "UpdateItem")] - updates == 2


def test_a_connection_that_is_gone_is_not_remembered(stack, clock):
    recorder = ActivityRecorder(
        Clients(settings=ClientSettings(max_attempts=1)).dynamodb(), "ConnectionsTable", POLICY, clock=clock
    )

    assert recorder.touch("Gone=", 1_000_000) == "gone"
    _put(stack, "Gone=", 0)  # the same id stored again (ids are reused only in tests, but nothing is cached)
    assert recorder.touch("Gone=", 1_000_001) == "touched"
