"""Runs a command and waits for every process it leaves behind, so that GNU time counts them all.

``regmig --processes N`` forks its workers from a fork server (migrate.runners), a process its
pass never waits for: the server ends when the pass's end closes its pipe, orphaned, and its CPU
(its workers' included) would be counted by no one. As a child subreaper (Linux
``PR_SET_CHILD_SUBREAPER``) this process adopts such orphans and waits for them, so their
resource use joins its own children's, which is what ``time`` reports. It adds one small
interpreter's start-up to every row alike.

    python bench/reap.py COMMAND [ARGS...]
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36


def main() -> int:
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit(f"reap: prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")
    code = subprocess.call(sys.argv[1:])
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return code


if __name__ == "__main__":
    sys.exit(main())
