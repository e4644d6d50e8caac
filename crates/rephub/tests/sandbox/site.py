"""The web site the sandbox tests analyse, served inside its own network namespace.

/benign      a plain page
/eicar       a page carrying the EICAR test string (the shipped YARA rule flags it)
/to-eicar    a redirect to /eicar
/loop-a      a redirect to /loop-b, which redirects back
/huge        a 1 GiB body, written until the reader stops reading
"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EICAR = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
CHUNK = b"a" * 65536


class Site(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def page(self, body):
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def redirect(self, to):
        self.send_response(302)
        self.send_header("Location", to)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        path = self.path.split("?")[0]
        if path.startswith("/benign"):
            self.page("<html><body>nothing to see</body></html>")
        elif path.startswith("/eicar"):
            self.page("<html><body><pre>" + EICAR + "</pre></body></html>")
        elif path == "/to-eicar":
            self.redirect("/eicar")
        elif path == "/loop-a":
            self.redirect("/loop-b")
        elif path == "/loop-b":
            self.redirect("/loop-a")
        elif path == "/huge":
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(1 << 30))
            self.end_headers()
            try:
                for _ in range((1 << 30) // len(CHUNK)):
                    self.wfile.write(CHUNK)
            except (BrokenPipeError, ConnectionResetError):
                pass
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()


ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Site).serve_forever()
