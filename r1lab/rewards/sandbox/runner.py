"""The program that runs inside the sandbox: the harness process T (PID 1), which forks the
program process S, loads the task's setup and runs the tests itself, calling into S for the
program's functions (see :mod:`r1lab.rewards.sandbox`).

The payload the sandbox receives is :mod:`.protocol`'s source, then this file's, then a call
of ``_runner_main()``; it starts on every execution, so it imports only the standard library's
cheap C modules, where they are used. Inside the sandbox ``__package__`` is None and the names
below come from the protocol source before this one.
"""

if __package__:  # imported within r1lab (tests, linters); not taken inside the sandbox
    from r1lab.rewards.sandbox.protocol import (
        _S_SERVES,
        _T_SERVES,
        _Channel,
        _Codec,
        _import_stdlib,
        _Module,
        _ProgramGone,
        _ProtocolError,
        _scanner,
        _short,
    )


def _runner_main():
    import _signal
    import builtins
    import os
    import resource
    import sys

    # argv: code fd (already read), program fd, job fd, verdict fd, then the limits
    _, prog_fd, job_fd, verdict_fd, cpu, mem, fsize, nofile, nproc = map(int, sys.argv[1:10])
    # As PID 1, T ignores signals it has no handler for; Python installs one for SIGINT.
    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
    for res, value in (
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_AS, (mem, mem)),
        (resource.RLIMIT_FSIZE, (fsize, fsize)),
        (resource.RLIMIT_NOFILE, (nofile, nofile)),
        (resource.RLIMIT_NPROC, (nproc, nproc)),
        (resource.RLIMIT_CORE, (0, 0)),
    ):
        if value[0] >= 0:
            resource.setrlimit(res, value)
    t_read, s_write = os.pipe()
    s_read, t_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        # S: let go of everything of T's before any program code runs.
        for fd in (job_fd, verdict_fd, t_read, t_write):
            os.close(fd)
        _program_main(prog_fd, s_read, s_write)
    for fd in (prog_fd, s_read, s_write):
        os.close(fd)

    def report(text):
        data = memoryview((text + "\n").encode("ascii"))
        while data:
            data = data[os.write(verdict_fd, data) :]

    codec = _Codec(_Channel(t_read, t_write), _T_SERVES)
    quote = codec._quote
    with os.fdopen(job_fd, "rb") as f:
        scan, _ = _scanner()
        job = codec.dec(scan(f.read().decode("ascii"), 0)[0])

    def finish(**fields):
        status = _reap(pid)
        parts = ['"done":true'] + [f'"{k}":{quote(v)}' for k, v in fields.items()]
        if status is not None:
            parts.append(f'"program_signal":{status}')
        report("{" + ",".join(parts) + "}")
        os._exit(0)

    try:
        exports = codec.wait_reply()
        if type(exports) is not dict:
            raise _ProtocolError("malformed exports")
    except _ProgramGone:
        finish(load_error=_exit_description(pid))
    except BaseException as e:
        finish(load_error=f"{type(e).__name__}: {_short(e)}")
    ns = {"__name__": "__test__", "__builtins__": builtins}
    entry = job["entry_point"]
    for name, value in exports.items():
        # Names the tests may take for the standard ones (builtins, stdlib modules) stay
        # T's own: a program exporting its own `abs` or `math` must not answer for them.
        if type(name) is not str or name.startswith("__"):
            continue
        if name != entry and hasattr(builtins, name):
            continue
        if name in sys.stdlib_module_names:
            try:
                value = _import_stdlib(name)
            except ImportError:
                continue
        ns[name] = value
    try:
        if job["setup"]:
            exec(compile(job["setup"], "<setup>", "exec"), ns)
    except BaseException as e:
        finish(setup_error=f"{type(e).__name__}: {_short(e)}")
    if entry:
        ns[entry] = exports[entry] if entry in exports else _missing(entry)
    for i, source in enumerate(job["tests"]):
        try:
            exec(compile(source, f"<test {i}>", "exec"), ns)
            report(f'{{"i":{i},"ok":true}}')
        except BaseException as e:
            if isinstance(e, _ProgramGone):
                e = _ProgramGone(_exit_description(pid))
            report(f'{{"i":{i},"ok":false,"error":{quote(_describe(e, i, source))}}}')
    finish()


def _missing(name):
    def missing(*args, **kwargs):
        raise NameError(f"the program does not define {name}")

    return missing


def _describe(e, i, source):
    """``Type: message``, and for a failed assertion with no message, the assertion's line."""
    text = f"{type(e).__name__}: {_short(e)}" if str(e) else type(e).__name__
    tb, line = e.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == f"<test {i}>":
            line = tb.tb_lineno
        tb = tb.tb_next
    lines = source.splitlines()
    if line is not None and 0 < line <= len(lines):
        text += f" at line {line}: {lines[line - 1].strip()[:200]}"
    return text


_wait_status = {}


def _reap(pid):
    """The signal that ended the program process, if it ended by one."""
    import os

    if pid not in _wait_status:
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if got == 0:
            return None
        _wait_status[pid] = status
    status = _wait_status[pid]
    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else None


def _exit_description(pid):
    import os
    import time

    for _ in range(50):  # the channel closes as the process exits; wait for that a moment
        if _reap(pid) is not None or pid in _wait_status:
            break
        time.sleep(0.002)
    if pid not in _wait_status:
        return "the program closed its channel to the tests"
    status = _wait_status[pid]
    if os.WIFSIGNALED(status):
        return f"the program process was killed by signal {os.WTERMSIG(status)}"
    return f"the program process exited with code {os.WEXITSTATUS(status)}"


def _program_main(prog_fd, rfd, wfd):
    import builtins
    import os
    import sys

    with os.fdopen(prog_fd, "rb") as f:
        source = f.read().decode("utf-8", "surrogateescape")
    codec = _Codec(_Channel(rfd, wfd), _S_SERVES)
    module = type(sys)("solution")
    module.__builtins__ = builtins
    sys.modules["solution"] = module
    try:
        exec(compile(source, "<program>", "exec"), module.__dict__)
        exports = {}
        for name, value in list(module.__dict__.items()):
            if name.startswith("__"):
                continue
            if type(value) is not type(sys):
                exports[name] = value
            elif value.__name__.partition(".")[0] in sys.stdlib_module_names:
                exports[name] = _Module(value.__name__)
        reply = f'["ok",{codec.enc(exports)}]'
    except BaseException as e:
        where = ""
        tb = e.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == "<program>":
                where = f" (line {tb.tb_lineno})"
            tb = tb.tb_next
        if isinstance(e, SyntaxError):
            where = ""  # its message names the line already
        message = f"{_short(e)}{where}"
        reply = f'["err",{codec._quote(type(e).__name__)},{codec._quote(message)}]'
    try:
        codec.chan.send(reply)
        while True:
            codec.serve(codec.chan.recv())
    except BaseException:
        pass
    os._exit(0)
