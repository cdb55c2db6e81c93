"""Alembic environment of the campaign store.

The version table is ``campaign_alembic_version``, so the schema can share a
database with other tools that keep their own ``alembic_version`` table.
``campaign.store.schema`` passes an open connection in
``config.attributes["connection"]``; the alembic command line builds one
from ``sqlalchemy.url`` or ``CAMPAIGN_DATABASE_URL``.
"""

from alembic import context

from campaign.store.engine import create_engine
from campaign.store.models import Base
from campaign.store.schema import VERSION_TABLE, include_object

config = context.config


def run_migrations(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        include_object=include_object,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or None)
    with engine.connect() as new_connection:
        run_migrations(new_connection)
