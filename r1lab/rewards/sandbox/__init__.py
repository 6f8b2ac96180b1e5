"""Running untrusted, model-written Python against a task's tests, in a sandbox that holds.

During RL the policy writes the code and is paid when the tests pass, so the code is
adversarial: it will take any way to be scored as passing that the harness leaves open.
Each execution therefore gets a fresh bubblewrap sandbox (``bwrap``), and the verdict is
decided from evidence the program cannot produce without passing the tests.

Isolation, per execution
    New user, PID, network, IPC, UTS and cgroup namespaces, and no nested user namespaces.
    The file system holds read-only binds of the system directories and the Python
    install, a size-capped tmpfs ``/tmp`` (the scratch directory and working directory,
    gone when the sandbox ends) and a minimal ``/dev``; everything else, ``/`` included, is
    read-only, and there is no ``/proc``. The environment is cleared. The network namespace
    has only its own loopback, so nothing outside (the host's 127.0.0.1 included) can be
    reached. A seccomp filter refuses the system calls that reach other processes' memory
    or file descriptors (``ptrace``, ``process_vm_*``, ``pidfd_getfd``), that allocate
    memory outside the limits below (``memfd_create``, SysV shared memory and message
    queues), mounting, keyrings, BPF and the like. Resource limits (``setrlimit``) cap
    address space, CPU time, file size, open files and processes plus threads; the harness
    enforces the wall-time limit with SIGKILL, and since the sandbox's first process is PID
    1 of its namespace, everything the program started (double-forked daemons included)
    dies with it; an execution returns only once bwrap has reaped that PID 1, which the
    kernel allows only when the namespace is empty. When r1lab runs as root the sandbox runs as an unprivileged user (uid
    65534), since the kernel does not apply the process limit to uid 0. Output is read to
    the end but only the first ``Limits.output_bytes`` of each stream are kept.

Why the verdict cannot be forged
    The tests do not run in the program's process. Inside the sandbox, the harness's own
    process T (PID 1, :mod:`.runner`) forks the program process S before it
    reads the tests; S closes every descriptor except its channel to T and only then runs
    the program. T runs the tests itself: when a test calls the program's function, T sends
    the arguments to S and gets back the result, and results cross as JSON that T decodes
    into plain ``int``/``float``/``str``/``list``/``tuple``/``dict``/``set``/… values, never
    code or objects with behaviour of their own (an object that is not plain data arrives
    as an opaque handle whose truth value and equality T refuses to take from S). The
    names a test takes from the program are the program's own definitions: builtins and
    standard modules (a program's own ``abs`` or ``math``) stay T's. So every ``assert``
    is evaluated by T on data, and an "always equal" object, an early ``os._exit(0)``,
    printed success markers or anything read from files, ``argv`` or the environment
    cannot make an assertion hold. T reports each test on a pipe that only T
    holds: S closed its copy before any program code ran and cannot reopen it (no ``/proc``;
    ``ptrace``, ``process_vm_readv`` and ``pidfd_getfd`` are refused; as PID 1, T cannot be
    killed or stopped from inside). There is no secret to steal: the harness trusts that
    pipe, not a token. The verdict is ``passed`` only if T reported every test it was given
    as passed; an exit, a crash or a timeout before that is not passed. The trust this
    leaves: the tests and the task's setup code (HumanEval's prompt, MBPP's setup) run in T
    and are taken as written by the task, not by the policy.

Semantics this implies, compared with running the tests in one interpreter: arguments and
results are passed by value (a mutation of an argument is not seen by the test), the
program runs as module ``solution`` (its ``if __name__ == "__main__":`` block does not
run), and an object of the program's own classes can be passed around, its attributes read
and methods called, but not compared or truth-tested by the tests.

Without bubblewrap the sandbox refuses to run and names the package to install;
``Sandbox(unsafe=True)`` runs without isolation, behind a loud warning, for debugging only.

The parts: :mod:`.base` (limits, verdict, errors), :mod:`.harness` (the sandbox and its pool),
:mod:`.capture` (inputs, outputs and the verdict of one execution), :mod:`.seccomp` (the
system-call filter), and what runs inside: :mod:`.protocol` and :mod:`.runner`.
"""

from r1lab.rewards.sandbox.base import PACKAGE_HINT, Limits, SandboxUnavailable, Verdict
from r1lab.rewards.sandbox.harness import Sandbox, SandboxPool
from r1lab.rewards.sandbox.seccomp import seccomp_filter

__all__ = [
    "PACKAGE_HINT",
    "Limits",
    "Sandbox",
    "SandboxPool",
    "SandboxUnavailable",
    "Verdict",
    "seccomp_filter",
]
