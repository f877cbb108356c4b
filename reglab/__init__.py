"""The ``reglab`` command: composes the core's commands with the service's."""
