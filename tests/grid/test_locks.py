"""Cell locks with real files and real processes: one winner per race, stale locks taken over, heartbeats."""

import dataclasses
import multiprocessing
import os
import random
import signal
import time
import uuid

import pytest

from scaling.grid.locks import TAKEOVER_SUFFIX, Owner, _replace_if_stale, acquire, is_stale, owner_bytes, read_owner
from scaling.grid.folder import RunFolder

RACERS = 8
CELLS = 20  # each race is run over this many cells: more chances for a lost update to show
CELL_EVERY_S = 0.02  # the racers start on each cell together, this long after the previous one
JITTER_S = 0.001  # each racer starts a little off the shared instant, so every interleaving gets its turn
LOCK = "locks/cell.lock"
SPAWN = multiprocessing.get_context("spawn")  # a fresh interpreter each, like separate runner processes
DEADLOCK_S = 300  # waits that only guard against a hang: a slow machine is never a failure


def stranger(host: str = "elsewhere.invalid") -> Owner:
    """An owner that is not this process: by default a process on another machine."""
    return Owner(host=host, pid=1, pid_started=None, token=uuid.uuid4().hex, acquired=time.time())


def plant(folder: RunFolder, rel: str, owner: Owner, age_s: float = 0.0) -> None:
    """Put a lock file held by owner at rel, its heartbeat age_s seconds old."""
    assert folder.create_exclusive(rel, owner_bytes(owner))
    then = time.time() - age_s
    os.utime(folder.local_path / rel, (then, then))


def cell_lock(cell: int) -> str:
    return f"cells/{cell}.lock"


def wait_until(instant: float) -> None:
    """Sleep until just before instant, then spin to it.

    A barrier wakes its waiters one by one, milliseconds apart; spinning to a shared instant instead
    lines the racers up to within microseconds, which is what it takes to expose a race.
    """
    time.sleep(max(0.0, instant - time.time() - 0.002))
    while time.time() < instant:
        pass


def race(url: str, ready, go_at, wins, done, stale_after_s: float) -> None:
    """One racing runner: try every cell's lock, counting wins in `wins`, and hold them until all are done."""
    folder = RunFolder(url)
    # Generous timeouts: they only stop a deadlock; a loaded machine may take a minute to spawn every racer.
    if ready.wait(timeout=DEADLOCK_S) == 0:
        go_at.value = time.time() + 0.1
    ready.wait(timeout=DEADLOCK_S)
    held = []
    for cell in range(CELLS):
        wait_until(go_at.value + cell * CELL_EVERY_S + random.uniform(0, JITTER_S))
        lock = acquire(folder, cell_lock(cell), heartbeat_s=1, stale_after_s=stale_after_s)
        if lock is not None:
            held.append(lock)
            with wins.get_lock():
                wins[cell] += 1
    done.wait(timeout=DEADLOCK_S)  # while winners hold on, a quick release cannot let a second racer in
    for lock in held:
        lock.release()


def hold(url: str, rel: str, held) -> None:
    """A runner that acquires the lock and then works for a long time."""
    lock = acquire(RunFolder(url), rel, heartbeat_s=0.2, stale_after_s=60)
    assert lock is not None
    held.set()
    time.sleep(60)


def run_racers(folder: RunFolder, stale_after_s: float) -> list[int]:
    """How many of RACERS processes, started together, won each cell's lock."""
    ready, done = SPAWN.Barrier(RACERS), SPAWN.Barrier(RACERS)
    go_at, wins = SPAWN.Value("d", 0.0), SPAWN.Array("i", CELLS)
    racers = [
        SPAWN.Process(target=race, args=(folder.url, ready, go_at, wins, done, stale_after_s)) for _ in range(RACERS)
    ]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=2 * DEADLOCK_S)
    assert [racer.exitcode for racer in racers] == [0] * RACERS
    return list(wins)


@pytest.fixture
def folder(tmp_path) -> RunFolder:
    return RunFolder(tmp_path / "run")


def test_one_of_many_racers_wins(folder):
    assert run_racers(folder, stale_after_s=60) == [1] * CELLS
    assert folder.list("cells") == []  # the winners released their locks


def test_one_of_many_racers_takes_over_a_stale_lock(folder):
    for cell in range(CELLS):
        plant(folder, cell_lock(cell), stranger(), age_s=100)
    assert run_racers(folder, stale_after_s=5) == [1] * CELLS
    assert folder.list("cells") == []  # no takeover guard left behind either


def test_a_live_owner_keeps_its_lock_and_a_killed_one_loses_it_at_once(folder):
    held = SPAWN.Event()
    owner = SPAWN.Process(target=hold, args=(folder.url, LOCK, held))
    owner.start()
    try:
        assert held.wait(timeout=DEADLOCK_S)
        assert read_owner(folder, LOCK).pid == owner.pid
        assert acquire(folder, LOCK, heartbeat_s=0.2, stale_after_s=60) is None
        assert not is_stale(folder, LOCK, stale_after_s=60)
        os.kill(owner.pid, signal.SIGKILL)
        # Not joined: until its parent reaps it the dead owner is a zombie, which must count as gone.
        deadline = time.time() + DEADLOCK_S
        lock = None
        while lock is None and time.time() < deadline:
            # Staleness an hour away: only seeing the owner dead can give the lock up within the deadline.
            lock = acquire(folder, LOCK, heartbeat_s=0.2, stale_after_s=3600)
            time.sleep(0.01)
        assert lock is not None and lock.owner.pid == os.getpid()  # taken by this process, not the dead one
        assert read_owner(folder, LOCK).token == lock.owner.token
        lock.release()
    finally:
        owner.kill()
        owner.join()


