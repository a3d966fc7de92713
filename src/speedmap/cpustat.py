"""How much of the machine other processes used while we measured: wall and own CPU seconds of an
interval, and the share of the CPU capacity we may use (the CPUs of our affinity mask) that went to other
processes (Linux ``/proc/stat``). Used by training (each epoch, the speed probe) and by every benchmark run.

A wall-clock time taken while something else kept the cores busy is not comparable with one taken on a
quiet machine; ``other_share`` says whether that happened. Stolen time (``steal``: a hypervisor running
other guests) counts as used by others.

What counts as "ours": by default this process (and, with ``children``, its reaped children), so other
processes of the same job (e.g. other ``torchrun`` ranks) count as "other". A benchmark passes
``own_pids`` instead: those processes and all their descendants (the server it started, its client
processes, the browser) are ours, read from ``/proc/PID/stat``, reaped descendants included. A process
that leaves the tree during the interval (reparented, or exited unreaped by a parent in the tree) is
not counted, which can only make "other" look larger.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

CONTENDED_SHARE = 0.20  # above this share of the machine's CPU used by others, wall times are suspect
PROC_STAT = "/proc/stat"
_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class CpuSample:
    wall_s: float  # wall-clock seconds of the interval
    cpu_s: float  # CPU seconds of our processes (see CpuMeter)
    other_share: float | None  # CPU used by other processes / total CPU capacity, 0-1; None: unknown

    @property
    def contended(self) -> bool:
        return self.other_share is not None and self.other_share > CONTENDED_SHARE


def _our_cpus() -> frozenset[int] | None:
    """The CPUs this process may run on, where that is known (Linux's affinity mask)."""
    try:
        return frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def read_proc_stat(path: str = PROC_STAT, cpus: frozenset[int] | None = None) -> tuple[int, int] | None:
    """Jiffies since boot, (total, idle + iowait), of the CPUs in ``cpus`` (default: this process's affinity
    mask; all of them where the mask covers every CPU or is unknown); None where ``/proc/stat`` is unreadable.

    Only the CPUs we may run on count: a job pinned to some cores (``taskset``, a container's cpuset, one test
    worker per core) is not slowed by work on the others, and what it and its children use lies within them."""
    cpus = _our_cpus() if cpus is None else cpus
    total, idle, seen = 0, 0, set()
    try:
        with open(path, encoding="ascii") as f:
            lines = [ln.split() for ln in f if ln.startswith("cpu")]
        for head in lines[1:]:
            n = int(head[0][3:])
            seen.add(n)
            if cpus is None or n in cpus:
                v = [int(x) for x in head[1:9]]  # user nice system idle iowait irq softirq steal (guest is in user)
                total, idle = total + sum(v), idle + v[3] + v[4]
        if cpus is None or not seen or seen <= cpus:  # every CPU is ours: the summary line
            if lines[0][0] != "cpu":
                return None
            v = [int(x) for x in lines[0][1:9]]
            return sum(v), v[3] + v[4]
    except (OSError, ValueError, IndexError):
        return None
    return total, idle


def _processes() -> dict[int, tuple[int, int]]:
    """Every visible process: pid -> (parent pid, CPU jiffies of itself and its reaped children)."""
    out: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as f:
                rest = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid ... (man 5 proc)
            out[int(entry.name)] = (int(rest[1]), sum(int(x) for x in rest[11:15]))  # utime stime cutime cstime
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
    return out


def tree_jiffies(roots: Iterable[int]) -> int | None:
    """CPU jiffies used so far by ``roots`` and all their descendants (reaped ones included); None
    without a readable ``/proc``."""
    try:
        procs = _processes()
    except OSError:
        return None
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    seen: set[int] = set()
    todo = [p for p in roots if p in procs]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(children.get(pid, []))
    return sum(procs[p][1] for p in seen)


def listening_pids(port: int) -> list[int]:
    """The processes holding a TCP socket listening on ``port`` (a local server), where ``/proc`` lets us
    see them (our own user's processes); empty otherwise."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{cols[9]}]")
    if not inodes:
        return []
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                    pids.append(int(proc.name))
    return pids


def _own_cpu(children: bool) -> float:
    t = time.process_time()
    if children:
        ct = os.times()
        t += ct.children_user + ct.children_system
    return t


class CpuMeter:
    """Measure one interval: ``m = CpuMeter(); ...; s = m.stop()``, or ``with CpuMeter() as m: ...``
    then ``m.sample``. ``children``: also count CPU of child processes reaped during the interval
    (data-loader workers). ``own_pids``: instead, count these processes and all their descendants as
    ours (``[os.getpid()]``: this process and everything it started)."""

    def __init__(self, children: bool = False, own_pids: Sequence[int] | None = None) -> None:
        self.children = children
        self.own_pids = None if own_pids is None else list(own_pids)
        self.sample: CpuSample | None = None
        self._stat = read_proc_stat()
        self._cpu = self._own()
        self._wall = time.perf_counter()

    def _own(self) -> float | None:
        if self.own_pids is None:
            return _own_cpu(self.children)
        jiffies = tree_jiffies(self.own_pids)
        return None if jiffies is None else jiffies / _HZ

    def elapsed(self) -> float:
        return time.perf_counter() - self._wall

    def stop(self) -> CpuSample:
        wall = time.perf_counter() - self._wall
        end_cpu = self._own()
        cpu = None if end_cpu is None or self._cpu is None else max(end_cpu - self._cpu, 0.0)
        end = read_proc_stat()
        share = None
        if self._stat is not None and end is not None and end[0] > self._stat[0] and cpu is not None:
            total = (end[0] - self._stat[0]) / _HZ
            busy = total - (end[1] - self._stat[1]) / _HZ
            share = min(max((busy - cpu) / total, 0.0), 1.0)
        self.sample = CpuSample(wall, cpu or 0.0, share)
        return self.sample

    def __enter__(self) -> CpuMeter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
