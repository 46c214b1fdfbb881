"""Start-up cost of the gradhealth pytest plugin on a suite that does not use it.

Runs ``pytest --collect-only -q`` on a generated 50-test suite, with the plugin enabled and with
``-p no:gradhealth``, 10 runs each, interleaved in one session, and prints the medians and their difference
(target: <= 20 ms). Usage: ``python benchmarks/bench_plugin_startup.py [--runs 10] [--tests 50]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_MS = 20.0


def make_suite(root: Path, n_tests: int) -> None:
    """Write ``n_tests`` plain tests over five modules, and an empty ini so no other config is picked up."""
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    per_module = max(1, n_tests // 5)
    for m in range(0, n_tests, per_module):
        body = "".join(f"def test_{i}():\n    assert {i} + 1 > {i}\n\n" for i in range(m, min(m + per_module, n_tests)))
        (root / f"test_mod{m // per_module}.py").write_text(body, encoding="utf-8")


def time_run(root: Path, extra: list[str]) -> float:
    """Seconds for one ``pytest --collect-only -q`` in a fresh interpreter."""
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *extra]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=root, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--tests", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_suite(root, args.tests)
        time_run(root, [])  # warm the file system caches and bytecode
        enabled, disabled = [], []
        for _ in range(args.runs):
            enabled.append(time_run(root, []))
            disabled.append(time_run(root, ["-p", "no:gradhealth"]))
    on, off = statistics.median(enabled) * 1e3, statistics.median(disabled) * 1e3
    overhead = on - off
    print(f"pytest --collect-only -q, {args.tests} tests, median of {args.runs} runs each (interleaved):")
    print(f"  plugin enabled      {on:8.1f} ms")
    print(f"  -p no:gradhealth    {off:8.1f} ms")
    print(f"  overhead            {overhead:8.1f} ms ({on / off:.3f}x), target <= {TARGET_MS:g} ms")
    return 0 if overhead <= TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
