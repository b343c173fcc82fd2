"""A tiny WSGI app for the gunicorn test: says which process answered."""
import os


def app(environ, start_response):
    body = ("%s %d\n" % (os.environ.get("ROLLOVER_GENERATION", "?"), os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
