#!/usr/bin/python3
"""A webhook receiver for tests/alert_hooks_test.sh (standard library only).

  webhook_receiver.py PORT_FILE LOG_FILE [CERT_FILE KEY_FILE]

Listens on a free 127.0.0.1 port, writes the port to PORT_FILE once it is
listening, and appends one JSON line per POST to LOG_FILE:
{"path": ..., "status": <the answer>, "body": <the JSON body>}. Answers 204,
so an alert counts as delivered at its first attempt, except on paths that
start with /flaky: there the first two POSTs get 503 (the sender must retry).
With CERT_FILE and KEY_FILE (PEM) it speaks HTTPS instead. Runs until killed.
"""
import http.server
import json
import os
import ssl
import sys
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    flaky_seen = {}
    lock = threading.Lock()

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n)
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"unparsed": raw.decode("utf-8", "replace")}
        status = 204
        if self.path.startswith("/flaky"):
            with Handler.lock:
                seen = Handler.flaky_seen.get(self.path, 0)
                Handler.flaky_seen[self.path] = seen + 1
            if seen < 2:
                status = 503
        with Handler.lock, open(self.server.log_file, "a") as f:
            f.write(json.dumps({"path": self.path, "status": status, "body": body}) + "\n")
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args):
        pass  # quiet: the log file is the record


def main(port_file, log_file, cert_file=None, key_file=None):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.log_file = log_file
    if cert_file:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_file, key_file)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, port_file)  # appears whole
    server.serve_forever()


if __name__ == "__main__":
    main(*sys.argv[1:5])
