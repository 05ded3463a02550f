"""A log writer process for the rotation and crash tests.

    python writer.py PATH LINES RATE ROTATE_BYTES MODE REPORT

Appends ``LINES`` numbered lines (``%08d`` + padding) at ``RATE`` lines per second to PATH, and
every ``ROTATE_BYTES`` rotates the file: ``rename`` (PATH -> PATH.N, new PATH created, as
logrotate's default and kubelet do), ``copytruncate`` (PATH copied to PATH.N, then truncated
to 0 while the writer keeps its O_APPEND descriptor), or ``none``. At the end writes a JSON
report to REPORT: the first line number of every generation.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time


def main() -> None:
    path, lines, rate, rotate_bytes, mode, report = sys.argv[1:7]
    total, per_sec, limit = int(lines), int(rate), int(rotate_bytes)
    pad = b"x" * 40
    batch = max(1, per_sec // 100)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    written, gen, starts = 0, 0, [0]
    t0 = time.monotonic()
    i = 0
    while i < total:
        n = min(batch, total - i)
        data = b"".join(b"%08d %s\n" % (j, pad) for j in range(i, i + n))
        os.write(fd, data)
        i += n
        written += len(data)
        if limit and written >= limit and i < total:
            gen += 1
            if mode == "rename":
                os.close(fd)
                os.rename(path, f"{path}.{gen}")
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            elif mode == "copytruncate":
                shutil.copyfile(path, f"{path}.{gen}")
                os.truncate(path, 0)
            starts.append(i)
            written = 0
        ahead = i / per_sec - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)
    os.close(fd)
    elapsed = time.monotonic() - t0
    with open(report, "w") as fh:
        json.dump({"starts": starts, "seconds": elapsed}, fh)


if __name__ == "__main__":
    main()
