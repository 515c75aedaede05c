"""The sandbox's child: runs ONE model-written program in a fresh interpreter, started by sandbox.py as

    [unshare --user --net]  python -I -S -B sandbox_child.py      (own session, own uid, empty environment)

It inherits nothing from the evaluator: no module objects, no file descriptors beyond 0/1/2, no
environment. The conversation with the parent, on stdin and stdout:

    parent -> child   "<time limit s> <memory limit MB> <max processes> <request bytes>\\n"
                      + JSON {"program": the source to run, "checks": ["add_7(45)", ...]}
    child -> parent   "values <JSON list: the value of each check expression>"
or  child -> parent   "<failed | error | blocked | memory> <detail>"

The child never sees what a check should equal: the parent keeps the expected values and compares
them itself (sandbox.split_checks). A program that takes the channel over (see sandbox.py, what it
does not stop) can write any line it likes, and still passes only by writing the right answers.

Before the program runs, stdin and stdout move to two private descriptors and 0/1/2 become /dev/null:
the program's prints go nowhere, and it can reach the channel only through raw descriptor calls
(`os.read`, `os.write`, `open(3)`), which the guard below refuses.
"""
import _signal  # signal without its enum wrappers (which cost an import of enum at every start)
import _thread
import json  # the check values go back as JSON (imported before the guard)
import os
import resource
import sys
import types  # noqa: F401  (imported before the guard: it reads a traceback's tb_frame to name FrameType)

FILE_SIZE_LIMIT_MB = 10  # RLIMIT_FSIZE: the size of each file written
MAX_FILES_WRITTEN = 100  # the guard's count of files opened for writing (RLIMIT_FSIZE bounds size, not number)
MAX_OPEN_FILES = 32  # RLIMIT_NOFILE
# Imports the guard refuses (top-level names). They are removed from sys.modules first, so importing one
# raises the "import" event; a module that imports one of them fails too (random imports os).
BLOCKED_MODULES = {
    "os", "posix", "nt", "posixpath", "_posixsubprocess", "subprocess", "_signal", "signal", "resource", "fcntl",
    "socket", "_socket", "ssl", "_ssl", "select", "selectors", "asyncio", "mmap", "pty", "tty", "termios",
    "ctypes", "_ctypes", "cffi", "_cffi_backend", "multiprocessing", "_multiprocessing", "_posixshmem",
    "concurrent", "threading", "gc", "inspect", "traceback", "importlib", "_imp", "_frozen_importlib",
    "_frozen_importlib_external", "zipimport", "marshal", "pickle", "_pickle", "shutil", "tempfile", "pathlib",
    "glob", "sysconfig", "site", "runpy", "code", "codeop", "pdb", "bdb", "trace", "faulthandler", "tracemalloc",
    "_tracemalloc", "pwd", "grp", "urllib", "http", "ftplib", "smtplib", "webbrowser", "xmlrpc", "_xxsubinterpreters",
    "_testcapi", "_testinternalcapi", "_testbuffer", "_testmultiphase", "_testimportmultiple"}
# Audit events refused outright: processes, signals, sockets, frames and object graphs (a way back to the
# child's own variables), tracing, building code objects by hand, and every change to the file system
# except writing a file (which "open" checks).
BLOCKED_EVENTS = {
    "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "os.kill", "os.killpg",
    "os.setuid", "os.putenv", "os.unsetenv", "os.chdir", "os.remove", "os.rename", "os.rmdir", "os.mkdir",
    "os.chmod", "os.chown", "os.chflags", "os.lchflags", "os.symlink", "os.link", "os.truncate", "os.utime",
    "os.setxattr", "os.removexattr", "os.mkfifo", "os.mknod", "shutil.rmtree", "subprocess.Popen", "pty.spawn",
    "sys._getframe", "sys._current_frames", "sys._current_exceptions", "sys.settrace", "sys.setprofile",
    "gc.get_objects", "gc.get_referrers", "gc.get_referents", "code.__new__", "function.__new__",
    "resource.setrlimit", "resource.prlimit", "signal.pthread_kill",
    "ctypes.dlopen", "ctypes.cdata", "mmap.__new__", "cpython.run_command", "cpython.run_file"}
