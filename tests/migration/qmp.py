#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A small QMP client for the migration test.

  qmp.py SOCK COMMAND [JSON-ARGS]     run one command, print its return (JSON)
  qmp.py SOCK migrate URI TIMEOUT     migrate to URI and wait until it ends;
                                      print query-migrate's last answer (JSON)
                                      and exit 0 only when it completed
  qmp.py SOCK wait-status STATUS TIMEOUT   wait until query-status says STATUS
"""
import json
import socket
import sys
import time


class QMP:
    def __init__(self, path, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.f = self.sock.makefile("rwb")
        greeting = self.read()
        if "QMP" not in greeting:
            raise RuntimeError("no QMP greeting: %r" % greeting)
        self.cmd("qmp_capabilities")

    def read(self):
        while True:
            line = self.f.readline()
            if not line:
                raise RuntimeError("QMP connection closed")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def cmd(self, name, **args):
        req = {"execute": name}
        if args:
            req["arguments"] = args
        self.f.write(json.dumps(req).encode() + b"\n")
        self.f.flush()
        msg = self.read()
        if "error" in msg:
            raise RuntimeError("%s: %s" % (name, msg["error"].get("desc", msg["error"])))
        return msg.get("return")


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    q = QMP(argv[1])
    what = argv[2]
    if what == "migrate":
        uri, timeout = argv[3], float(argv[4])
        q.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 30, "downtime-limit": 300})
        q.cmd("migrate", uri=uri)
        deadline = time.monotonic() + timeout
        while True:
            info = q.cmd("query-migrate")
            status = info.get("status")
            if status in ("completed", "failed", "cancelled"):
                break
            if time.monotonic() > deadline:
                q.cmd("migrate_cancel")
                info["status"] = "timeout"
                break
            time.sleep(0.05)
        print(json.dumps(info))
        return 0 if info.get("status") == "completed" else 1
    if what == "wait-status":
        want, timeout = argv[3], float(argv[4])
        deadline = time.monotonic() + timeout
        while True:
            st = q.cmd("query-status")
            if st.get("status") == want:
                print(json.dumps(st))
                return 0
            if time.monotonic() > deadline:
                print(json.dumps(st))
                return 1
            time.sleep(0.1)
    args = json.loads(argv[3]) if len(argv) > 3 else {}
    print(json.dumps(q.cmd(what, **args)))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (OSError, RuntimeError, ValueError) as e:
        print("qmp: %s" % e, file=sys.stderr)
        sys.exit(1)
