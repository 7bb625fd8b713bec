"""The crisis protocol's record: a safety flag on turns, a crisis-line locale on sessions.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("turns", sa.Column("safety", sa.JSON(), nullable=True))
    op.add_column("sessions", sa.Column("safety_locale", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("safety_locale")
    with op.batch_alter_table("turns") as batch:
        batch.drop_column("safety")
