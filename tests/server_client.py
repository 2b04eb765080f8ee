#!/usr/bin/python3
"""Helpers for tests/server_test.sh: the parts curl cannot do well.

Run with /usr/bin/python3; standard library only. Every subcommand prints
one JSON object (or JSON Lines for `burst`) on stdout; server_test.sh makes
the assertions, so each check is printed (and fails) in one place.

  token-unknown PREFIX [N]              N well-formed tokens (valid checksum) nobody issued
  token-wellformed TOKEN                exit 0 when TOKEN's checksum is right
  burst HOST PORT METHOD PATH TOKEN BODY N
                                        N requests on one keep-alive connection
  truncated HOST PORT                   Content-Length 100, 10 bytes sent, close
  slowloris HOST PORT CONNS SECONDS     header bytes one per second on CONNS
                                        connections while /healthz is probed
  load HOST PORT PID SIGNAL AFTER THREADS TOKEN MODE
                                        THREADS threads verify TOKEN (MODE verify) or
                                        verify and sign with it (MODE mixed) in a
                                        loop; SIGNAL goes to PID after AFTER seconds
  race HOST PORT TOKEN THREADS ATTEMPTS all threads verify TOKEN at once
  slowread HOST PORT PATH TOKEN HOLD    GET PATH with a tiny receive buffer, read
                                        nothing for HOLD seconds, then all of it
"""
import http.client
import json
import os
import select
import signal
import socket
import sys
import threading
import time
import zlib

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def base62(data, width):
    # Same as core::to_base62: the big-endian number in base 62, left-padded with '0'.
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 62)
        out = ALPHABET[r] + out
    return out.rjust(width, "0")


def checksum(prefix_and_body):
    crc = zlib.crc32(prefix_and_body.encode()) & 0xFFFFFFFF
    return base62(crc.to_bytes(4, "big"), 6)


def token_unknown(prefix):
    t = prefix + "_" + base62(os.urandom(24), 33)
    return t + checksum(t)


def token_wellformed(token):
    return len(token) > 40 and checksum(token[:-6]) == token[-6:]


