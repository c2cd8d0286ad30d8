"""A fake KVM kernel for the smoke test: it decodes the guest code from the guest memory the
test registered and answers KVM_RUN with the exits real hardware would give."""

from __future__ import annotations

import errno
import struct
import time
from typing import Any

from nestcloud.bootstrap import l1check as k


class FakeKvm:
    """Implements l1check.KvmSys. ``fail`` = {ioctl request: errno} makes that call fail.

    ``emulated_s_per_loop``: seconds each iteration of the guest's countdown loop takes (0:
    hardware speed, the loop is fast-forwarded); kvm_pvm ran a stock guest's at about 1e-6.
    """

    def __init__(self, *, api_version: int = 12, fail: dict[int, int] | None = None,
                 run_exit: int | None = None, out_byte: int | None = None,
                 open_error: int | None = None, emulated_s_per_loop: float = 0.0) -> None:
        self.emulated_s_per_loop = emulated_s_per_loop
        self.ecx = 0
        self.loops_run = 0
        self.open_error = open_error
        self.api_version = api_version
        self.fail = fail or {}
        self.run_exit = run_exit          # force every KVM_RUN to exit with this reason
        self.out_byte = out_byte          # corrupt the OUT data byte
        self.calls: list[tuple[str, Any]] = []
        self.closed: list[int] = []
        self._next_fd = 100
        self.memory: dict[int, bytearray] = {}     # user-space address -> buffer
        self.regions: list[tuple[int, int, int]] = []   # (gpa, size, address)
        self.rip = 0
        self.run_buf: bytearray | None = None
        self.sregs_set: bytes | None = None

    def _fd(self) -> int:
        self._next_fd += 1
        return self._next_fd

    def _maybe_fail(self, request: int) -> None:
        if request in self.fail:
            raise OSError(self.fail[request], "fake failure")

    def open(self, path: str) -> int:
        self.calls.append(("open", path))
        if self.open_error is not None:
            raise OSError(self.open_error, "fake open failure")
        return self._fd()

    def close(self, fd: int) -> None:
        self.closed.append(fd)

    def ioctl(self, fd: int, request: int, arg: int = 0) -> int:
        self.calls.append(("ioctl", request))
        self._maybe_fail(request)
        if request == k.KVM_GET_API_VERSION:
            return self.api_version
        if request in (k.KVM_CREATE_VM, k.KVM_CREATE_VCPU):
            return self._fd()
        if request == k.KVM_GET_VCPU_MMAP_SIZE:
            return 4096
        if request == k.KVM_SET_TSS_ADDR:
            return 0
        if request == k.KVM_RUN:
            return self._run()
        raise OSError(errno.ENOTTY, "unknown ioctl %#x" % request)

    def ioctl_buf(self, fd: int, request: int, buf: bytearray) -> int:
        self.calls.append(("ioctl", request))
        self._maybe_fail(request)
        if request == k.KVM_SET_USER_MEMORY_REGION:
            slot, flags, gpa, size, addr = struct.unpack("<IIQQQ", bytes(buf))
            self.regions.append((gpa, size, addr))
        elif request == k.KVM_GET_SREGS:
            buf[:] = b"\xaa" * len(buf)   # garbage: the test must set CS itself
        elif request == k.KVM_SET_SREGS:
            self.sregs_set = bytes(buf)
        elif request == k.KVM_SET_REGS:
            self.rip = struct.unpack_from("<Q", buf, 16 * 8)[0]
        return 0

    def guest_memory(self, size: int) -> tuple[bytearray, int]:
        mem = bytearray(size)
        addr = 0x7F0000000000 + 0x100000 * len(self.memory)
        self.memory[addr] = mem
        return mem, addr

    def map_vcpu(self, fd: int, size: int) -> bytearray:
        self.run_buf = bytearray(size)
        return self.run_buf

    # --- a tiny real-mode CPU: mov ecx, imm32 / dec ecx; jnz back / mov dx, imm16 /
    # mov al, imm8 / out dx, al / hlt ---------------------------------------------------------
    def _byte(self, gpa: int) -> int:
        for base, size, addr in self.regions:
            if base <= gpa < base + size:
                return self.memory[addr][gpa - base]
        raise OSError(errno.EFAULT, "guest address %#x not backed by any memory slot" % gpa)

    def _exit(self, reason: int) -> int:
        assert self.run_buf is not None
        struct.pack_into("<I", self.run_buf, 8, reason)
        return 0

    def _run(self) -> int:
        assert self.run_buf is not None
        if self.run_exit is not None:
            return self._exit(self.run_exit)
        cs_base = struct.unpack_from("<Q", self.sregs_set or b"\xaa" * 8, 0)[0]
        if cs_base != 0:
            return self._exit(17)   # wrong CS: the CPU would fetch garbage
        dx = al = 0
        for _ in range(32):
            op = self._byte(self.rip)
            code = bytes(self._byte(self.rip + i) for i in range(4)) if op == 0x66 else b""
            if code[:2] == b"\x66\xb9":
                self.ecx = int.from_bytes(bytes(self._byte(self.rip + 2 + i)
                                                for i in range(4)), "little")
                self.rip += 6
            elif code == b"\x66\x49\x75\xfc":                 # 1: dec ecx; jnz 1b
                loops, self.ecx = self.ecx, 0
                self.loops_run += loops
                if self.emulated_s_per_loop:
                    time.sleep(loops * self.emulated_s_per_loop)
                self.rip += 4
            elif op == 0xBA:
                dx = self._byte(self.rip + 1) | (self._byte(self.rip + 2) << 8)
                self.rip += 3
            elif op == 0xB0:
                al = self._byte(self.rip + 1)
                self.rip += 2
            elif op == 0xEE:
                self.rip += 1
                data_offset = 1024
                struct.pack_into("<BBHIQ", self.run_buf, 32, 1, 1, dx, 1, data_offset)
                self.run_buf[data_offset] = al if self.out_byte is None else self.out_byte
                return self._exit(k.KVM_EXIT_IO)
            elif op == 0xF4:
                self.rip += 1
                return self._exit(k.KVM_EXIT_HLT)
            else:
                return self._exit(17)
        return self._exit(17)
