"""Revocation check and admission cost (issue 6; seed 000: blacklist check < 10 ms warm).

* warm: ``TokenBlacklist.check`` on cached "not revoked" answers, timed one by one
  with ``perf_counter_ns`` (target p99 < 50 µs), beside a plain ``dict`` lookup
  measured in the same run as the machine's reference;
* cold: the first check of a token id on the local runtime (moto DynamoDB GetItem);
* transitions per connect: state entries of one AuthorizeConnection execution for
  an anonymous listener and for a speaker (what Express bills is requests and
  duration, but transitions are what the trace shows and what grows with the design).

Prints, asserts nothing. Last line:
``warm_p50_us=… warm_p99_us=… cold_ms=… transitions_per_connect=…``.
"""

from __future__ import annotations

import gc
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "resilience")]

from local_runtime import LocalRuntime  # noqa: E402
from resilience.blacklist import TokenBlacklist  # noqa: E402
from resilience.cache import CachePolicy  # noqa: E402
from resilience.clients import Clients, ClientSettings  # noqa: E402

TOKENS = 1000
LOOKUPS = 200_000


def percentile(sorted_ns: list[int], fraction: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, round(fraction * (len(sorted_ns) - 1)))] / 1000.0


def timed(check: object, keys: list[str]) -> list[int]:
    clock, samples = time.perf_counter_ns, [0] * len(keys)
    gc.disable()
    try:
        for index, key in enumerate(keys):
            started = clock()
            check(key)  # type: ignore[operator]
            samples[index] = clock() - started
    finally:
        gc.enable()
    return sorted(samples)


def main() -> None:
    with LocalRuntime(ROOT / "template.yaml", data=ROOT / "events" / "local_data.yaml") as runtime:
        client = Clients(settings=ClientSettings(max_attempts=1)).dynamodb()
        policy = CachePolicy(name="blacklist", ttl_seconds=3600, max_items=TOKENS * 2)
        blacklist = TokenBlacklist(client, "TokenBlacklistTable", policy=policy)
        exp = time.time() + 3600
        ids = [f"jti-{n:05d}" for n in range(TOKENS)]
        cold: list[float] = []
        for jti in ids:
            started = time.perf_counter()
            blacklist.check(jti, exp)
            cold.append((time.perf_counter() - started) * 1000)

        listener = {
            "connectionId": "L1=", "role": "listener", "tenantHint": "acme", "sessionId": "s", "token": None,
            "sourceIp": "203.0.113.10", "correlationId": "bench", "connectedAt": 1795520000000,
            "expiresAt": 1795530800, "idleShard": "0",
        }  # fmt: skip
        speaker = {**listener, "connectionId": "S1=", "role": "speaker", "token": runtime.cognito_token()}
        listener_rows = len(runtime.run("AuthorizeConnection", listener).trace().rows)
        speaker_rows = len(runtime.run("AuthorizeConnection", speaker).trace().rows)

    # Warm hits touch neither DynamoDB nor moto: timed after the offline stack (and its
    # virtual clock) is gone, on the real clock, as in a Lambda container.
    rng = random.Random(0)
    order = [rng.choice(ids) for _ in range(LOOKUPS)]
    warm = timed(lambda jti: blacklist.check(jti, exp), order)
    plain = timed(dict.fromkeys(ids, False).get, order)
    cold.sort()
    print(f"{'check':<28}{'p50 µs':>10}{'p99 µs':>10}")
    print(f"{'TokenBlacklist (warm)':<28}{percentile(warm, 0.5):>10.3f}{percentile(warm, 0.99):>10.3f}")
    print(f"{'dict.get (reference)':<28}{percentile(plain, 0.5):>10.3f}{percentile(plain, 0.99):>10.3f}")
    print(f"cold check on the local runtime (moto GetItem): p50 {cold[len(cold) // 2]:.2f} ms")
    print(f"AuthorizeConnection state entries: anonymous listener {listener_rows}, speaker {speaker_rows}")
    ratio = percentile(warm, 0.99) / max(percentile(plain, 0.99), 1e-9)
    print(f"warm p99 / dict p99 = {ratio:.1f}")
    print(
        f"warm_p50_us={percentile(warm, 0.5):.3f} warm_p99_us={percentile(warm, 0.99):.3f} "
        f"cold_ms={cold[len(cold) // 2]:.2f} transitions_per_connect={speaker_rows}"
    )


if __name__ == "__main__":
    main()
