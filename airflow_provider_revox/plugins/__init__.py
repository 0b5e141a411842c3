"""Public module: :mod:`airflow_provider_revox.plugins.revox`, the Airflow plugin."""
