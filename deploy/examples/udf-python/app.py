"""A Tributary UDF: sentiment and text features for review records.

Speaks the `http` step protocol (docs/udf.md): POST a JSON array of
records, get back a JSON array of the same length in the same order, where
element i is the new value of record i, or null to drop it.

Each record's text (field TEXT_FIELD, default "text") gets
  sentiment: {compound, pos, neu, neg, label}   (VADER, lexicon in the wheel)
  features:  {length, words, exclamations, questions, uppercaseRatio}
Records without a text (missing, not a string, or blank) are dropped (null).

Run: PORT=8080 python app.py   (GET /healthz answers "ok" for probes)
"""

import json
import os
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

TEXT_FIELD = os.environ.get("TEXT_FIELD", "text")
# VADER's own thresholds for a positive or negative compound score.
POSITIVE, NEGATIVE = 0.05, -0.05
MAX_BODY = 64 * 1024 * 1024

analyzer = SentimentIntensityAnalyzer()
WORD = re.compile(r"\b\w+\b")


def features(text):
    letters = [c for c in text if c.isalpha()]
    upper = sum(1 for c in letters if c.isupper())
    return {
        "length": len(text),
        "words": len(WORD.findall(text)),
        "exclamations": text.count("!"),
        "questions": text.count("?"),
        "uppercaseRatio": round(upper / len(letters), 4) if letters else 0.0,
    }


def sentiment(text):
    s = analyzer.polarity_scores(text)
    label = "positive" if s["compound"] >= POSITIVE else "negative" if s["compound"] <= NEGATIVE else "neutral"
    return {"compound": s["compound"], "pos": s["pos"], "neu": s["neu"], "neg": s["neg"], "label": label}


def enrich(record):
    """The new value of one record, or None to drop it."""
    if not isinstance(record, dict):
        return None
    text = record.get(TEXT_FIELD)
    if not isinstance(text, str) or not text.strip():
        return None
    return {**record, "sentiment": sentiment(text), "features": features(text)}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm the
    # second waits for the client's delayed ACK (~40 ms per batch).
    disable_nagle_algorithm = True

    def _answer(self, status, body, ctype="application/json"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/healthz":
            self._answer(200, "ok\n", "text/plain")
        else:
            self._answer(404, json.dumps({"error": "POST a JSON array of records"}))

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._answer(413, json.dumps({"error": f"body over {MAX_BODY} bytes"}))
            return
        try:
            batch = json.loads(self.rfile.read(length))
        except ValueError as e:
            self._answer(400, json.dumps({"error": f"not JSON: {e}"}))
            return
        if not isinstance(batch, list):
            self._answer(400, json.dumps({"error": "expected a JSON array of records"}))
            return
        self._answer(200, json.dumps([enrich(r) for r in batch]))

    def log_message(self, fmt, *args):
        # Requests are counted by Tributary's metrics; keep the log for errors.
        pass


def main():
    port = int(os.environ.get("PORT", "8080"))
    host = os.environ.get("HOST", "0.0.0.0")
    server = ThreadingHTTPServer((host, port), Handler)
    print(f"udf-python listening on {host}:{port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
