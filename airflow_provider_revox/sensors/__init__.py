"""Public module: :mod:`airflow_provider_revox._internal.sensors.call`."""
