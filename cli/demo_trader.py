"""A small simulated trading process for the demo: an order loop with a few named functions.

Each stage burns CPU in proportion to its cost, so a sampler sees the split clearly. The order
path is a hot path with a 3 ms budget; about one order in 25 hits a slow risk check (a cold
limits cache) and goes over it, so the p99 breaches the budget while the p50 is well inside.
"""

from __future__ import annotations

import math
import random
import time

from hotpath import hot_path


def spin(units: int) -> float:
    acc = 0.0
    for i in range(units * 1_000):
        acc += math.sqrt(i)
    return acc


def decode_order(rng: random.Random) -> dict[str, float]:
    spin(2)
    return {"qty": rng.randint(1, 100), "px": 100 + rng.random()}


def fetch_quotes(order: dict[str, float]) -> float:
    spin(6)
    return order["px"]


def price_quote(order: dict[str, float]) -> float:
    return fetch_quotes(order) * (1 + spin(3) * 0)


def risk_check(order: dict[str, float], price: float) -> bool:
    spin(10)
    if order["qty"] % 25 == 0:
        reload_limits()
    return order["qty"] * price < 1e7


def reload_limits() -> None:
    spin(40)


def route_order(order: dict[str, float]) -> None:
    spin(4)


@hot_path("order_execution", budget_ms=3)
def handle_order(rng: random.Random) -> None:
    order = decode_order(rng)
    price = price_quote(order)
    if risk_check(order, price):
        route_order(order)


def main() -> None:
    rng = random.Random(7)
    while True:
        handle_order(rng)
        time.sleep(0.001)  # between orders: the market is not always busy


if __name__ == "__main__":
    main()
