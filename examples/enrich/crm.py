#!/usr/bin/env python3
"""A stand-in CRM for the enrich example: `GET /customers/<id>` answers
`{"id", "tier"}` — "gold" for ids ending in an even digit, else "basic" — and wants the bearer
token the example sends (`CRM_TOKEN`).

    CRM_TOKEN=demo python3 examples/enrich/crm.py [--port 8090]
"""
import argparse, json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Crm(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802
        if self.headers.get("Authorization") != f"Bearer {os.environ.get('CRM_TOKEN', '')}":
            return self.answer(401, {"error": "bad token"})
        if not self.path.startswith("/customers/"):
            return self.answer(404, {"error": "no such path"})
        cid = self.path.rsplit("/", 1)[-1]
        self.answer(200, {"id": cid, "tier": "gold" if cid[-1:] in "02468" else "basic"})

    def answer(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8090)
    port = ap.parse_args().port
    ThreadingHTTPServer(("127.0.0.1", port), Crm).serve_forever()
