"""The SQL backend (SQLite and PostgreSQL through SQLAlchemy Core, Alembic migrations): the
only code that knows tables, queries and dialect differences."""
