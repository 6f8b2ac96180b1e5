"""The seccomp filter that bwrap installs in every sandbox: the system calls refused."""

from __future__ import annotations

import platform
import struct

from r1lab.rewards.sandbox.base import SandboxUnavailable

# Refused with EPERM. Numbers from the kernel's unistd headers; aarch64 uses the generic table.
_DENY = {
    "x86_64": (
        0xC000003E,
        [101, 310, 311, 438, 312, 319, 447, 29, 68, 165, 166, 155, 161, 272, 308, 429, 428, 430]
        + [431, 432, 433, 442, 250, 248, 249, 321, 298, 323, 425, 426, 427, 300, 246, 320, 175]
        + [313, 176, 169, 167, 168, 163, 179, 103, 153, 212, 304, 303, 135, 134, 136, 139, 156],
    ),
    "aarch64": (
        0xC00000B7,
        [117, 270, 271, 438, 272, 279, 447, 194, 186, 40, 39, 41, 51, 97, 268, 429, 428, 430]
        + [431, 432, 433, 442, 219, 217, 218, 280, 241, 282, 425, 426, 427, 262, 104, 294, 105]
        + [273, 106, 142, 224, 225, 89, 60, 116, 58, 18, 265, 264, 92],
    ),
}
_DENIED_NAMES = (
    "ptrace process_vm_readv process_vm_writev pidfd_getfd kcmp memfd_create memfd_secret "
    "shmget msgget mount umount2 pivot_root chroot unshare setns move_mount open_tree fsopen "
    "fsconfig fsmount fspick mount_setattr keyctl add_key request_key bpf perf_event_open "
    "userfaultfd io_uring_setup io_uring_enter io_uring_register fanotify_init kexec_load "
    "kexec_file_load init_module finit_module delete_module reboot swapon swapoff acct quotactl "
    "syslog vhangup lookup_dcookie open_by_handle_at name_to_handle_at personality"
)


def seccomp_filter(machine: str | None = None) -> bytes:
    """The classic-BPF seccomp program (``struct sock_filter[]``) that bwrap installs."""
    machine = machine or platform.machine()
    if machine not in _DENY:
        raise SandboxUnavailable(
            f"the code sandbox's seccomp filter supports x86_64 and aarch64, not {machine}"
        )
    arch, numbers = _DENY[machine]
    ld_abs, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    eperm, allow, kill = 0x00050000 | 1, 0x7FFF0000, 0x80000000

    def op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
        return struct.pack("HBBI", code, jt, jf, k)

    prog = [op(ld_abs, 4), op(jeq, arch, 1, 0), op(ret, kill), op(ld_abs, 0)]
    if machine == "x86_64":  # the x32 ABI's numbers would slip past the list
        prog += [op(jge, 0x40000000, 0, 1), op(ret, eperm)]
    for nr in numbers:
        prog += [op(jeq, nr, 0, 1), op(ret, eperm)]
    prog.append(op(ret, allow))
    return b"".join(prog)
