"""``bn2gn migrate``: the whole migration of a repository in one plan (see docs/commands/migrate.md)."""

from .run import MigrateOptions, MigrateResult, apply_migration, plan_migration

__all__ = ["MigrateOptions", "MigrateResult", "apply_migration", "plan_migration"]
