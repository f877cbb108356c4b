"""The REST API (CONTRACT §4): routes, dependencies, error handlers."""
