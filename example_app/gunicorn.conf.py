# gunicorn settings shipped with flask-idms-webhooks: an access log that never shows
# task keys, job tokens or signatures (see flask_idms_webhooks.accesslog).
import os

bind = os.environ.get("GUNICORN_BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
worker_class = "sync"
timeout = 30
graceful_timeout = 10
accesslog = "-"
errorlog = "-"
logger_class = "flask_idms_webhooks.accesslog.RedactingLogger"
control_socket_disable = True
