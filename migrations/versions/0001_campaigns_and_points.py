"""Create campaigns, parameters and points.

Revision ID: 0001
Revises: (none)
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table('campaigns',
    sa.Column('id', ID, nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('view_suffix', sa.String(length=100), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('likelihood', JSON, nullable=False),
    sa.Column('likelihood_version', sa.String(length=100), nullable=False),
    sa.Column('settings', JSON, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_host', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaigns')),
    sa.UniqueConstraint('name', name=op.f('uq_campaigns_name')),
    sa.UniqueConstraint('view_suffix', name=op.f('uq_campaigns_view_suffix'))
    )
    op.create_table('parameters',
    sa.Column('id', ID, nullable=False),
    sa.Column('campaign_id', ID, nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('low', sa.Double(), nullable=False),
    sa.Column('high', sa.Double(), nullable=False),
    sa.Column('scale', sa.String(length=16), nullable=False),
    sa.Column('prior', JSON, nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_parameters_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_parameters')),
    sa.UniqueConstraint('campaign_id', 'name', name=op.f('uq_parameters_campaign_id_name')),
    sa.UniqueConstraint('campaign_id', 'position', name=op.f('uq_parameters_campaign_id_position'))
    )
    op.create_table('points',
    sa.Column('id', ID, nullable=False),
    sa.Column('campaign_id', ID, nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('x', sa.LargeBinary(), nullable=False),
    sa.Column('params', JSON, nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('origin', sa.String(length=32), nullable=False),
    sa.Column('step', sa.Integer(), nullable=True),
    sa.Column('chi2', sa.Double(), nullable=True),
    sa.Column('outputs', JSON, nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('likelihood_version', sa.String(length=100), nullable=False),
    sa.Column('seed', sa.BigInteger(), nullable=True),
    sa.Column('worker', sa.String(length=200), nullable=True),
    sa.Column('lease_expires_at', sa.Double(), nullable=True),
    sa.Column('executor', sa.String(length=16), nullable=True),
    sa.Column('host', sa.String(length=200), nullable=True),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('user', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('eval_seconds', sa.Double(), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'running', 'done', 'failed')", name=op.f('ck_points_status')),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_points_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_points'))
    )
    op.create_index(op.f('ix_points_campaign_id_key'), 'points', ['campaign_id', 'key'], unique=False)
    op.create_index(op.f('ix_points_campaign_id_status_id'), 'points', ['campaign_id', 'status', 'id'], unique=False)


def downgrade() -> None:
    op.drop_table('points')
    op.drop_table('parameters')
    op.drop_table('campaigns')
