"""An XCom value as the metadata database holds it: its stored JSON text, not the value read back."""

from __future__ import annotations


def stored_xcom(dag_id: str, task_id: str, key: str = "return_value") -> str:
    """The stored text of the XCom ``key`` of ``task_id`` in ``dag_id``'s only run.

    Read through Airflow's XCom model rather than a table by name: Airflow 3.4 keeps XComs in
    two tables (``xcom_v1``, ``xcom_v2``) behind the model's one view, where 3.2 and 3.3 have ``xcom``.
    """
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import String, select, type_coerce

    with create_session() as session:
        # type_coerce: the column's text as stored, without the JSON type's parsing.
        (value,) = session.execute(
            select(type_coerce(XComModel.value, String)).where(
                XComModel.dag_id == dag_id, XComModel.task_id == task_id, XComModel.key == key
            )
        ).one()
    return value if isinstance(value, str) else bytes(value).decode()
