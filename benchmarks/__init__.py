"""The benchmark suite: `python -m benchmarks --out benchmarks/report.json` (`make bench`).

Each section is one function `bench_<name>(ctx: BenchContext) -> dict`, listed in
`benchmarks.__main__.SECTIONS`. A section returns its figures, a `summary` (lines for the
terminal) and `targets` (name -> `measure.target(...)`); targets are reported, never
asserted. Where the design asks for it, a section also measures the physical floor
(bare SQLite on the same file) in the same run and reports the ratio to it.
"""
