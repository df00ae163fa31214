#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Reads a qemu serial console from a unix socket, for the migration test.

  conlog.py SOCK OUT TIMES

Connects to SOCK (qemu's `-chardev socket,server=on,wait=on`: qemu waits for
us before it starts the guest; retried for 30 s until it exists), copies every
byte to OUT as it comes, and for every line end writes the host's clock
(time.time(), seconds) and the line as far as this console saw it to TIMES.
Exits when qemu closes the console."""
import socket
import sys
import time


def main(path, out, times):
    deadline = time.monotonic() + 30
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            break
        except OSError:
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    line = b""
    with open(out, "ab", buffering=0) as o, open(times, "a") as t:
        while True:
            data = s.recv(65536)
            if not data:
                break
            now = time.time()
            o.write(data)
            parts = (line + data).split(b"\n")
            line = parts.pop()
            for p in parts:
                t.write("%.6f\t%s\n" % (now, p.decode("utf-8", "replace").rstrip("\r")))
            t.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
