"""The task model: tasks, filter rows, QueryParameters and the reporting Protocol.

Nothing here knows of Flask requests, Redis, RQ or HTTP.
"""
