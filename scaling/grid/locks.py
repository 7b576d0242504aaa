"""Per-cell lock files in a run folder, so concurrent runners (on one machine or many) never run a cell twice.

A lock is a file created exclusively, holding its `Owner` as JSON. While held, a daemon thread touches
it every `heartbeat_s`: the modification time is the heartbeat. A lock is stale, and may be taken over,
when its owner is a process on this host that no longer exists, or when its heartbeat is older than
`stale_after_s` (an owner on another host, or one that hangs). A runner checks `CellLock.lost` before
writing a result, since a lock taken over while its owner was stalled is no longer the owner's.

Known limits: liveness by pid only works when every runner with the same host name shares one pid
namespace (containers started with the host's UTS namespace but their own pid namespace do not); and
heartbeat age compares the filesystem's clock with this machine's, so `stale_after_s` must exceed the
clock skew between machines by a wide margin.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass

from scaling.grid.folder import RunFolder

TAKEOVER_SUFFIX = ".takeover"  # a lock's takeover guard: at most one process replaces a stale lock at once
TAKEOVER_STALE_S = 30.0  # a guard this old was left by a process that died mid-takeover
WRITE_GRACE_S = 2.0  # an unreadable lock younger than this may be mid-write, so it is not stale yet


@dataclass(frozen=True)
class Owner:
    """Who holds a lock; written into the lock file as JSON."""

    host: str  # socket.gethostname() of the owner's machine
    pid: int  # the owner's process id on that machine
    pid_started: float | None  # the process's start, in seconds after boot (Linux /proc), so a reused pid
    # is not taken for the owner; None where it cannot be read
    token: str  # uuid4 hex, unique to this acquisition: the lock is ours only while the file holds it
    acquired: float  # when the lock was acquired, seconds since the epoch


class CellLock:
    """A held lock: a heartbeat thread keeps it fresh until `release` (or the end of a `with` block)."""

    def __init__(self, folder: RunFolder, rel: str, owner: Owner, heartbeat_s: float):
        self._folder = folder
        self._rel = rel
        self._owner = owner
        self._content = owner_bytes(owner)
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._heartbeat = threading.Thread(
            target=_beat,
            args=(folder, rel, self._content, heartbeat_s, self._stop, self._lost),
            name=f"heartbeat {rel}",
            daemon=True,  # a runner that exits without release leaves a lock that the next one takes over
        )
        self._heartbeat.start()

    @property
    def owner(self) -> Owner:
        return self._owner

    @property
    def rel(self) -> str:
        return self._rel

    @property
    def lost(self) -> bool:
        """True once the heartbeat found the lock file gone or holding another owner's token."""
        return self._lost.is_set()

    def release(self) -> None:
        """Stop the heartbeat and remove the lock file, unless it has passed to another owner meanwhile."""
        self._stop.set()
        self._heartbeat.join()
        _remove_if_unchanged(self._folder, self._rel, self._content)

    def __enter__(self) -> CellLock:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"CellLock({self._folder.url!r}, {self._rel!r}, token={self._owner.token})"


def acquire(folder: RunFolder, rel: str, heartbeat_s: float = 10.0, stale_after_s: float = 60.0) -> CellLock | None:
    """The lock at rel if this process got it (created it, or took over a stale one); None if it is held."""
    if not 0 < heartbeat_s < stale_after_s:
        raise ValueError(
            f"need 0 < heartbeat_s < stale_after_s, got heartbeat_s={heartbeat_s}, stale_after_s={stale_after_s}"
        )
    owner = new_owner()
    content = owner_bytes(owner)
    if folder.create_exclusive(rel, content) or _take_over(folder, rel, content, stale_after_s):
        return CellLock(folder, rel, owner, heartbeat_s)
    return None


def is_stale(folder: RunFolder, rel: str, stale_after_s: float, now: float | None = None) -> bool:
    """Whether the lock at rel may be taken over; a missing lock is not stale (there is nothing to take)."""
    state = _read_state(folder, rel)
    if state is None:
        return False
    content, modified = state
    return _judge_stale(content, modified, stale_after_s, time.time() if now is None else now)


def read_owner(folder: RunFolder, rel: str) -> Owner | None:
    """The owner recorded in the lock at rel; None if there is no lock or it cannot be parsed."""
    try:
        return parse_owner(folder.read_bytes(rel))
    except FileNotFoundError:
        return None


def new_owner() -> Owner:
    """An owner for this process, with a fresh token."""
    pid = os.getpid()
    return Owner(socket.gethostname(), pid, _process_start(pid), uuid.uuid4().hex, time.time())


def owner_bytes(owner: Owner) -> bytes:
    return json.dumps(dataclasses.asdict(owner), sort_keys=True).encode("utf-8")


def parse_owner(content: bytes) -> Owner | None:
    """The owner in a lock file's contents; None for an empty, partial or foreign file."""
    try:
        fields = json.loads(content.decode("utf-8"))
        owner = Owner(**fields)
    except (UnicodeDecodeError, ValueError, TypeError):
        return None
    well_typed = (
        isinstance(owner.host, str)
        and isinstance(owner.pid, int)
        and isinstance(owner.token, str)
        and (owner.pid_started is None or isinstance(owner.pid_started, (int, float)))
    )
    return owner if well_typed else None


