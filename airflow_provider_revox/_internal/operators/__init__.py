"""Private: no stable API."""
