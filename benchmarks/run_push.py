"""Closed-loop push: VINN against the baselines on the same held-out seeds (pipeline: vinn_policy.harness.benchmark).

    python benchmarks/run_push.py                 # CPU defaults (100 demos) -> benchmarks/results/push/
    python benchmarks/run_push.py --smoke         # about a minute
    python benchmarks/run_push.py --paper         # ResNet-50, 224 px, 100 BYOL epochs (GPU)
    python benchmarks/run_push.py --replay 1000003 --method vinn   # one episode again, with video
"""

import tyro

from vinn_policy.harness.benchmark import BenchmarkArgs, main

if __name__ == "__main__":
    # Push is coverage-bound: VINN 77% with 50 demos, 87% with 100 (30 seeds each). Twice the demos at half
    # the BYOL epochs keeps BYOL's training time; BC keeps its epochs (3 left it still improving).
    main(tyro.cli(BenchmarkArgs, default=BenchmarkArgs(task="push", demos=100, byol_epochs=2)))
