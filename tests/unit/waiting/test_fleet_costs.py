"""Fleet: a round's bookkeeping follows the orders fetched, not the orders held."""

from __future__ import annotations

from airflow_provider_revox._internal.waiting.batch import Fleet


class CountingValues(dict[str, float]):
    """A deadline table that counts every walk over its values."""

    walks = 0

    def values(self):  # type: ignore[override]
        type(self).walks += 1
        return super().values()


def test_latest_deadline_and_counts_follow_each_order_without_walking_the_fleet() -> None:
    ids = [f"c-{i}" for i in range(1000)]
    fleet = Fleet(ids)
    fleet._deadline = CountingValues()  # type: ignore[assignment]
    due = fleet.pop_due(0.0)
    for index, call_id in enumerate(due):
        fleet.record(call_id, "scheduled", due=10.0, deadline=100.0 + index)
    assert fleet.latest_deadline() == 1099.0
    assert fleet.counts() == {"scheduled": 1000}
    # The latest order settles, another one's deadline moves: both are seen at once.
    fleet.pop_due(10.0)
    fleet.record("c-999", "completed", due=20.0)
    fleet.record("c-5", "calling", due=20.0, deadline=5000.0)
    assert fleet.latest_deadline() == 5000.0
    fleet.record("c-6", "calling", due=20.0, deadline=1.0)
    assert fleet.counts() == {"scheduled": 997, "completed": 1, "calling": 2}
    assert CountingValues.walks == 0


def test_moving_deadlines_keep_the_latest_right_and_the_index_small() -> None:
    ids = [f"c-{i}" for i in range(50)]
    fleet = Fleet(ids)
    for round_number in range(40):
        for call_id in fleet.pop_due(float(round_number)):
            fleet.record(call_id, "scheduled", due=round_number + 1.0, deadline=1000.0 - round_number)
    assert fleet.latest_deadline() == 1000.0 - 39
    assert len(fleet._latest) <= 2 * 50 + 64
    for call_id in fleet.pop_due(100.0):
        fleet.record(call_id, "completed", due=100.0)
    assert fleet.latest_deadline() is None
    assert fleet.counts() == {"completed": 50}
