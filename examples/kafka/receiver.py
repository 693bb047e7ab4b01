#!/usr/bin/env python3
"""A small HTTP receiver for the Kafka quick start: keeps one request per Idempotency-Key,
folds the upserts it gets into the current value per _id, and writes them to a file
(one JSON document per line, sorted by _id) after every request.

    python3 examples/kafka/receiver.py PORT OUT.jsonl
"""
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

port, out = int(sys.argv[1]), sys.argv[2]
seen, groups = set(), {}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        key = self.headers.get("Idempotency-Key")
        if key not in seen:
            seen.add(key)
            for doc in json.loads(body):
                groups[doc["_id"]] = doc
            with open(out, "w") as f:
                for _id in sorted(groups):
                    f.write(json.dumps(groups[_id], separators=(",", ":")) + "\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", port), Handler).serve_forever()
