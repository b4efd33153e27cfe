#!/usr/bin/env python3
"""tests/integration/slowclient.py — slow HTTP clients for test_slow_clients.sh and bench/api_slow.sh.

Opens COUNT connections to 127.0.0.1:PORT, spread round robin over the source addresses given
(loopback only), and on each sends a request's headers one line every INTERVAL seconds without
ever finishing them (or, with --body, complete headers announcing a body that then comes one
small piece every INTERVAL seconds). Runs for DURATION seconds, then closes what is left and
prints one JSON object:
  opened            connections opened (reconnects included)
  connect_failed    connects refused or reset before they were established
  closed_by_server  connections the server closed (end of stream, reset)
  max_lifetime      longest time, seconds, from connect to the server closing one
  open_at_sample    connections still open at --sample-at seconds (or null)
  open_at_end       connections still open at the end
With --reconnect, a connection the server closed is replaced after --reconnect-delay seconds.
"""
import argparse
import json
import select
import socket
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--addrs", default="127.0.0.1")
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--sample-at", type=float, default=None)
    ap.add_argument("--reconnect", action="store_true")
    ap.add_argument("--reconnect-delay", type=float, default=0.2)
    ap.add_argument("--body", action="store_true")
    a = ap.parse_args()
    addrs = [x for x in a.addrs.split(",") if x]
    for x in addrs:
        if not x.startswith("127."):
            raise SystemExit("slowclient: loopback source addresses only")

    stats = {"opened": 0, "connect_failed": 0, "closed_by_server": 0, "max_lifetime": 0.0,
             "open_at_sample": None, "open_at_end": 0}
    conns = {}  # socket -> [opened_at, next_send_at]
    pending = []  # (when, source address) of reconnects
    t0 = time.monotonic()
    seq = 0

    def open_one(src):
        nonlocal seq
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2.0)
        try:
            s.bind((src, 0))
            s.connect(("127.0.0.1", a.port))
            seq += 1
            if a.body:
                first = ("POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
            else:
                first = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            s.sendall(first.encode())
        except OSError:
            s.close()
            stats["connect_failed"] += 1
            return
        s.setblocking(False)
        now = time.monotonic()
        conns[s] = [now, now + a.interval, src]
        stats["opened"] += 1

    def server_closed(s):
        opened_at, _, src = conns.pop(s)
        s.close()
        stats["closed_by_server"] += 1
        stats["max_lifetime"] = max(stats["max_lifetime"], time.monotonic() - opened_at)
        if a.reconnect:
            pending.append((time.monotonic() + a.reconnect_delay, src))

    for i in range(a.count):
        open_one(addrs[i % len(addrs)])
    while True:
        now = time.monotonic()
        if now - t0 >= a.duration:
            break
        if a.sample_at is not None and stats["open_at_sample"] is None and now - t0 >= a.sample_at:
            stats["open_at_sample"] = len(conns)
        for when, src in [p for p in pending if p[0] <= now]:
            pending.remove((when, src))
            open_one(src)
        socks = list(conns)
        readable = select.select(socks, [], [], 0.05)[0] if socks else []
        if not socks:
            time.sleep(0.05)
        for s in readable:
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                server_closed(s)
            # any answer (e.g. a 408 or 400) is read and ignored; the close follows
        now = time.monotonic()
        for s in list(conns):
            c = conns[s]
            if now < c[1]:
                continue
            c[1] = now + a.interval
            try:
                s.send(b"\"x\":1," if a.body else ("X-Slow-%d: 1\r\n" % seq).encode())
            except BlockingIOError:
                pass
            except OSError:
                server_closed(s)
    stats["open_at_end"] = len(conns)
    for s in conns:
        s.close()
    stats["max_lifetime"] = round(stats["max_lifetime"], 3)
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
