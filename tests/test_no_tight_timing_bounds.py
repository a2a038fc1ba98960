"""No unit test bounds a wall-clock time by less than 2 s: a loaded 2-core machine misses such bounds. Speed targets
live in the benchmarks (tests/benchmarks/, exempt); a unit test may keep a loose bound that proves a wait happened."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
MIN_BOUND_S = 2.0
CLOCKS = {"monotonic", "perf_counter", "time", "monotonic_ns", "perf_counter_ns"}
DURATION_NAMES = {"elapsed", "elapsed_s", "wall_s", "duration", "duration_s", "took", "took_s", "seconds"}


def _mentions_a_clock(node: ast.AST) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and sub.func.attr in CLOCKS:
            return True
        name = sub.attr if isinstance(sub, ast.Attribute) else sub.id if isinstance(sub, ast.Name) else None
        if name in DURATION_NAMES:
            return True
    return False


def _upper_bounds(compare: ast.Compare) -> list[tuple[ast.AST, float]]:
    """(timed side, constant) for each ``timed < c`` / ``timed <= c`` (and ``c > timed``) in a comparison chain."""
    found = []
    operands = [compare.left, *compare.comparators]
    for left, op, right in zip(operands, compare.ops, operands[1:]):
        if (
            isinstance(op, (ast.Lt, ast.LtE))
            and isinstance(right, ast.Constant)
            and isinstance(right.value, (int, float))
        ):
            found.append((left, float(right.value)))
        if (
            isinstance(op, (ast.Gt, ast.GtE))
            and isinstance(left, ast.Constant)
            and isinstance(left.value, (int, float))
        ):
            found.append((right, float(left.value)))
    return found


def tight_bounds(source: str, filename: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Assert):
            continue
        for compare in (n for n in ast.walk(node.test) if isinstance(n, ast.Compare)):
            for timed, bound in _upper_bounds(compare):
                if bound < MIN_BOUND_S and _mentions_a_clock(timed):
                    found.append(f"{filename}:{node.lineno}: {ast.unparse(compare)}")
    return found


def test_the_scan_finds_a_tight_bound_and_passes_a_loose_one():
    assert tight_bounds("assert time.monotonic() - t0 < 0.5\n", "x.py")
    assert tight_bounds("assert 0.1 < stats.wall_s <= 1\n", "x.py")
    assert tight_bounds("assert 1.5 > elapsed\n", "x.py")
    assert not tight_bounds("assert time.monotonic() - t0 < 30\n", "x.py")
    assert not tight_bounds("assert stats.p50_ms >= 10.0 and n < 1\n", "x.py")


def test_no_unit_test_has_a_timing_bound_under_two_seconds():
    offenders = []
    for path in sorted(TESTS.glob("test_*.py")):  # tests/benchmarks/ is not globbed
        offenders += tight_bounds(path.read_text(), str(path.relative_to(TESTS.parent)))
    assert offenders == [], "move speed targets to tests/benchmarks/, or test a count or an order instead"