def test_a_reused_pid_is_not_the_owner(folder):
    with acquire(folder, "mine.lock", heartbeat_s=5, stale_after_s=60) as mine:
        assert mine.owner.pid_started is not None  # these tests run on Linux
        impostor = dataclasses.replace(mine.owner, pid_started=mine.owner.pid_started + 1.0, token=uuid.uuid4().hex)
        plant(folder, "reused.lock", impostor)
        assert is_stale(folder, "reused.lock", stale_after_s=60)
        assert not is_stale(folder, "mine.lock", stale_after_s=60)


def test_foreign_owner_is_stale_only_once_its_heartbeat_is_old(folder):
    # Ages far from the threshold: a machine that stalls for seconds between planting and judging cannot
    # turn the fresh lock stale.
    plant(folder, "fresh.lock", stranger(), age_s=1)
    plant(folder, "old.lock", stranger(), age_s=1000)
    assert acquire(folder, "fresh.lock", heartbeat_s=0.2, stale_after_s=300) is None
    taken = acquire(folder, "old.lock", heartbeat_s=0.2, stale_after_s=300)
    assert taken is not None and read_owner(folder, "old.lock") == taken.owner
    taken.release()
    now = time.time()
    plant(folder, "judged.lock", stranger(), age_s=10)
    assert not is_stale(folder, "judged.lock", stale_after_s=20, now=now)
    assert is_stale(folder, "judged.lock", stale_after_s=20, now=now + 15)


def test_unreadable_lock_is_stale_only_after_a_grace(folder):
    folder.create_exclusive("empty.lock", b"")
    written = folder.modified("empty.lock")  # judged at instants relative to the write, however slow the machine
    assert not is_stale(folder, "empty.lock", stale_after_s=60, now=written + 0.5)
    assert is_stale(folder, "empty.lock", stale_after_s=60, now=written + 10)
    assert read_owner(folder, "empty.lock") is None
    assert not is_stale(folder, "absent.lock", stale_after_s=60)


def test_a_takeover_guard_left_by_a_dead_taker_does_not_block_for_ever(folder):
    plant(folder, LOCK, stranger(), age_s=100)
    plant(folder, LOCK + TAKEOVER_SUFFIX, stranger(), age_s=5)
    assert acquire(folder, LOCK, heartbeat_s=0.2, stale_after_s=5) is None  # a taker may be busy
    os.utime(folder.local_path / (LOCK + TAKEOVER_SUFFIX), (time.time() - 100, time.time() - 100))
    lock = acquire(folder, LOCK, heartbeat_s=0.2, stale_after_s=5)
    assert lock is not None and not folder.exists(LOCK + TAKEOVER_SUFFIX)
    lock.release()


def test_a_latecomer_under_the_guard_leaves_a_fresh_lock_alone(folder):
    # A runner judged the lock stale, but by the time it holds the takeover guard another runner has
    # already replaced it; the judgement made under the guard must see the fresh lock and give up.
    fresh = stranger()
    plant(folder, LOCK, fresh, age_s=1)
    assert not _replace_if_stale(folder, LOCK, owner_bytes(stranger()), stale_after_s=5)
    assert read_owner(folder, LOCK) == fresh


def test_heartbeat_advances_the_modification_time(folder):
    with acquire(folder, LOCK, heartbeat_s=0.05, stale_after_s=5) as lock:
        long_ago = time.time() - 100
        os.utime(folder.local_path / LOCK, (long_ago, long_ago))
        assert wait_for(lambda: folder.modified(LOCK) > time.time() - 5)
        assert not lock.lost
    assert not folder.exists(LOCK)


def test_release_leaves_another_owners_file_alone(folder):
    lock = acquire(folder, LOCK, heartbeat_s=5, stale_after_s=60)
    other = stranger()
    folder.write_bytes_atomic(LOCK, owner_bytes(other))
    lock.release()
    assert read_owner(folder, LOCK) == other


def test_lost_once_the_file_holds_another_owner_or_is_gone(folder):
    replaced = acquire(folder, LOCK, heartbeat_s=0.05, stale_after_s=5)
    assert not replaced.lost
    time.sleep(0.2)
    assert not replaced.lost  # its own heartbeats do not count as losing it
    folder.write_bytes_atomic(LOCK, owner_bytes(stranger()))
    assert wait_for(lambda: replaced.lost)
    replaced.release()

    removed = acquire(folder, "other.lock", heartbeat_s=0.05, stale_after_s=5)
    folder.remove("other.lock")
    assert wait_for(lambda: removed.lost)
    removed.release()


def test_locks_work_on_memory_folders_too():
    folder = RunFolder(f"memory://locks-{uuid.uuid4().hex}")
    try:
        first = acquire(folder, LOCK, heartbeat_s=0.05, stale_after_s=5)
        assert first is not None and acquire(folder, LOCK, heartbeat_s=0.05, stale_after_s=5) is None
        first.release()
        assert not folder.exists(LOCK)
    finally:
        folder.remove_tree("")


def test_heartbeat_must_be_shorter_than_staleness(folder):
    with pytest.raises(ValueError, match="heartbeat_s"):
        acquire(folder, LOCK, heartbeat_s=10, stale_after_s=5)


def wait_for(condition, timeout_s: float = DEADLOCK_S) -> bool:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()