def _take_over(folder: RunFolder, rel: str, content: bytes, stale_after_s: float) -> bool:
    """Replace a stale lock at rel with ours; True if ours is now there.

    Several runners may judge the same lock stale at once. Without care, A removes the stale lock and
    creates its own, then B, still acting on its earlier judgement, removes A's fresh lock and creates
    another: two owners. So the remove-and-create runs only while holding the guard file `rel.takeover`
    (created exclusively, so one process at a time), and staleness is judged again inside it: by then a
    runner that went first has put a fresh lock there, which is not stale, and the latecomer gives up.
    A plain `acquire` racing with the takeover needs no guard: whoever creates the file first wins it.

    Every removal compares the file's bytes with what was judged and removes only if they still match,
    so a lock or guard replaced since it was read is left alone. What remains is the microseconds
    between that compare and the removal: only a stale-judged owner that wakes, releases, and has its
    lock re-created by a plain `acquire` inside that gap could lose out, and its heartbeat then reports
    the lock lost.
    A guard whose maker died mid-takeover is itself judged stale (dead process on this host, or older
    than TAKEOVER_STALE_S) and replaced the same way.
    """
    state = _read_state(folder, rel)
    if state is None:  # released since our create failed
        return folder.create_exclusive(rel, content)
    if not _judge_stale(*state, stale_after_s, time.time()):
        return False
    guard = rel + TAKEOVER_SUFFIX
    if not folder.create_exclusive(guard, content):
        guard_state = _read_state(folder, guard)
        if guard_state is None or not _judge_stale(*guard_state, TAKEOVER_STALE_S, time.time()):
            return False  # another runner is taking over right now; the lock will be fresh when it is done
        if not _remove_if_unchanged(folder, guard, guard_state[0]) or not folder.create_exclusive(guard, content):
            return False
    try:
        return _replace_if_stale(folder, rel, content, stale_after_s)
    finally:
        _remove_if_unchanged(folder, guard, content)


def _replace_if_stale(folder: RunFolder, rel: str, content: bytes, stale_after_s: float) -> bool:
    """The takeover proper, run while holding the guard: judge again, remove what was judged, create ours."""
    state = _read_state(folder, rel)
    if state is None:  # its owner released it meanwhile
        return folder.create_exclusive(rel, content)
    stale_content, modified = state
    if not _judge_stale(stale_content, modified, stale_after_s, time.time()):
        return False  # a runner that took over before us has put a fresh lock here
    if not _remove_if_unchanged(folder, rel, stale_content):
        return False
    return folder.create_exclusive(rel, content)


def _read_state(folder: RunFolder, rel: str) -> tuple[bytes, float] | None:
    """A lock's contents and then its modification time; None if it is absent.

    Contents first: if the file is replaced between the two reads, an old owner is paired with a new
    (fresh) time and judged live, the safe way round; the other order could call a new lock stale.
    """
    try:
        content = folder.read_bytes(rel)
        return content, folder.modified(rel)
    except FileNotFoundError:
        return None


def _judge_stale(content: bytes, modified: float, stale_after_s: float, now: float) -> bool:
    """Whether a lock file with this content, last touched at `modified`, may be taken over at `now`."""
    age = now - modified
    owner = parse_owner(content)
    if owner is None:
        return age > WRITE_GRACE_S  # a creator may be between its exclusive create and its write
    if owner.host == socket.gethostname() and not _process_alive(owner.pid, owner.pid_started):
        return True  # its owner is gone: no need to wait out the heartbeat
    return age > stale_after_s


def _remove_if_unchanged(folder: RunFolder, rel: str, expected: bytes) -> bool:
    """Remove rel if it still holds exactly `expected`; True if it was removed (or already gone)."""
    try:
        if folder.read_bytes(rel) != expected:
            return False
    except FileNotFoundError:
        return True
    folder.remove(rel)
    return True


def _beat(
    folder: RunFolder, rel: str, content: bytes, every_s: float, stop: threading.Event, lost: threading.Event
) -> None:
    """The heartbeat: touch the lock every `every_s` while it is still ours; set `lost` once it is not."""
    while not stop.wait(every_s):
        try:
            if folder.read_bytes(rel) != content:
                lost.set()
                return
            folder.touch(rel)
        except FileNotFoundError:
            lost.set()
            return
        except OSError:
            # A passing filesystem hiccup. If it lasts, the lock goes stale, another runner takes it, and
            # the first read that works again sees its token and reports the lock lost.
            continue


def _process_start(pid: int) -> float | None:
    """When process pid started, in seconds after boot; None off Linux or if it is not visible."""
    stat = _proc_stat(pid)
    return None if stat is None else stat[1]


def _process_alive(pid: int, started: float | None) -> bool:
    """Whether process pid exists on this host and, where `started` is known, is the same process."""
    stat = _proc_stat(pid)
    if stat is not None:
        state, start = stat
        # A zombie has exited and only waits for its parent to reap it: it will never beat again.
        return state not in ("Z", "X") and (started is None or start == started)
    try:
        os.kill(pid, 0)  # signal 0 checks existence only; it also covers /proc mounted with hidepid
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def _proc_stat(pid: int) -> tuple[str, float] | None:
    """(state, start time in seconds after boot) from /proc/<pid>/stat; None where it cannot be read."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            stat = stat_file.read().decode("utf-8", "replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces or ")"; the fields after
    # the last ")" start with the state (field 3); the start time in clock ticks is field 22.
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[19]) / os.sysconf("SC_CLK_TCK")
