"""Alembic migrations of the service database, shipped in the distribution (package data) so an
installed ``reglab`` can upgrade a database without a source checkout; ``alembic.ini`` at the
repository root points the ``alembic`` command here."""
