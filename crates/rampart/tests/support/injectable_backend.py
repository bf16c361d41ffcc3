#!/usr/bin/env python3
# DELIBERATELY VULNERABLE -- FOR TESTS ONLY. NEVER EXPOSE THIS ANYWHERE.
#
# A tiny HTTP backend with a classic SQL injection, used as the target of a real
# attack tool (sqlmap) in Rampart's WAF tests: the tool must find the injection
# when it talks to this backend directly (or through Rampart with the WAF off),
# and find nothing through Rampart with the WAF blocking.
#
# Usage: python3 injectable_backend.py PORT
#   Binds 127.0.0.1:PORT only. With PORT 0 a free port is picked. The first line
#   on stdout is always "listening on 127.0.0.1:NNNN" (flushed).
#
# Endpoints:
#   GET /health           -> 200 "ok"
#   GET /products?id=N    -> 200 HTML table of the matching rows. The SQL is built
#                            by string concatenation (injectable on purpose); a SQL
#                            error gives 500 with sqlite's error text.
#
# Python 3 standard library only.

import html
import sqlite3
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PRODUCTS = [
    (1, "Widget", 9.99),
    (2, "Gadget", 24.50),
    (3, "Sprocket", 3.75),
    (4, "Flux capacitor", 1885.00),
    (5, "Doohickey", 12.00),
]

USERS = [
    # Hashes are sha256 of throwaway strings; they only have to look like loot.
    (1, "admin", "8c6976e5b5410415bde908bd4dee15dfb167a9c873fc4bb8a81f6f2ab448a918"),
    (2, "alice", "2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90"),
    (3, "bob", "81b637d8fcd2c6da6359e6963113a1170de795e4b725b84d1e0b4cfd9ec58ce9"),
]


def make_db():
    # One shared in-memory connection; sqlite3 objects are not thread-safe, so a
    # lock serialises access from the server's worker threads.
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    conn.executescript(
        """
        CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL NOT NULL);
        CREATE TABLE users (id INTEGER PRIMARY KEY, username TEXT NOT NULL, password_hash TEXT NOT NULL);
        """
    )
    conn.executemany("INSERT INTO products VALUES (?, ?, ?)", PRODUCTS)
    conn.executemany("INSERT INTO users VALUES (?, ?, ?)", USERS)
    conn.commit()
    return conn


DB = make_db()
DB_LOCK = threading.Lock()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


class Handler(BaseHTTPRequestHandler):
    server_version = "InjectableBackend/1.0"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - quiet logging
        pass

    def send_body(self, status, body, content_type="text/html; charset=utf-8"):
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/health":
            self.send_body(200, "ok", "text/plain; charset=utf-8")
            return
        if url.path == "/products":
            self.products(parse_qs(url.query, keep_blank_values=True))
            return
        self.send_body(404, "not found", "text/plain; charset=utf-8")

    def products(self, query):
        product_id = query.get("id", ["1"])[0]
        # DELIBERATELY INJECTABLE: user input concatenated into SQL.
        sql = "SELECT id, name, price FROM products WHERE id = " + product_id
        try:
            with DB_LOCK:
                rows = DB.execute(sql).fetchall()
        except Exception as exc:  # sqlite3.Error, but also e.g. OverflowError
            body = (
                "<html><head><title>Database error</title></head><body>"
                "<h1>Internal Server Error</h1>"
                f"<p>sqlite3.{type(exc).__name__}: {html.escape(str(exc))}</p>"
                f"<pre>{html.escape(sql)}</pre>"
                "</body></html>"
            )
            self.send_body(500, body)
            return
        items = "".join(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>".format(
                html.escape(str(r[0])), html.escape(str(r[1])), html.escape(str(r[2]))
            )
            for r in rows
        )
        body = (
            "<html><head><title>Products</title></head><body>"
            "<h1>Products</h1>"
            "<table><tr><th>id</th><th>name</th><th>price</th></tr>"
            f"{items}</table>"
            f"<p>{len(rows)} result(s)</p>"
            "</body></html>"
        )
        self.send_body(200, body)


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: injectable_backend.py PORT\n")
        sys.exit(2)
    port = int(sys.argv[1])
    server = Server(("127.0.0.1", port), Handler)
    host, bound = server.server_address[:2]
    sys.stdout.write(f"listening on {host}:{bound}\n")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
