#!/usr/bin/python3
"""A webhook receiver for tests/alert_hooks_test.sh (standard library only).

  webhook_receiver.py PORT_FILE LOG_FILE

Listens on a free 127.0.0.1 port, writes the port to PORT_FILE once it is
listening, and appends one JSON line per POST to LOG_FILE:
{"path": ..., "body": <the JSON body>}. Answers 204 to every POST, so each
alert counts as delivered at its first attempt. Runs until killed.
"""
import http.server
import json
import os
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n)
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"unparsed": raw.decode("utf-8", "replace")}
        with open(self.server.log_file, "a") as f:
            f.write(json.dumps({"path": self.path, "body": body}) + "\n")
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass  # quiet: the log file is the record


def main(port_file, log_file):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.log_file = log_file
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, port_file)  # appears whole
    server.serve_forever()


if __name__ == "__main__":
    main(*sys.argv[1:3])
