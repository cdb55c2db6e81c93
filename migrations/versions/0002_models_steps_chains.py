"""Add model versions, steps, stepper locks, chains and summaries.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table('campaign_locks',
    sa.Column('campaign_id', ID, nullable=False),
    sa.Column('holder', sa.String(length=200), nullable=False),
    sa.Column('host', sa.String(length=200), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('user', sa.String(length=200), nullable=True),
    sa.Column('acquired_at', sa.Double(), nullable=False),
    sa.Column('lease_expires_at', sa.Double(), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_campaign_locks_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('campaign_id', name=op.f('pk_campaign_locks'))
    )
    op.create_table('model_versions',
    sa.Column('id', ID, nullable=False),
    sa.Column('campaign_id', ID, nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('parent_id', ID, nullable=True),
    sa.Column('training_mode', sa.String(length=16), nullable=False),
    sa.Column('hyperparameters', JSON, nullable=False),
    sa.Column('metrics', JSON, nullable=False),
    sa.Column('n_train', sa.Integer(), nullable=False),
    sa.Column('n_low', sa.Integer(), nullable=False),
    sa.Column('last_point_id', ID, nullable=True),
    sa.Column('chi2_min', sa.Double(), nullable=True),
    sa.Column('delta_chi2', sa.Double(), nullable=False),
    sa.Column('training_seconds', sa.Double(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_model_versions_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['parent_id'], ['model_versions.id'], name=op.f('fk_model_versions_parent_id_model_versions'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_versions')),
    sa.UniqueConstraint('campaign_id', 'version', name=op.f('uq_model_versions_campaign_id_version'))
    )
    op.create_table('best_fits',
    sa.Column('id', ID, nullable=False),
    sa.Column('model_version_id', ID, nullable=False),
    sa.Column('params', JSON, nullable=False),
    sa.Column('chi2', sa.Double(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], name=op.f('fk_best_fits_model_version_id_model_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_best_fits')),
    sa.UniqueConstraint('model_version_id', name=op.f('uq_best_fits_model_version_id'))
    )
    op.create_table('boosters',
    sa.Column('id', ID, nullable=False),
    sa.Column('model_version_id', ID, nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('member', sa.Integer(), nullable=False),
    sa.Column('format', sa.String(length=8), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], name=op.f('fk_boosters_model_version_id_model_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_boosters')),
    sa.UniqueConstraint('model_version_id', 'role', 'member', name=op.f('uq_boosters_model_version_id_role_member'))
    )
    op.create_table('chains',
    sa.Column('id', ID, nullable=False),
    sa.Column('campaign_id', ID, nullable=False),
    sa.Column('model_version_id', ID, nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('settings', JSON, nullable=False),
    sa.Column('seed', sa.BigInteger(), nullable=False),
    sa.Column('n_walkers', sa.Integer(), nullable=False),
    sa.Column('n_steps', sa.Integer(), nullable=False),
    sa.Column('burn_in', sa.Integer(), nullable=True),
    sa.Column('thin', sa.Integer(), nullable=True),
    sa.Column('acceptance_fraction', sa.Double(), nullable=True),
    sa.Column('tau', JSON, nullable=True),
    sa.Column('tau_history', JSON, nullable=True),
    sa.Column('converged', sa.Boolean(), nullable=False),
    sa.Column('state', sa.LargeBinary(), nullable=True),
    sa.Column('sampling_seconds', sa.Double(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_chains_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], name=op.f('fk_chains_model_version_id_model_versions'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chains'))
    )
    op.create_index(op.f('ix_chains_campaign_id'), 'chains', ['campaign_id'], unique=False)
    op.create_table('profiles',
    sa.Column('id', ID, nullable=False),
    sa.Column('model_version_id', ID, nullable=False),
    sa.Column('parameter', sa.String(length=100), nullable=False),
    sa.Column('grid', JSON, nullable=False),
    sa.Column('chi2', JSON, nullable=False),
    sa.Column('low_68', sa.Double(), nullable=True),
    sa.Column('high_68', sa.Double(), nullable=True),
    sa.Column('low_95', sa.Double(), nullable=True),
    sa.Column('high_95', sa.Double(), nullable=True),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], name=op.f('fk_profiles_model_version_id_model_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_profiles')),
    sa.UniqueConstraint('model_version_id', 'parameter', name=op.f('uq_profiles_model_version_id_parameter'))
    )
    op.create_table('shap_summaries',
    sa.Column('id', ID, nullable=False),
    sa.Column('model_version_id', ID, nullable=False),
    sa.Column('n_points', sa.Integer(), nullable=False),
    sa.Column('base_value', sa.Double(), nullable=False),
    sa.Column('mean_abs_shap', JSON, nullable=False),
    sa.Column('mean_abs_interaction', JSON, nullable=False),
    sa.Column('best_fit', JSON, nullable=True),
    sa.Column('seconds', sa.Double(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], name=op.f('fk_shap_summaries_model_version_id_model_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shap_summaries'))
    )
    op.create_index(op.f('ix_shap_summaries_model_version_id'), 'shap_summaries', ['model_version_id'], unique=False)
    op.create_table('steps',
    sa.Column('id', ID, nullable=False),
    sa.Column('campaign_id', ID, nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('phase', sa.String(length=32), nullable=True),
    sa.Column('model_version_id', ID, nullable=True),
    sa.Column('strategy', sa.String(length=32), nullable=True),
    sa.Column('n_proposed', sa.Integer(), nullable=False),
    sa.Column('n_evaluated', sa.Integer(), nullable=False),
    sa.Column('n_failed', sa.Integer(), nullable=False),
    sa.Column('best_chi2', sa.Double(), nullable=True),
    sa.Column('timings', JSON, nullable=False),
    sa.Column('acquisition', JSON, nullable=False),
    sa.Column('convergence', JSON, nullable=False),
    sa.Column('host', sa.String(length=200), nullable=True),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_steps_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], name=op.f('fk_steps_model_version_id_model_versions'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_steps')),
    sa.UniqueConstraint('campaign_id', 'number', name=op.f('uq_steps_campaign_id_number'))
    )
    op.create_table('chain_samples',
    sa.Column('id', ID, nullable=False),
    sa.Column('chain_id', ID, nullable=False),
    sa.Column('iteration', sa.Integer(), nullable=False),
    sa.Column('walker', sa.Integer(), nullable=False),
    sa.Column('x', sa.LargeBinary(), nullable=False),
    sa.Column('params', JSON, nullable=False),
    sa.Column('log_prob', sa.Double(), nullable=False),
    sa.ForeignKeyConstraint(['chain_id'], ['chains.id'], name=op.f('fk_chain_samples_chain_id_chains'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chain_samples'))
    )
    op.create_index(op.f('ix_chain_samples_chain_id_iteration_walker'), 'chain_samples', ['chain_id', 'iteration', 'walker'], unique=False)
    op.create_table('posterior_summaries',
    sa.Column('id', ID, nullable=False),
    sa.Column('chain_id', ID, nullable=False),
    sa.Column('parameter', sa.String(length=100), nullable=False),
    sa.Column('mean', sa.Double(), nullable=False),
    sa.Column('std', sa.Double(), nullable=False),
    sa.Column('median', sa.Double(), nullable=False),
    sa.Column('q02_5', sa.Double(), nullable=False),
    sa.Column('q16', sa.Double(), nullable=False),
    sa.Column('q84', sa.Double(), nullable=False),
    sa.Column('q97_5', sa.Double(), nullable=False),
    sa.ForeignKeyConstraint(['chain_id'], ['chains.id'], name=op.f('fk_posterior_summaries_chain_id_chains'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_posterior_summaries')),
    sa.UniqueConstraint('chain_id', 'parameter', name=op.f('uq_posterior_summaries_chain_id_parameter'))
    )
    op.create_table('validations',
    sa.Column('id', ID, nullable=False),
    sa.Column('campaign_id', ID, nullable=False),
    sa.Column('model_version_id', ID, nullable=True),
    sa.Column('chain_id', ID, nullable=True),
    sa.Column('point_ids', JSON, nullable=False),
    sa.Column('surrogate_chi2', JSON, nullable=False),
    sa.Column('statistics', JSON, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_validations_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['chain_id'], ['chains.id'], name=op.f('fk_validations_chain_id_chains'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], name=op.f('fk_validations_model_version_id_model_versions'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_validations'))
    )
    op.create_index(op.f('ix_validations_campaign_id'), 'validations', ['campaign_id'], unique=False)


def downgrade() -> None:
    op.drop_table('validations')
    op.drop_table('posterior_summaries')
    op.drop_table('chain_samples')
    op.drop_table('steps')
    op.drop_table('shap_summaries')
    op.drop_table('profiles')
    op.drop_table('chains')
    op.drop_table('boosters')
    op.drop_table('best_fits')
    op.drop_table('model_versions')
    op.drop_table('campaign_locks')