def request(conn, method, path, token=None, body=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    return r, data


def cmd_burst(host, port, method, path, token, body, n):
    conn = http.client.HTTPConnection(host, int(port), timeout=20)
    t0 = time.monotonic()
    for _ in range(int(n)):
        r, data = request(conn, method, path, token or None, body.encode() if body else None)
        print(json.dumps({"status": r.status, "ms": round((time.monotonic() - t0) * 1000, 1),
                          "ratelimit_remaining": r.getheader("RateLimit-Remaining"),
                          "body": json.loads(data)}))
    conn.close()


def cmd_truncated(host, port):
    # 1: promise 100 bytes, send 10, close at once.
    s = socket.create_connection((host, int(port)), timeout=5)
    s.sendall(b"POST /v1/tokens/verify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 100\r\n\r\n" + b'{"token":"')
    s.close()
    # 2: the same, but half-close and see what the server says.
    s = socket.create_connection((host, int(port)), timeout=5)
    s.sendall(b"POST /v1/tokens/verify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 100\r\n\r\n" + b'{"token":"')
    s.shutdown(socket.SHUT_WR)
    answer = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    except OSError as e:
        answer += ("<%s>" % e).encode()
    s.close()
    # 3: headers cut in the middle.
    s = socket.create_connection((host, int(port)), timeout=5)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHo")
    s.close()
    print(json.dumps({"half_close_answer": answer.decode(errors="replace")}))


def cmd_slowloris(host, port, conns, seconds):
    conns, seconds = int(conns), float(seconds)
    header = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100
    socks = []
    for _ in range(conns):
        s = socket.create_connection((host, int(port)), timeout=5)
        s.setblocking(False)
        socks.append(s)
    start = time.monotonic()
    closed = {}  # index -> seconds after start
    probes = []  # (ok, ms)
    stop = threading.Event()

    def prober():
        while not stop.is_set():
            t = time.monotonic()
            ok = False
            try:
                c = http.client.HTTPConnection(host, int(port), timeout=5)
                c.request("GET", "/healthz")
                r = c.getresponse()
                ok = r.status == 200 and json.loads(r.read()).get("status") == "ok"
                c.close()
            except Exception:
                ok = False
            probes.append((ok, (time.monotonic() - t) * 1000))
            stop.wait(0.25)

    th = threading.Thread(target=prober)
    th.start()
    pos = 0
    next_send = start
    while len(closed) < conns and time.monotonic() - start < seconds:
        now = time.monotonic()
        if now >= next_send:
            for i, s in enumerate(socks):
                if i in closed:
                    continue
                try:
                    s.send(header[pos % len(header):pos % len(header) + 1])
                except OSError:
                    closed[i] = now - start
            pos += 1
            next_send += 1.0
        live = [s for i, s in enumerate(socks) if i not in closed]
        readable, _, _ = select.select(live, [], [], 0.05)
        for s in readable:
            i = socks.index(s)
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:  # FIN or RST from the server
                closed[i] = time.monotonic() - start
    stop.set()
    th.join()
    for s in socks:
        s.close()
    print(json.dumps({
        "conns": conns,
        "closed": len(closed),
        "closed_after_min": round(min(closed.values()), 2) if closed else None,
        "closed_after_max": round(max(closed.values()), 2) if closed else None,
        "bytes_sent_per_conn": pos,
        "probes": len(probes),
        "probe_failures": sum(1 for ok, _ in probes if not ok),
        "probe_max_ms": round(max((ms for _, ms in probes), default=0), 1),
    }))


def cmd_load(host, port, pid, signame, after, threads, svc, mode):
    """Verify and sign in a loop on `threads` threads; send `signame` to
    `pid` after `after` seconds; keep going until the server is gone.

    Outcomes per request: "ok" (status line and a complete JSON body),
    "cut" (a status line, then a short or unparseable body: never allowed),
    "noresp" (refused, reset or closed before any status line: allowed once
    the signal was sent, but never for a request whose bytes were all sent
    before it: "lost_sent_before_signal" must stay 0)."""
    pid, after, threads = int(pid), float(after), int(threads)
    lock = threading.Lock()
    stats = {"ok": 0, "cut": 0, "noresp": 0, "noresp_before_signal": 0, "lost_sent_before_signal": 0,
             "ok_after_signal": 0, "straddling": 0, "valid": 0, "status": {}, "cut_examples": []}
    sig_time = [None]
    kill_time = [None]  # taken just before the signal is sent
    stop = threading.Event()
    verify_body = json.dumps({"token": svc}).encode()
    sign_body = json.dumps({"data": "aGVsbG8gd29ybGQ=", "encoding": "base64"}).encode()

    def worker(n):
        keepalive = n % 2 == 0
        conn = None
        refused_in_a_row = 0
        i = 0
        while not stop.is_set():
            i += 1
            if mode == "verify" or (i + n) % 2:
                path, body = "/v1/tokens/verify", verify_body
            else:
                path, body = "/v1/keys/pay-ecdsa/sign", sign_body
            t_start = time.monotonic()
            sent_at = None
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=15)
            try:
                conn.request("POST", path, body=body,
                             headers={"Content-Type": "application/json", "Authorization": "Bearer " + svc})
                # On loopback the bytes are in the server's socket once send() returns.
                sent_at = time.monotonic()
                r = conn.getresponse()
            except (ConnectionError, http.client.RemoteDisconnected, socket.timeout, OSError) as e:
                conn.close()
                conn = None
                with lock:
                    stats["noresp"] += 1
                    if sig_time[0] is None:
                        stats["noresp_before_signal"] += 1
                    if sent_at is not None and (kill_time[0] is None or sent_at < kill_time[0]):
                        stats["lost_sent_before_signal"] += 1
                if isinstance(e, ConnectionRefusedError):
                    refused_in_a_row += 1
                    if refused_in_a_row >= 3:
                        return
                time.sleep(0.02)
                continue
            except http.client.HTTPException as e:  # a partial status line
                conn.close()
                conn = None
                with lock:
                    stats["cut"] += 1
                    stats["cut_examples"].append("%s: %r" % (path, e))
                continue
            refused_in_a_row = 0
            try:
                data = r.read()
                j = json.loads(data)
                good = isinstance(j, dict) and ("code" in j or "signature" in j or "error" in j)
            except Exception as e:  # IncompleteRead, reset mid-body, bad JSON
                good = False
                data = repr(e).encode()
            with lock:
                if good:
                    stats["ok"] += 1
                    stats["status"][str(r.status)] = stats["status"].get(str(r.status), 0) + 1
                    if r.status != 200:
                        stats["cut_examples"].append("%s: HTTP %d %r (sent %s the signal)" % (
                            path, r.status, data[:200], "before" if kill_time[0] is None or (
                                sent_at or 0) < kill_time[0] else "after"))
                    if j.get("code") == "VALID":
                        stats["valid"] += 1
                    if sig_time[0] is not None:
                        stats["ok_after_signal"] += 1
                        if t_start < sig_time[0]:
                            stats["straddling"] += 1
                else:
                    stats["cut"] += 1
                    stats["cut_examples"].append("%s: HTTP %d %r" % (path, r.status, data[:200]))
            if not keepalive or r.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None

    ths = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in ths:
        t.start()
    time.sleep(after)
    kill_time[0] = time.monotonic()
    os.kill(pid, getattr(signal, signame))
    sig_time[0] = time.monotonic()
    deadline = sig_time[0] + 20
    for t in ths:
        t.join(max(0.1, deadline - time.monotonic()))
    stop.set()
    for t in ths:
        t.join()
    stats["cut_examples"] = stats["cut_examples"][:5]
    print(json.dumps(stats))


