"""Pipeline steps: what each Airflow task does, as plain functions over a warehouse engine.

DAG files only wire these; every step is importable and testable without a scheduler.
"""
