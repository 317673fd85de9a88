"""The benchmark harness of flask-idms-webhooks: ``python -m bench [scenario ...]``.

Not a test and not part of the package: it starts its own private Redis and gunicorn
servers, drives load at them from a separate process (``wrk``, else a Python load
generator) and compares each scenario with a bare baseline measured in the same run.
"""
