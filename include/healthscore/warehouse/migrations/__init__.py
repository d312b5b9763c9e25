"""Alembic environment and revisions for the healthscore warehouse (shipped inside the package)."""
