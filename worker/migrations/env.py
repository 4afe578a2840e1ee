"""Alembic environment: runs on the engine handed over by ``worker.db.migrate``."""

from alembic import context
from sqlmodel import SQLModel

import worker.models  # noqa: F401 - registers the tables on the metadata

config = context.config
engine = config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
