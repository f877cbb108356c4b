from tests.services import new_postgres_database, postgres_admin_url, postgres_url  # noqa: F401
