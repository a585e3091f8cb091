"""The demo's TCP transfer: `serve PORT` answers two connections, `transfer HOST PORT MIB`
makes them and prints the throughput each way.

The first connection uploads MIB mebibytes to the server, which answers with the byte count it
read; the second downloads as many from the server. Each side checks every byte's pattern.
"""

import socket
import sys
import time

CHUNK = 1 << 16
PATTERN = bytes(range(256)) * (CHUNK // 256)


def send_pattern(connection, total):
    sent = 0
    while sent < total:
        sent += connection.send(PATTERN[: min(CHUNK, total - sent)])


def receive_pattern(connection):
    """Reads until the peer closes; the count, after checking every byte."""
    received = 0
    while True:
        chunk = connection.recv(CHUNK)
        if not chunk:
            return received
        offset = received % 256
        expected = (PATTERN[offset:] + PATTERN[:offset])[: len(chunk)]
        if chunk != expected:
            sys.exit(f"demo_tcp: corrupt data at byte {received}")
        received += len(chunk)


def receive_count(connection):
    count = b""
    while len(count) < 8:
        chunk = connection.recv(8 - len(count))
        if not chunk:
            sys.exit("demo_tcp: the connection closed early")
        count += chunk
    return int.from_bytes(count, "big")


def serve(port):
    listener = socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True)
    print("listening", flush=True)
    connection, _ = listener.accept()
    with connection:
        count = receive_pattern(connection)
        connection.sendall(count.to_bytes(8, "big"))
    connection, _ = listener.accept()
    with connection:
        total = receive_count(connection)
        send_pattern(connection, total)


def transfer(host, port, mebibytes):
    total = mebibytes << 20
    with socket.create_connection((host, port)) as connection:
        start = time.monotonic()
        send_pattern(connection, total)
        connection.shutdown(socket.SHUT_WR)
        acknowledged = receive_count(connection)
        upload = time.monotonic() - start
    if acknowledged != total:
        sys.exit(f"demo_tcp: sent {total} bytes, the server read {acknowledged}")
    with socket.create_connection((host, port)) as connection:
        start = time.monotonic()
        connection.sendall(total.to_bytes(8, "big"))
        received = receive_pattern(connection)
        download = time.monotonic() - start
    if received != total:
        sys.exit(f"demo_tcp: asked for {total} bytes, received {received}")
    for direction, seconds in (("upload  ", upload), ("download", download)):
        rate = total * 8 / seconds / 1e9
        print(f"TCP {direction} {mebibytes} MiB to {host}: {seconds:.2f} s, {rate:.2f} Gbit/s")


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(int(sys.argv[2]))
    elif sys.argv[1:2] == ["transfer"]:
        transfer(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(__doc__)
