"""Alembic migrations of the sql backend (version table gray_config_alembic_version)."""
