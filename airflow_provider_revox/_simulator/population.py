"""A random population of orders (``--calls N``): varied countries, timezones and schedules."""

from __future__ import annotations

import random
from datetime import timedelta

import phonenumbers

from airflow_provider_revox._simulator.engine import SimulatorEngine

#: Regions drawn for recipients, so windows open at different UTC times.
REGIONS = ("FR", "FR", "US", "US", "GB", "DE", "ES", "CA", "AU", "JP")


def random_phone_number(rng: random.Random, region: str) -> str:
    """A valid mobile number of ``region``, varied from the region's example number."""
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    if example is None:
        example = phonenumbers.example_number(region)
    assert example is not None, f"no example number for {region}"
    national = str(example.national_number)
    for _ in range(20):
        digits = national[:-4] + f"{rng.randrange(10_000):04d}"
        candidate = phonenumbers.PhoneNumber(country_code=example.country_code, national_number=int(digits))
        if phonenumbers.is_valid_number(candidate):
            return phonenumbers.format_number(candidate, phonenumbers.PhoneNumberFormat.E164)
    return phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)


def seed_population(engine: SimulatorEngine, count: int) -> list[str]:
    """Place ``count`` random orders now; one in ten is scheduled up to a day ahead.

    Returns:
        The ids of the placed orders.
    """
    if count < 0:
        raise ValueError(f"the number of calls must not be negative, not {count}")
    rng = random.Random(f"{engine.seed}/population/{len(engine.call_ids())}")
    ids = []
    for index in range(count):
        region = rng.choice(REGIONS)
        scheduled = None
        if rng.random() < 0.1:
            scheduled = engine.clock.now() + timedelta(minutes=rng.randrange(30, 24 * 60))
        call = engine.place_call(
            phone_number=random_phone_number(rng, region),
            assistant_id="asst_simulated_reminder",
            scheduled_at=scheduled,
            metadata={
                "customer_id": f"cust_{rng.randrange(10**6):06d}",
                "batch": "population",
                "row": str(index),
            },
            prompt_variables={"first_name": rng.choice(("Camille", "Alex", "Sam", "Maria", "Yuki"))},
        )
        ids.append(call["id"])
    return ids
