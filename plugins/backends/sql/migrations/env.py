"""Alembic environment of the sql backend; ``grayrelease db upgrade`` runs it."""

from alembic import context
from grayrelease_plugins.backends.sql.tables import Base

from grayrelease_core.migrations import run_env

run_env(context, Base.metadata)
