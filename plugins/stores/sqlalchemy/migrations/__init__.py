"""Alembic migrations of the plan store (version table gray_release_alembic_version)."""
