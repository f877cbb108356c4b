"""Web-free persistence: models, session factory, repositories (callers own the transaction)."""
