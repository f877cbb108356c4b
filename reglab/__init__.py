"""The ``reglab`` command and the Python client of the RegLab API (``reglab.client``)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("reglab")
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"
