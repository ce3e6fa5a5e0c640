#!/usr/bin/python3
"""A lab real server: answers every request with its own name.

One listener per process, so one port can be stopped alone:
  lab-server.py NAME http PORT        plain HTTP; GET /health -> 200 ok
  lab-server.py NAME https PORT CERT  HTTPS with CERT (key in the same file)
  lab-server.py NAME udp PORT         UDP: replies NAME to any datagram
  lab-server.py query HOST PORT SRC   UDP client: prints the reply (2 s timeout)
  lab-server.py hold HOST PORT SRC DIR
                                      one kept-alive HTTP connection: writes the
                                      first answer to DIR/0 (its source port to
                                      DIR/port), then for each DIR/go-N
                                      asks again on it and writes DIR/N; stops at
                                      DIR/stop (or after 5 minutes)
Listens on every address (the VIP sits on lo), IPv4 and IPv6.
"""
import http.server
import os
import socket
import socketserver
import ssl
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = (b"ok\n" if self.path == "/health" else (self.server.name + "\n").encode())
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class DualStackTCP(socketserver.ThreadingMixIn, http.server.HTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def query(host, port, source):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.settimeout(2)
    sock.sendto(b"who\n", (host, port))
    print(sock.recv(2048).decode().strip())


def hold(host, port, source, directory):
    import time
    sock = socket.create_connection((host, port), timeout=3, source_address=(source, 0))
    stream = sock.makefile("rb")

    def ask():
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n")
            status = stream.readline()
            if not status:
                return "error: connection closed"
            length = 0
            while True:
                line = stream.readline().strip()
                if not line:
                    break
                key, _, value = line.partition(b":")
                if key.lower() == b"content-length":
                    length = int(value)
            return stream.read(length).decode().strip()
        except OSError as e:
            return "error: %s" % e

    def answer(n, text):
        with open(os.path.join(directory, "%d.tmp" % n), "w") as f:
            f.write(text)
        os.rename(os.path.join(directory, "%d.tmp" % n), os.path.join(directory, str(n)))

    with open(os.path.join(directory, "port.tmp"), "w") as f:
        f.write(str(sock.getsockname()[1]))
    os.rename(os.path.join(directory, "port.tmp"), os.path.join(directory, "port"))
    answer(0, ask())
    n, deadline = 1, time.time() + 300
    while time.time() < deadline and not os.path.exists(os.path.join(directory, "stop")):
        if os.path.exists(os.path.join(directory, "go-%d" % n)):
            answer(n, ask())
            n += 1
        time.sleep(0.02)


def main():
    # Descriptors inherited from whoever started the lab (a test runner's
    # output pipe, say) would keep that pipe open for as long as we run.
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    if sys.argv[1] == "query":
        return query(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    if sys.argv[1] == "hold":
        return hold(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    name, kind, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if kind == "udp":
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", port))
        while True:
            _, peer = sock.recvfrom(2048)
            sock.sendto((name + "\n").encode(), peer)
    server = DualStackTCP(("::", port), Handler)
    server.name = name
    if kind == "https":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[4])
        server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
