"""gunicorn settings shipped with flask-idms-webhooks (``gunicorn -c
python:flask_idms_webhooks.gunicorn_conf "myapp:create_app()"``): threaded workers, so a
few slow clients do not hold every worker, and an access log that never shows task keys,
job tokens or signatures (see ``flask_idms_webhooks.accesslog``). On the open internet,
put a buffering proxy (nginx) in front: see docs/deployment.rst. ``GUNICORN_BIND`` (or
``PORT``), ``GUNICORN_WORKERS`` and ``GUNICORN_THREADS`` set the obvious."""

import os

bind = os.environ.get("GUNICORN_BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
# A sync worker serves one connection at a time: one half-sent request holds it for the
# whole timeout. A gthread worker serves `threads` requests at once (a half-sent request
# holds one thread), and keeps idle keep-alive connections, and connections that send
# nothing for 5 s, in its event loop. Requests are short and wait on Redis, not the CPU.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# The worker's event loop beats the heartbeat: this restarts a worker that hangs, it does
# not bound one request (the Redis client's timeouts do).
timeout = 30
# Time for requests in flight to end on a restart or SIGTERM.
graceful_timeout = 10
# Seconds an idle keep-alive connection, or one that has sent nothing, is kept open.
keepalive = 5
accesslog = "-"
errorlog = "-"
logger_class = "flask_idms_webhooks.accesslog.RedactingLogger"
control_socket_disable = True
