"""What each probe costs against one plain forward+backward pass, side by side in one run (and against another tree).

Every measurement runs in a fresh subprocess (one case, one timing, its own peak resident memory from
``ru_maxrss``: tracemalloc does not see torch's CPU allocations), and the cases are interleaved over
``--rounds`` rounds, so every case sees the same background load; the table gives medians. With
``--against OTHER/src`` each case also runs with that tree first on ``PYTHONPATH`` (e.g. a worktree of main),
alternating which tree goes first, and the table adds the before/after ratio.

Cases (1 thread, float32):

- ``plain``: ``nn.LSTM(32, 256, num_layers=2)``, batch 16, one forward over T = 2K + 1 = 513 steps (the
  audit's burn-in + window at K = 256), a loss at the last step, one backward to every parameter, denormals
  flushed as the audit does; ``plain-window``: the same over the K + 1 window only;
- ``preset-*``: ``gradhealth.audit`` with each preset, same model and K; ``probe-*``: each probe alone;
- ``auto-quick`` / ``auto-standard``: the quick and standard presets at the audit's defaults (dtype auto, K = 100),
  what a user gets without settings (against a tree whose auto dtype was float64, the before/after column is the
  dtype decision's effect);
- ``cell-K`` / ``unrolled-K``: ``nn.RNNCell(32, 64)`` and an ``Unrolled`` tanh step, lag profile at K = 256,
  1024, 4096 (linear in K: each 4x of K should cost at most 4.5x);
- ``long-K``: ``nn.LSTM(32, 128)``, batch 4, lag profile at K = 1024 and K = 65,536 (``--long`` only: a few
  minutes and GBs);
- ``mem-*``: peak memory of ``nn.LSTM(32, 128)``, batch 4, K = 8192: ``mem-plain`` one forward+backward over
  T = 2K + 1, ``mem-probe`` the lag profile, ``mem-chunked`` the lag profile with ``checkpoint_chunks=16``
  (a tree without that setting reports an error there).

Run::

    python benchmarks/bench_probes.py                                   # this tree (a few minutes on 1 core)
    python benchmarks/bench_probes.py --against /path/to/main/src       # before/after, interleaved
    python benchmarks/bench_probes.py --quick                           # smoke run, tiny sizes
    python benchmarks/bench_probes.py --only cell- unrolled- --rounds 3 # a subset (case-name prefixes)
    python benchmarks/bench_probes.py --only import mem- --rounds 1     # peak memory: plain, probe, chunked
    python benchmarks/bench_probes.py --only import plain preset- probe- --rounds 2  # peak memory per preset/probe
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve()
THIS_SRC = HERE.parent.parent / "src"
PROBES = ("lag_profile", "parameter_gradients", "spectrum", "gates", "state_gradients", "length_scan", "lyapunov")
LADDER = (256, 1024, 4096)
MEMORY_CASES = ("mem-plain", "mem-probe", "mem-chunked")


def case_names(quick: bool, long: bool) -> list[str]:
    """Every case, in table order."""
    names = ["import", "plain", "plain-window", "preset-quick", "preset-standard", "preset-thorough"]
    names += [f"probe-{p}" for p in PROBES]
    names += ["auto-quick", "auto-standard"]
    names += [f"{kind}-{k}" for kind in ("cell", "unrolled") for k in LADDER]
    names += list(MEMORY_CASES)
    if long:
        names += ["long-1024", "long-65536"]
    return names


# -- one case, in a subprocess ------------------------------------------------------------------------------
def build_case(name: str, quick: bool) -> Callable[[], object]:
    """The callable timed for a case (model and inputs built outside it)."""
    import torch
    from torch import nn

    import gradhealth
    from gradhealth._state import flush_denormals

    torch.set_num_threads(1)
    torch.manual_seed(0)
    hidden, k, batch = (32, 16, 4) if quick else (256, 256, 16)
    if name == "import":
        return lambda: None
    kind, _, arg = name.partition("-")
    if kind == "mem":
        k = 256 if quick else 8192
        small = nn.LSTM(32, 16 if quick else 128, batch_first=True)
        if arg == "plain":
            x = torch.randn(4, 2 * k + 1, 32)

            def plain_long() -> None:
                with flush_denormals():
                    small(x)[0][:, -1].sum().backward()

            return plain_long
        chunks = {"chunked": {"checkpoint_chunks": 16}, "probe": {}}[arg]
        return lambda: gradhealth.audit(small, seq_len=k, batch_size=4, dtype="float32", probes="quick", **chunks)
    if kind in ("cell", "unrolled", "long"):
        steps = int(arg) // (64 if quick else 1)
        if kind == "long":
            model: object = nn.LSTM(32, 16 if quick else 128, batch_first=True)
            batch = 4
        elif kind == "cell":
            model = nn.RNNCell(32, 64)
        else:
            w_in, w_rec = torch.randn(32, 64) / 32**0.5, 0.9 * torch.linalg.qr(torch.randn(64, 64))[0]

            def step(x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                h = torch.tanh(x @ w_in.to(x) + h @ w_rec.to(x))
                return h, h

            model = gradhealth.Unrolled(step, input_size=32, init_state=lambda b, dt, dev: torch.zeros(b, 64, dtype=dt))
        return lambda: gradhealth.audit(model, seq_len=steps, batch_size=batch, dtype="float32", probes="quick")
    lstm = nn.LSTM(32, hidden, num_layers=2, batch_first=True)
    if kind == "plain":
        x = torch.randn(batch, (k + 1) if arg == "window" else (2 * k + 1), 32)

        def plain() -> None:
            with flush_denormals():
                out = lstm(x)[0]
                out[:, -1].sum().backward()
            lstm.zero_grad(set_to_none=True)

        return plain
    if kind == "auto":  # what a user gets at the defaults: dtype auto, K = 100 (the default), batch 16
        return lambda: gradhealth.audit(lstm, batch_size=batch, probes=arg, **({"seq_len": k} if quick else {}))
    probes: str | list[str] = arg if kind == "preset" else [arg]
    return lambda: gradhealth.audit(lstm, seq_len=k, batch_size=batch, dtype="float32", probes=probes)


def run_case(name: str, quick: bool) -> None:
    """Time one case once (after building it) and print its seconds and peak memory as JSON."""
    build_case(name, quick=True)()  # warm-up at tiny sizes: lazy imports and first-call set-up are not timed
    fn = build_case(name, quick)
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_mb": peak_kb / 1024}))


def measure(name: str, src: Path, quick: bool) -> dict[str, float]:
    """One fresh-subprocess measurement of ``name`` with ``src`` first on the path."""
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(HERE), "--case", name] + (["--quick"] if quick else [])
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"seconds": float("nan"), "peak_mb": float("nan"), "error": tail}  # type: ignore[dict-item]
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the table ----------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    parser.add_argument("--long", action="store_true", help="add the K = 1024 / 65,536 nn.LSTM(32, 128) cases")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians are reported)")
    parser.add_argument("--against", type=Path, help="another tree's src/ to time side by side ('before')")
    parser.add_argument("--only", nargs="+", help="case-name prefixes to run")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        run_case(args.case, args.quick)
        return
    names = [n for n in case_names(args.quick, args.long) if not args.only or n.startswith(tuple(args.only))]
    trees = {"after": THIS_SRC} | ({"before": args.against} if args.against else {})
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for round_ in range(args.rounds):
        for i, name in enumerate(names):
            rounds_for_case = 1 if name.startswith(("long-", "preset-thorough")) else args.rounds
            if round_ >= rounds_for_case:
                continue
            order = list(trees.items())[:: -1 if (round_ + i) % 2 else 1]
            for tree, src in order:
                results.setdefault((name, tree), []).append(measure(name, src, args.quick))
            print(f"  round {round_ + 1}: {name}", file=sys.stderr, flush=True)
    print_table(names, list(trees), results, args)


def _median(values: list[dict[str, float]], key: str) -> float:
    return statistics.median(v[key] for v in values)


def print_table(
    names: list[str], trees: list[str], results: dict[tuple[str, str], list[dict[str, float]]], args: argparse.Namespace
) -> None:
    """Medians per case and tree, the ratio to the plain pass, before/after, and the derived checks."""
    import torch

    print(f"torch {torch.__version__}, 1 thread, float32, rounds {args.rounds} (thorough and long: 1), medians")
    head = f"{'case':26s}" + "".join(f" {t + ' s':>10s} {t + ' MB':>10s}" for t in trees)
    head += f" {'x plain':>8s}" + (f" {'after/before':>12s}" if len(trees) > 1 else "")
    print(head)
    sec = {key: _median(v, "seconds") for key, v in results.items()}
    mem = {key: _median(v, "peak_mb") for key, v in results.items()}
    for name in names:
        row = f"{name:26s}" + "".join(f" {sec[name, t]:10.3f} {mem[name, t]:10.0f}" for t in trees)
        row += f" {sec[name, 'after'] / sec.get(('plain', 'after'), float('nan')):8.2f}"
        if len(trees) > 1:
            row += f" {sec[name, 'after'] / sec[name, 'before']:12.2f}"
        errors = {v.get("error") for t in trees for v in results[name, t] if "error" in v}
        print(row + (f"   error: {errors}" if errors else ""))
    for tree in trees:
        print(f"-- {tree}:")
        for kind in ("cell", "unrolled"):
            if all((f"{kind}-{k}", tree) in sec for k in LADDER):
                ts = [sec[f"{kind}-{k}", tree] for k in LADDER]
                growth = ", ".join(f"{b / a:.2f}x" for a, b in itertools.pairwise(ts))
                print(f"   {kind}: time per 4x of K: {growth} (target <= 4.5x)")
        base = mem.get(("import", tree))
        if base is not None and ("plain", tree) in mem:
            extra = {n: mem[n, tree] - base for n in ("plain", "preset-quick", "preset-standard") if (n, tree) in mem}
            print("   peak memory over import: " + ", ".join(f"{n} {v:.0f} MB" for n, v in extra.items()))
            if extra.get("plain", 0) > 0 and "preset-standard" in extra:
                print(f"   standard / plain peak (over import): {extra['preset-standard'] / extra['plain']:.2f}x")
            each = [n for n in names if n.startswith(("preset-", "probe-")) and (n, tree) in mem]
            if extra.get("plain", 0) > 0 and each:
                ratios = ", ".join(f"{n} {(mem[n, tree] - base) / extra['plain']:.2f}x" for n in each)
                print(f"   peak over import / plain's: {ratios}")
        if base is not None and all((n, tree) in mem for n in MEMORY_CASES):
            over = ", ".join(f"{n.removeprefix('mem-')} {mem[n, tree] - base:.0f} MB" for n in MEMORY_CASES)
            print(f"   K = 8192 peak over import: {over}")
        if ("probe-lag_profile", tree) in sec:
            lag = sec["probe-lag_profile", tree]
            print(f"   lag profile alone / plain over the same T: {lag / sec['plain', tree]:.2f}x (target <= 0.8x)")
        if ("long-65536", tree) in sec:
            per = [sec[f"long-{k}", tree] / k * 1e6 for k in (1024, 65536)]
            peak = mem["long-65536", tree]
            print(f"   long K: {per[0]:.0f} us/step at K = 1024, {per[1]:.0f} us/step at K = 65536, peak {peak:.0f} MB")


if __name__ == "__main__":
    main()
