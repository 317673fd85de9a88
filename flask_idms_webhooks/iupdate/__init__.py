"""The iUpdate engine: read a source (an IQA over the iMIS REST API, or SQL) page by page,
map each row, match it in a target (iMIS or SQL) and insert, update or delete.

It knows the task model (``model``) and its own adapters, nothing of jobs or HTTP.
"""
