#!/usr/bin/env python3
"""receiver.py - the webhook endpoint of the tests/deliver tests: a real HTTP
server on loopback (http.server, one thread per connection, HTTP/1.1
keep-alive) that checks every request's Standard Webhooks signature with its
own implementation (Python's hmac and base64, not stele's code), answers from
a scripted plan and logs every request as one JSON line.

usage: receiver.py --secret-file F --log F --port-file F [--plan F]
       receiver.py --self-test   (the signature of the Standard Webhooks
                                  specification's example; exit 0 if it matches)

The plan (JSON) says what to answer; anything it does not script gets 200:
  {"first": [R, ...],            the first requests of the run, whatever they carry
   "by_lsn": {"LSN": [R, ...]}}  the event's 1st, 2nd, ... request
where R is a status or {"status": S, "retry_after": "TEXT", "body": "TEXT",
"hold_ms": N} (hold_ms: wait that long before answering). "retry_after_in_s": N
sends Retry-After as the HTTP date N seconds from now.

A log line: {"n", "id", "lsn", "stream", "attempt" (1, 2, ... per webhook-id),
"status", "sig_ok", "ts_ok", "active" (requests being handled when this one
arrived, itself included), "t" (monotonic seconds when answered), "sha"
(SHA-256 of the body), "x_test" and "content_type" (those headers)}. It is written, flushed, before the answer is sent, so
the log's order is the order in which the deliverer learnt the answers.
"""
import argparse
import base64
import email.utils
import hashlib
import hmac
import http.server
import json
import os
import signal
import sys
import threading
import time


def signature(key, wid, ts, body):
    """The webhook-signature value: v1, base64(HMAC-SHA256(key, id.ts.body))."""
    mac = hmac.new(key, wid.encode() + b"." + ts.encode() + b"." + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def self_test():
    """The example of the Standard Webhooks specification (standardwebhooks.com)."""
    key = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    got = signature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", b'{"test": 2432232314}')
    want = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    if got != want:
        print("receiver.py: the specification's example signs as %s, not %s" % (got, want), file=sys.stderr)
        return 1
    return 0


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    ap = argparse.ArgumentParser()
    ap.add_argument("--secret-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--plan")
    args = ap.parse_args()
    secret = open(args.secret_file).read().strip()
    assert secret.startswith("whsec_")
    key = base64.b64decode(secret[len("whsec_"):], validate=True)
    plan = json.load(open(args.plan)) if args.plan else {}
    first = plan.get("first", [])
    by_lsn = plan.get("by_lsn", {})
    log = open(args.log, "a", buffering=1)
    lock = threading.Lock()
    state = {"n": 0, "active": 0, "seen": {}}

    def answer_for(n, lsn, attempt):
        if n < len(first):
            r = first[n]
        else:
            script = by_lsn.get(str(lsn), [])
            r = script[attempt - 1] if attempt <= len(script) else 200
        return r if isinstance(r, dict) else {"status": r}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go as two writes: no 40 ms delayed-ACK stall

        def log_message(self, *a):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            wid = self.headers.get("webhook-id", "")
            ts = self.headers.get("webhook-timestamp", "")
            sigs = self.headers.get("webhook-signature", "").split()
            want = signature(key, wid, ts, body)
            sig_ok = any(hmac.compare_digest(s, want) for s in sigs)
            ts_ok = ts.isdigit() and abs(time.time() - int(ts)) < 300
            try:
                ev = json.loads(body)
            except ValueError:
                ev = {}
            with lock:
                n = state["n"]
                state["n"] += 1
                state["active"] += 1
                active = state["active"]
                attempt = state["seen"].get(wid, 0) + 1
                state["seen"][wid] = attempt
            r = answer_for(n, ev.get("lsn"), attempt)
            if r.get("hold_ms"):
                time.sleep(r["hold_ms"] / 1000.0)
            status = r.get("status", 200)
            out = r.get("body", "ok").encode()
            line = {"n": n, "id": wid, "lsn": ev.get("lsn"), "stream": ev.get("stream"), "attempt": attempt,
                    "status": status, "sig_ok": sig_ok, "ts_ok": ts_ok, "active": active,
                    "t": time.monotonic(), "sha": hashlib.sha256(body).hexdigest(),
                    "x_test": self.headers.get("X-Test"), "content_type": self.headers.get("Content-Type")}
            with lock:
                state["active"] -= 1
                log.write(json.dumps(line) + "\n")
            try:
                self.send_response(status)
                if "retry_after" in r:
                    self.send_header("Retry-After", r["retry_after"])
                if "retry_after_in_s" in r:
                    self.send_header("Retry-After", email.utils.formatdate(time.time() + r["retry_after_in_s"],
                                                                           usegmt=True))
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the deliverer gave up on this request (its timeout)

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128

    srv = Server(("127.0.0.1", 0), Handler)
    signal.signal(signal.SIGTERM, lambda *a: (log.flush(), os._exit(0)))
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, args.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
