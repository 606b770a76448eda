"""``python -m bench``: the benchmark harness without the rest of the ``smsroute`` command line."""

from __future__ import annotations

import argparse
import sys

from bench.cli import add_bench_arguments, run_bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="smsroute benchmark harness"
    )
    add_bench_arguments(parser)
    return run_bench(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
