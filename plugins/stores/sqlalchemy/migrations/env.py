"""Alembic environment of the plan store; ``grayrelease db upgrade`` runs it."""

from alembic import context
from grayrelease_plugins.stores.sqlalchemy.tables import Base

from grayrelease_core.migrations import run_env

run_env(context, Base.metadata)