def cmd_race(host, port, token, threads, attempts):
    threads, attempts = int(threads), int(attempts)
    codes = {}
    lock = threading.Lock()
    go = threading.Barrier(threads)

    def worker():
        conn = http.client.HTTPConnection(host, int(port), timeout=20)
        go.wait()
        for _ in range(attempts):
            _, data = request(conn, "POST", "/v1/tokens/verify", None, json.dumps({"token": token}).encode())
            c = json.loads(data)["code"]
            with lock:
                codes[c] = codes.get(c, 0) + 1
        conn.close()

    ths = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    print(json.dumps(codes))


def cmd_slowread(host, port, path, token, hold):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    s.settimeout(30)
    s.connect((host, int(port)))
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n"
               % (path, token)).encode())
    time.sleep(float(hold))
    data = b""
    error = None
    while True:
        try:
            chunk = s.recv(1 << 20)
        except OSError as e:
            error = repr(e)
            break
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    length = None
    for l in lines[1:]:
        k, _, v = l.partition(":")
        if k.strip().lower() == "content-length":
            length = int(v)
    try:
        json.loads(body)
        json_ok = True
    except ValueError:
        json_ok = False
    print(json.dumps({"status_line": lines[0], "content_length": length, "received": len(body),
                      "json_ok": json_ok, "error": error}))


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "token-unknown":
        for _ in range(int(args[1]) if len(args) > 1 else 1):
            print(token_unknown(args[0]))
    elif cmd == "token-wellformed":
        return 0 if token_wellformed(args[0]) else 1
    elif cmd == "burst":
        cmd_burst(*args)
    elif cmd == "truncated":
        cmd_truncated(*args)
    elif cmd == "slowloris":
        cmd_slowloris(*args)
    elif cmd == "load":
        host, port, pid, signame, after, threads, token, mode = args
        cmd_load(host, int(port), pid, signame, after, threads, token, mode)
    elif cmd == "race":
        cmd_race(*args)
    elif cmd == "slowread":
        cmd_slowread(*args)
    else:
        print("unknown subcommand " + cmd, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