# "object.__getattr__" is raised when one of these is read: each gives a frame. (A second wall: the
# program's frames lead only to an empty function anyway, see _RUN.)
FRAME_ATTRIBUTES = {"tb_frame", "gi_frame", "cr_frame", "ag_frame"}


def main():
    channel_in, channel_out = os.dup(0), os.dup(1)
    time_limit_s, memory_limit_mb, max_processes, program, checks = _read_request(channel_in)
    megabyte = 1024 * 1024
    cpu_s = int(time_limit_s) + 1  # RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL one second later
    for limit, value in ((resource.RLIMIT_AS, memory_limit_mb * megabyte), (resource.RLIMIT_CPU, cpu_s),
                         (resource.RLIMIT_FSIZE, FILE_SIZE_LIMIT_MB * megabyte), (resource.RLIMIT_CORE, 0),
                         (resource.RLIMIT_NOFILE, MAX_OPEN_FILES), (resource.RLIMIT_NPROC, max_processes)):
        resource.setrlimit(limit, (value, value + 1 if limit == resource.RLIMIT_CPU else value))
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # the program's prints go nowhere; the channel lives on channel_in/channel_out
        os.dup2(devnull, fd)
    os.close(devnull)
    write, exit_now, alarm, dumps = os.write, os._exit, _signal.setitimer, json.dumps  # held here, not in modules
    verdicts, is_instance = ((AssertionError, "failed"), (MemoryError, "memory"), (Refused, "blocked")), isinstance
    program_module = type(sys)("__main__")  # `import __main__` must not give the program this script
    program_module.__builtins__ = __builtins__
    sys.modules["__main__"] = program_module
    clean = {"__builtins__": __builtins__}  # the globals of the function that runs the program: nothing
    exec(_RUN, clean)
    outcome, done = [], _thread.allocate_lock()
    done.acquire()
    _install_guard(os.getcwd())
    try:
        compiled = compile(program, "<program>", "exec")
        expressions = [compile(check, "<check>", "eval") for check in checks]
    except BaseException as error:  # noqa: BLE001  (SyntaxError, ValueError for a NUL byte, ...)
        outcome.append(("error", error))
    else:
        alarm(_signal.ITIMER_REAL, time_limit_s)  # wall clock: SIGALRM's default action ends the process
        _thread.start_new_thread(clean["run"], (compiled, expressions, vars(program_module), outcome, done))
        done.acquire()
        alarm(_signal.ITIMER_REAL, 0)
    kind, result = outcome[0]  # from here on only local names: the program may have replaced builtins
    if kind == "values":
        try:
            line = "values " + dumps(result) + "\n"
        except BaseException:  # noqa: BLE001  (an object of the program's own, a recursive list, ...)
            line = "failed a check's value is not plain data (numbers, strings, lists, dicts)\n"
        write(channel_out, line.encode("utf-8", "replace"))
        exit_now(0)
    status = next((name for error_type, name in verdicts if is_instance(result, error_type)), "error")
    try:
        detail = f"{type(result).__name__}: {result}"[:300].replace("\n", " ")
    except BaseException:  # noqa: BLE001  (an exception whose str() fails)
        detail = "an exception that cannot be printed"
    write(channel_out, f"{status} {detail}\n".encode("utf-8", "replace"))
    exit_now(0)


# The program runs in a thread of its own, in this function, compiled into globals that hold nothing:
# the frames it can reach (sys._getframe, a traceback's tb_frame, then f_back) end here, never in main()
# with its descriptors and os functions, or in this module's globals.
_RUN = """
def run(compiled, expressions, namespace, outcome, done):
    try:
        exec(compiled, namespace)
        outcome.append(("values", [eval(expression, namespace) for expression in expressions]))
    except BaseException as error:
        outcome.append(("error", error))
    done.release()
"""


class Refused(PermissionError, ValueError):
    """The guard's refusal. Also a ValueError, which is what the standard library expects when
    sys._getframe cannot go that deep (collections.namedtuple, enum and typing then carry on without it)."""


