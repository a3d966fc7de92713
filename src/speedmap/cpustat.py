"""How much of the machine other processes used while we measured: wall and own CPU seconds of an
interval, and the share of all CPU capacity that went to other processes (Linux ``/proc/stat``).

A wall-clock time taken while something else kept the cores busy is not comparable with one taken on a
quiet machine; ``other_share`` says whether that happened. Stolen time (``steal``: a hypervisor running
other guests) counts as used by others. Other processes of the same job (e.g. other ``torchrun`` ranks)
also count as "other".
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from types import TracebackType

CONTENDED_SHARE = 0.20  # above this share of the machine's CPU used by others, wall times are suspect
PROC_STAT = "/proc/stat"
_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class CpuSample:
    wall_s: float  # wall-clock seconds of the interval
    cpu_s: float  # CPU seconds of this process (all threads, plus reaped children if asked)
    other_share: float | None  # CPU used by other processes / total CPU capacity, 0-1; None: unknown


def read_proc_stat(path: str = PROC_STAT) -> tuple[int, int] | None:
    """All-CPU jiffies since boot: (total, idle + iowait); None where ``/proc/stat`` is unreadable."""
    try:
        with open(path, encoding="ascii") as f:
            head = f.readline().split()
        if head[0] != "cpu":
            return None
        v = [int(x) for x in head[1:9]]  # user nice system idle iowait irq softirq steal (guest is in user)
    except (OSError, ValueError, IndexError):
        return None
    return sum(v), v[3] + v[4]


def _own_cpu(children: bool) -> float:
    t = time.process_time()
    if children:
        ct = os.times()
        t += ct.children_user + ct.children_system
    return t


class CpuMeter:
    """Measure one interval: ``m = CpuMeter(); ...; s = m.stop()``, or ``with CpuMeter() as m: ...``
    then ``m.sample``. ``children``: also count CPU of child processes reaped during the interval
    (data-loader workers)."""

    def __init__(self, children: bool = False) -> None:
        self.children = children
        self.sample: CpuSample | None = None
        self._stat = read_proc_stat()
        self._cpu = _own_cpu(children)
        self._wall = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self._wall

    def stop(self) -> CpuSample:
        wall = time.perf_counter() - self._wall
        cpu = _own_cpu(self.children) - self._cpu
        end = read_proc_stat()
        share = None
        if self._stat is not None and end is not None and end[0] > self._stat[0]:
            total = (end[0] - self._stat[0]) / _HZ
            busy = total - (end[1] - self._stat[1]) / _HZ
            share = min(max((busy - cpu) / total, 0.0), 1.0)
        self.sample = CpuSample(wall, cpu, share)
        return self.sample

    def __enter__(self) -> CpuMeter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
