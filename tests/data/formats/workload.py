"""The small program profiled to make this folder's fixtures: about 2/3 of its CPU time in
`price_quotes`, 1/3 in `check_risk`, and a list of lists built by `build_book` (allocations)."""

import sys
import time


def price_quotes(n: int) -> float:
    total = 0.0
    for i in range(n):
        total += (i % 7) * 0.5
    return total


def check_risk(n: int) -> int:
    hits = 0
    for i in range(n):
        hits += i % 3 == 0
    return hits


def build_book(levels: int) -> list[list[int]]:
    return [list(range(64)) for _ in range(levels)]


def main(seconds: float) -> None:
    books = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        price_quotes(200_000)
        check_risk(100_000)
        books.append(build_book(200))
    print(len(books))


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
