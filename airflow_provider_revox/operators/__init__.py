"""Public module: :mod:`airflow_provider_revox.operators.revox`."""
