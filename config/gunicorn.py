"""gunicorn's configuration for the web process, wherever it runs (`make run`, the Dockerfile).

Loaded with `gunicorn -c python:config.gunicorn config.wsgi`; the bind address, workers and
threads stay on the command line because each place sizes them differently.
"""


def pre_request(worker, req):
    """Close the connection after a request whose body the application may leave unread.

    AlertFlow answers 413 without reading a body over ALERTFLOW_MAX_BODY_BYTES, and stops reading
    a chunked one at that limit (alertflow.middleware.BodySizeLimitMiddleware). gunicorn drains
    at most 64 KiB of what is left, after its response already said `keep-alive`: a client that
    believed it then lost its next request on that connection. Deciding before the response is
    written makes gunicorn say `Connection: close` and mean it. A chunked body's size is unknown
    until read, so those connections are closed too (rare for an API client).
    """
    # Imported here: the worker has loaded Django by now, the master reading this file has not.
    from alertflow.middleware import body_is_chunked, over_body_limit

    headers = dict(req.headers)  # gunicorn spells the names in upper case
    try:
        declared = int(headers.get("CONTENT-LENGTH") or 0)
    except ValueError:
        declared = 0  # gunicorn itself refuses a malformed Content-Length
    if body_is_chunked(headers.get("TRANSFER-ENCODING", "")) or over_body_limit(declared):
        req.force_close()


def child_exit(server, worker):
    """A worker is gone: its live gauges (websocket connections are counted by the ws process,
    but any `livesum` gauge a web worker sets) must stop counting in /metrics. Its counters stay."""
    from alertflow.multiproc import mark_process_dead

    mark_process_dead(worker.pid)
