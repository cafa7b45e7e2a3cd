"""The daemon's processes as /proc shows them: standard library only, for the tests and the benchmark."""
import os
from pathlib import Path

# recvmsg(2)'s number, read from /proc/PID/syscall: a pool worker blocked in it has said "ready".
RECVMSG = {"x86_64": 47, "aarch64": 212}.get(os.uname().machine)


def children(pid):
    """The direct children of `pid`, of all its threads (/proc/PID/task/*/children); [] once it is gone."""
    found = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for t in tasks:
        try:
            found += [int(c) for c in Path(f"/proc/{pid}/task/{t}/children").read_text().split()]
        except OSError:
            pass
    return found


def descendants(pid):
    """`pid` and every process below it."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children(p)
    return found


def comm_and_nice(pid):
    """(comm, nice) from /proc/PID/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.index("(") + 1:text.rindex(")")], int(text[text.rindex(")") + 2:].split()[16])


def named_children(pid):
    """{child: comm} of `pid`'s direct children that are still there when read: a worker may end between
    the listing and the read of its stat."""
    named = {}
    for child in children(pid):
        try:
            named[child] = comm_and_nice(child)[0]
        except OSError:
            pass
    return named


def ready_pool_workers(daemon_pid):
    """The daemon's pool workers that wait for a job: prepared, said "ready", blocked in recvmsg."""
    ready = []
    for pid in descendants(daemon_pid)[1:]:
        try:
            if (comm_and_nice(pid)[0] == "lms-pooled"
                    and int(Path(f"/proc/{pid}/syscall").read_text().split()[0]) == RECVMSG):
                ready.append(pid)
        except (OSError, ValueError, IndexError):
            pass
    return ready
