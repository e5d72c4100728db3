#!/usr/bin/env python3
"""A containerd shim v2 that misbehaves, for crius's bad-input tests. It speaks the shim's
command line (`-v`, `start`) and enough ttrpc to be met over its socket, then fails in the
way its file name says:

  garbage  answers every call with bytes that are no ttrpc frame
  hangs    answers Connect, then never answers another call
  dies     answers Connect, then exits in the middle of the next call (Create)

Its socket is /run/crius-e2e-MODE-ID.sock; `start` forks the long-lived part and prints
the address, as a real shim does."""

import os
import socket
import struct
import sys

MODE = os.path.basename(sys.argv[0]).split(".")[0]
ARGS = sys.argv[1:]


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def read_varint(buf, i):
    shift = n = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def fields(buf):
    """The length-delimited fields of a protobuf message: {number: bytes}."""
    out, i = {}, 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, i = read_varint(buf, i)
        elif wire == 2:
            n, i = read_varint(buf, i)
            out.setdefault(number, buf[i : i + n])
            i += n
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            return out
    return out


def recv_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def serve(conn):
    while True:
        head = recv_exact(conn, 10)
        if head is None:
            return
        length, stream, _kind, _flags = struct.unpack(">IIBB", head)
        body = recv_exact(conn, length)
        if body is None:
            return
        method = fields(body).get(2, b"").decode()
        if MODE == "garbage":
            conn.sendall(b"\xde\xad\xbe\xef not ttrpc at all \x00\x01\x02" * 4)
            continue
        if method == "Connect":
            # ConnectResponse{shim_pid}, in a ttrpc Response{payload}.
            payload = b"\x08" + varint(os.getpid())
            resp = b"\x12" + varint(len(payload)) + payload
            conn.sendall(struct.pack(">IIBB", len(resp), stream, 2, 0) + resp)
        elif MODE == "dies":
            os._exit(3)
        # hangs: no answer.


def main():
    if ARGS[:1] == ["-v"]:
        print("broken-shim (" + MODE + ")")
        return
    if "start" not in ARGS:
        return
    pod = ARGS[ARGS.index("-id") + 1]
    path = "/run/crius-e2e-%s-%s.sock" % (MODE, pod[:16])
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)
    if os.fork():
        print("unix://" + path, flush=True)
        return
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    while True:
        conn, _ = server.accept()
        serve(conn)
        conn.close()


main()
