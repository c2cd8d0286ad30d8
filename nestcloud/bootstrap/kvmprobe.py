"""The readiness check's KVM smoke test, run where it cannot hang its caller.

l1check bounds the test with SIGALRM, which only the main thread receives, and no signal gets a
KVM_RUN out of the kernel if it is stuck there. Host-side callers (``nestcloud doctor``, a
provider choosing between KVM and emulation, code in any thread) run it here instead: in a
child Python that imports l1check by path (stdlib only, as on an L1) and is killed when it
outlives the timeout. Not shipped to the L1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from nestcloud.bootstrap import l1check

# The child: import l1check from its directory, run the test, print the result as JSON.
_CHILD = ("import json, sys; sys.path.insert(0, sys.argv[1]); import l1check; "
          "print(json.dumps(l1check.kvm_smoke_test(None, sys.argv[2], float(sys.argv[3]))))")


def smoke_test(device: str = "/dev/kvm", timeout_s: float = l1check.SMOKE_TIMEOUT_S, *,
               grace_s: float = 10.0) -> tuple[bool, str, dict[str, Any]]:
    """``l1check.kvm_smoke_test`` in a child process, killed ``grace_s`` after its own
    timeout; (ok, detail, facts) as that function returns them."""
    argv = [sys.executable or "python3", "-I", "-c", _CHILD,
            os.path.dirname(os.path.abspath(l1check.__file__)), device, str(timeout_s)]
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout_s + grace_s, check=False)
    except subprocess.TimeoutExpired:
        return False, (f"the KVM smoke test did not finish within {timeout_s + grace_s:g} s "
                       "and was killed (KVM_RUN stuck in the kernel)"), {"exits": []}
    except OSError as exc:
        return False, f"could not start {argv[0]} for the KVM smoke test: {exc}", {"exits": []}
    try:
        ok, detail, facts = json.loads(proc.stdout.strip().splitlines()[-1])
        return bool(ok), str(detail), dict(facts)
    except (ValueError, IndexError, TypeError):
        tail = " ".join((proc.stderr or proc.stdout).split())[-160:]
        return False, (f"the KVM smoke test process ended without a result (exit "
                       f"{proc.returncode}): {tail or 'no output'}"), {"exits": []}
