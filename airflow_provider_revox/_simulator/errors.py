"""The simulator's errors; ``http_status`` is what the server answers for each."""

from __future__ import annotations


class SimulatorError(Exception):
    """Base of the engine's errors; ``http_status`` is what the server answers."""

    http_status = 400


class InvalidOrder(SimulatorError, ValueError):
    """An order was placed with bad input (the message names the field)."""

    http_status = 422


class UnknownCall(SimulatorError, KeyError):
    """No order has this id (or it did not exist yet at the moment asked)."""

    http_status = 404

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown call"


class Conflict(SimulatorError):
    """The action does not apply in the order's current status (e.g. cancelling a completed order)."""

    http_status = 409


class InvalidSearch(SimulatorError, ValueError):
    """A call search has a missing or invalid field (the message names the field)."""

    http_status = 422
