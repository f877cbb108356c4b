"""The RegLab service: persistence (``service.db``), the REST API and its HTTP client.

Never imports torch or the worker: the API validates specs with ``regcore.spec`` (pydantic only)
and enqueues work by task name.
"""
