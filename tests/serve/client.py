#!/usr/bin/env python3
"""client.py - the HTTP client of the tests/serve scripts, on raw sockets
(no client library between the test and the bytes on the wire).

  client.py get PORT PATH [METHOD [BODY]]
      one request with Connection: close; prints the status code on the
      first line, then the body as received (headers on stderr).
  client.py malformed PORT
      the malformed-request loop: each payload on its own connection (sent,
      then the write side closed or the socket dropped), the answer read; a
      valid GET /healthz after every few must get 200. Then connections held
      open half-sent (a slow client) must not keep a valid request from
      being answered, and more connections than serve's limit at once do
      no harm. Prints one JSON summary; exits 1 on the first failure,
      naming the payload.
"""
import json
import random
import socket
import sys
import time

TIMEOUT_S = 15
PEEK_S = 1


def exchange(port, data, mode="read"):
    """Sends data, then by mode: "read" closes the write side and returns
    the bytes answered (b"" when closed unanswered); "peek" too, but returns
    None when nothing came within PEEK_S (the request may be incomplete:
    serve rightly waits for the rest); "drop" closes the socket at once."""
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
    try:
        try:
            s.sendall(data)
            if mode != "drop":
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # serve may close (or reset) on a bad request before reading all of it
        if mode == "drop":
            return b""
        if mode == "peek":
            s.settimeout(PEEK_S)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            except socket.timeout:
                if mode == "peek" and not out:
                    return None
                raise
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def status_of(answer):
    """The status code of an HTTP answer, None when nothing came back."""
    if not answer:
        return None
    line = answer.split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise ValueError("not an HTTP status line: %r" % line[:200])
    return int(parts[1])


def request(method, path, body=b"", extra=b""):
    head = b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" % (method.encode(), path.encode())
    if body:
        head += b"Content-Length: %d\r\n" % len(body)
    return head + extra + b"\r\n" + body


def cmd_get(port, path, method="GET", body=""):
    answer = exchange(port, request(method, path, body.encode()))
    head, _, rest = answer.partition(b"\r\n\r\n")
    sys.stderr.write(head.decode("latin-1") + "\n")
    sys.stdout.write("%s\n" % status_of(answer))
    sys.stdout.buffer.write(rest)
    return 0


def payloads():
    """(name, bytes, mode, 4xx_or_closed): the malformed requests, fixed
    and fuzzed. Most are sent and the write side closed, so that serve sees
    the end of the request (it must answer or close); truncated ones are
    dropped (the socket closed at once)."""
    good = request("GET", "/metrics")
    fixed = [
        ("empty", b""),
        ("crlf only", b"\r\n\r\n"),
        ("garbage line", b"GARBAGE\r\n\r\n"),
        ("method only", b"GET\r\n\r\n"),
        ("no version", b"GET /metrics\r\n\r\n"),
        ("bad version", b"GET /metrics HTTP/9.9\r\nHost: x\r\n\r\n"),
        ("binary", bytes(range(256)) * 4),
        ("nul in url", b"GET /met\x00rics HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("header without colon", b"GET /metrics HTTP/1.1\r\nHost x\r\n\r\n"),
        ("huge header", b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200000 + b"\r\n\r\n"),
        ("many headers", b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X-H: v\r\n" * 20000 + b"\r\n"),
        ("huge url", b"GET /" + b"m" * 200000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("negative length", b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
        ("huge length", b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n"),
        ("bad chunk", b"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
        ("body on get", b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"),
        ("post body", b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"p" * 100000),
        ("truncated line", b"GET /metr"),
        ("truncated headers", b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-A: "),
        ("bare lf", b"GET /metrics HTTP/1.1\nHost: x\n\n"),
        ("absolute url", b"GET http://127.0.0.1/metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("dot dot", b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("pipelined", good.replace(b"Connection: close\r\n", b"") * 50),
    ]
    incomplete = ("empty", "crlf only", "truncated line", "truncated headers", "binary")
    dropped = ("truncated line", "truncated headers")
    for name, data in fixed:
        yield (name, data, "drop" if name in dropped else "read",
               name not in ("pipelined", "bare lf", "absolute url", "bad version") + incomplete)
    rng = random.Random(22)
    for i in range(300):
        data = bytearray(good)
        kind = i % 3
        if kind == 0:  # flip bytes
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 1:  # truncate
            data = data[: rng.randrange(len(data))]
        else:  # random bytes
            data = bytearray(rng.randbytes(rng.randint(1, 2000)))
        yield "fuzz %d" % i, bytes(data), ("peek", "drop", "read")[kind], False


def check_alive(port, after):
    code = status_of(exchange(port, request("GET", "/healthz")))
    if code != 200:
        raise SystemExit("FAIL: GET /healthz after %s answered %s" % (after, code))


def cmd_malformed(port):
    counts = {}
    for n, (name, data, mode, want_error) in enumerate(payloads()):
        try:
            answer = exchange(port, data, mode)
            code = status_of(answer) if answer is not None else "pending"
        except ValueError as e:
            raise SystemExit("FAIL: payload %s: %s" % (name, e))
        except socket.timeout:
            raise SystemExit("FAIL: payload %s: no answer and no close in %d s" % (name, TIMEOUT_S))
        if want_error and code is not None and (code == "pending" or not 400 <= code < 500):
            raise SystemExit("FAIL: payload %s answered %s, expected 4xx or a closed connection" % (name, code))
        counts[str(code)] = counts.get(str(code), 0) + 1
        if n % 10 == 0 or want_error:
            check_alive(port, name)
    # Slow clients: connections holding half a request do not stop others.
    slow = [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) for _ in range(8)]
    for s in slow:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    check_alive(port, "8 slow clients")
    # More connections than the limit (64), all half-sent: libmicrohttpd
    # leaves the extra ones in the backlog or closes them (which it does is
    # its own business and not asserted); once they go, serve answers again.
    held = [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) for _ in range(80)]
    for s in held:
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
    for s in held + slow:
        s.close()
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        try:
            check_alive(port, "the connection limit")
            break
        except (SystemExit, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    print(json.dumps({"answers": counts}))
    return 0


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "get":
        return cmd_get(int(sys.argv[2]), *sys.argv[3:])
    if len(sys.argv) == 3 and sys.argv[1] == "malformed":
        return cmd_malformed(int(sys.argv[2]))
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
