"""What a ``bw up --containers`` that died without stopping (``kill -9``, a crash) left behind.

Its ``sam local start-lambda`` runs in a session of its own (a Ctrl-C at the terminal must
reach ``bw`` first), so it outlives a killed ``bw``, and so do its warm containers, the
relay container and the stack's Docker network. Two marks name what an owner started:

* an owner record, ``<work>/owners/<network>.json``: the owner's pid and the start time
  of that process (a pid alone may be another process by now), the network, the relay,
  SAM's pid and start time; written while the stack starts, removed when it stops;
* Docker labels on the network and the relay (:func:`labels`): the same owner, so what a
  record no longer names (another folder's stack, a lost ``.bw``) is still found.

:func:`reap` removes what belongs to an owner that is gone: SAM's process group, every
container on the network, the network, the record. ``bw up`` reaps before it starts and
``bw down`` on demand; a live owner's stack is never touched. Only processes of this PID
namespace are judged (a pid of another namespace says nothing here).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "CONTAINERS_DIR",
    "OWNER_LABEL",
    "Owner",
    "labels",
    "owner_of_this_process",
    "process_started",
    "reap",
    "remove_record",
    "write_record",
]

#: ``bw up --containers``' own folder (its build, env file, SAM's log, the owner records).
CONTAINERS_DIR = Path(".bw") / "up-containers"
#: Label keys on the network and the relay container.
OWNER_LABEL = "bw.up.owner"
_STARTED_LABEL = "bw.up.owner-started"
_NAMESPACE_LABEL = "bw.up.pid-namespace"


def process_started(pid: int) -> str | None:
    """The process's start time (clock ticks since boot, /proc/PID/stat field 22); None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def _namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _alive(pid: int, started: str) -> bool:
    return pid > 0 and process_started(pid) == started


@dataclass
class Owner:
    """A stack's owner and what it started (one record per stack)."""

    pid: int
    started: str
    network: str
    relay: str = ""
    sam_pid: int = 0
    sam_started: str = ""

    @property
    def alive(self) -> bool:
        return _alive(self.pid, self.started)


def owner_of_this_process(network: str, relay: str) -> Owner:
    pid = os.getpid()
    return Owner(pid, process_started(pid) or "", network, relay)


def labels(owner: Owner) -> dict[str, str]:
    """Docker labels naming ``owner`` (for ``docker network create`` / ``docker run --label``)."""
    return {OWNER_LABEL: str(owner.pid), _STARTED_LABEL: owner.started, _NAMESPACE_LABEL: _namespace()}


def _record(work: Path, network: str) -> Path:
    return work / "owners" / f"{network}.json"


def write_record(work: Path, owner: Owner) -> Path:
    path = _record(work, owner.network)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(owner), indent=1), encoding="utf-8")
    return path


def remove_record(work: Path, network: str) -> None:
    _record(work, network).unlink(missing_ok=True)


def _docker(*args: str) -> list[str]:
    try:
        done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return done.stdout.split() if done.returncode == 0 else []


def _labelled_owners() -> list[Owner]:
    """Owners named by labels of Docker networks (this PID namespace's only)."""
    found: list[Owner] = []
    namespace = _namespace()
    for network in _docker("network", "ls", "-q", "--filter", f"label={OWNER_LABEL}"):
        shown = _docker(
            "network", "inspect", "-f",
            "{{.Name}} {{index .Labels \"" + OWNER_LABEL + "\"}} {{index .Labels \"" + _STARTED_LABEL + "\"}} "
            "{{index .Labels \"" + _NAMESPACE_LABEL + "\"}}",
            network,
        )  # fmt: skip
        if len(shown) == 4 and shown[3] == namespace and shown[1].isdigit():
            found.append(Owner(int(shown[1]), shown[2], shown[0]))
    return found


def _reap_owner(owner: Owner) -> list[str]:
    removed: list[str] = []
    if owner.sam_pid and _alive(owner.sam_pid, owner.sam_started):
        # Its own session (start_new_session): the group is SAM and whatever it started.
        try:
            os.killpg(owner.sam_pid, signal.SIGKILL)
            removed.append(f"process {owner.sam_pid} (sam local start-lambda)")
        except OSError:
            pass
    containers = _docker("ps", "-aq", "--filter", f"network={owner.network}")
    if owner.relay:
        containers += _docker("ps", "-aq", "--filter", f"name=^{owner.relay}$")
    containers = sorted(set(containers))
    if containers:
        _docker("rm", "-f", *containers)
        removed += [f"container {c}" for c in containers]
    if _docker("network", "rm", owner.network):
        removed.append(f"network {owner.network}")
    return removed


def reap(work: Path) -> list[str]:
    """Remove what every dead owner left (records under ``work``, labels in Docker); what was removed."""
    owners: dict[str, tuple[Owner, Path | None]] = {}
    for record in sorted((work / "owners").glob("*.json")) if (work / "owners").is_dir() else []:
        try:
            owner = Owner(**json.loads(record.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            continue
        owners[owner.network] = (owner, record)
    for owner in _labelled_owners():
        owners.setdefault(owner.network, (owner, None))
    removed: list[str] = []
    for owner, path in owners.values():
        if owner.alive:
            continue
        removed += _reap_owner(owner)
        if path is not None:
            path.unlink(missing_ok=True)
    return removed
