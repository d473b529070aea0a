"""Closed-loop stack: VINN against the baselines on the same held-out seeds (pipeline: vinn_policy.harness.benchmark).

    python benchmarks/run_stack.py                 # CPU defaults, development block -> runs/stack/
    python benchmarks/run_stack.py --smoke         # a minute or two
    python benchmarks/run_stack.py --paper         # ResNet-50, 224 px, 100 BYOL epochs (GPU)
    python benchmarks/run_stack.py --replay 1001003 --method vinn   # one episode of the run again, with video
"""

import tyro

from vinn_policy.harness.benchmark import BenchmarkArgs, main

if __name__ == "__main__":
    main(tyro.cli(BenchmarkArgs, default=BenchmarkArgs(task="stack")))
