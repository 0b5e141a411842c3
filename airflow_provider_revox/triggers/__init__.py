"""Public module: :mod:`airflow_provider_revox._internal.triggers.call`."""
