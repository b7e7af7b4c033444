"""`python -m benchmarks ...`: the `bench` command line (see `benchmarks.cli`)."""

from benchmarks.cli import main

main()