def _read_request(fd):
    """-> (time_limit_s, memory_limit_mb, max_processes, program, checks) from the parent's first message."""
    data = b""
    while b"\n" not in data:
        data += os.read(fd, 65536) or b"\n"
    header, data = data.split(b"\n", 1)
    time_limit_s, memory_limit_mb, max_processes, size = header.split()
    while len(data) < int(size):
        chunk = os.read(fd, 65536)
        if not chunk:
            raise EOFError("the parent closed the channel before the whole request arrived")
        data += chunk
    request = json.loads(data.decode("utf-8"))
    return float(time_limit_s), int(memory_limit_mb), int(max_processes), request["program"], request["checks"]


def _absolute(path, cwd, type_of=type, str_type=str, bytes_type=bytes, sep=os.sep):
    """'a/../b' -> cwd + '/b' by hand, or None for anything but an exact str or bytes (a str subclass or
    an object with __fspath__ could answer differently when open() asks again).

    Called by the guard, so it calls nothing the program could replace: its builtins are default
    arguments, bound once here (a program can set builtins.any = lambda _: True), and no library code
    (os.path.realpath looks up builtins.map). Symbolic links are not followed: the program cannot make
    one, and the standard library's folders are listed both as given and resolved."""
    if type_of(path) is bytes_type:
        path = path.decode("utf-8", "surrogateescape")
    elif type_of(path) is not str_type:
        return None
    parts = []
    for part in (path if path.startswith(sep) else cwd + sep + path).split(sep):
        if part == "..":
            parts = parts[:-1]
        elif part not in ("", "."):
            parts.append(part)
    return sep + sep.join(parts)


def _inside(path, folders, cwd, sep=os.sep):
    """True if `path` (relative to `cwd`) is one of `folders` or inside one."""
    path = _absolute(path, cwd)
    for folder in folders:
        if path is not None and (path == folder or path.startswith(folder + sep)):
            return True
    return False


def _install_guard(scratch):
    """The audit hook (PEP 578; it cannot be removed once added): refuse the imports and events above, any
    open of a bare file descriptor, writes outside `scratch` or beyond MAX_FILES_WRITTEN files, and reads
    and directory listings outside `scratch` and the standard library (which imports need). Like
    _absolute, it looks up no builtins at call time: the names it uses are bound here."""
    cwd, type_of, str_type, bytes_type, absolute, inside = os.getcwd(), type, str, bytes, _absolute, _inside
    readable = tuple({p for p in sys.path if p} | {os.path.realpath(p) for p in sys.path if p})  # the stdlib
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    written = set()

    def guard(event, args):
        if event == "import":
            if args[0].split(".")[0] in BLOCKED_MODULES:
                raise Refused(f"sandbox: import of {args[0]} is not allowed")
        elif event in BLOCKED_EVENTS or event.startswith(("socket.", "os.exec", "os.spawn", "os.posix_spawn")):
            raise Refused(f"sandbox: {event} is not allowed")
        elif event in ("object.__getattr__", "object.__setattr__", "object.__delattr__"):
            if args[1] in FRAME_ATTRIBUTES:
                raise Refused(f"sandbox: {event} {args[1]} is not allowed")
        elif event == "open":
            path, mode, flags = args
            if type_of(path) is not str_type and type_of(path) is not bytes_type:
                raise Refused("sandbox: opening a file descriptor or a path-like object is not allowed")
            if flags & write_flags or (type_of(mode) is str_type and ("w" in mode or "a" in mode or "x" in mode
                                                                        or "+" in mode)):
                if not inside(path, (scratch,), cwd):
                    raise Refused(f"sandbox: writing {path!r} outside the scratch folder is not allowed")
                written.add(absolute(path, cwd))
                if written.__len__() > MAX_FILES_WRITTEN:
                    raise Refused(f"sandbox: writing more than {MAX_FILES_WRITTEN} files is not allowed")
            elif not inside(path, (scratch,) + readable, cwd):
                raise Refused(f"sandbox: reading {path!r} outside the scratch folder is not allowed")
        elif event in ("os.listdir", "os.scandir"):
            if not inside(args[0], (scratch,) + readable, cwd):
                raise Refused(f"sandbox: listing {args[0]!r} is not allowed")

    for name in list(sys.modules):  # a module still in sys.modules would be imported without an event
        if name.split(".")[0] in BLOCKED_MODULES or name in ("genericpath", "stat", "_stat"):
            del sys.modules[name]
    sys.addaudithook(guard)


if __name__ == "__main__":
    main()
