"""Storage behind one contract: the HTTP layer, pages, alerts, metrics and maintenance reach
the database only through it. Backends live in subpackages (`sql`: SQLite and PostgreSQL
through SQLAlchemy); nothing outside this package knows tables or dialects."""
