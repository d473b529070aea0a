"""The settings of one closed-loop benchmark run (benchmarks/run_<task>.py): CPU defaults, --smoke and --paper presets."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from vinn_policy.demos.collect import EVAL_SEED_BASE

from vinn_policy.actions import GRIPPER_INDEX
from vinn_policy.baselines.bc import BCConfig
from vinn_policy.byol import BYOLConfig
from vinn_policy.encoder import EncoderConfig

METHODS = ("vinn", "vinn_random", "bc", "bc_rep", "open_loop", "random")
OPTIONAL_METHODS = ("vinn_dominant", "vinn_consistent")  # VINN with mode selection (VINNConfig.mode_selection)


@dataclass
class BenchmarkArgs:
    """Settings of one closed-loop benchmark run (CPU defaults; --smoke and --paper are presets)."""

    task: str = "door"
    demos: int = 50
    """Training demonstrations; 20% more (at least 2) are collected as validation episodes."""
    episodes: int = 50
    """Closed-loop evaluation episodes per method (the same env seeds for every method)."""
    k: int | None = None
    """VINN's neighbours; default: chosen on the validation episodes (offline error)."""
    encoder: str = "byol"
    """VINN's encoder: byol, random (untrained) or imagenet (needs --imagenet-weights)."""
    imagenet_weights: str | None = None
    methods: tuple[str, ...] = METHODS
    workers: int = 2
    seed: int = 1
    """Evaluation block: seeds EVAL_SEED_BASE + 1000 * seed + i. 1, 2, ... are development blocks, for every
    exploration, check and design decision (the default); 0 is the test block, for the committed final runs only
    (--seed 0 --out benchmarks/results/<task>)."""
    out: str | None = None
    """Report directory (default runs/<task>, beside the policies and videos; runs/smoke-<task> with --smoke). The committed results are
    refreshed only on purpose: --out benchmarks/results/<task>."""
    run_dir: str | None = None
    """Policies and videos (default runs/<task>)."""
    data_dir: str = "data"
    cache_dir: str = "runs/cache"
    image_size: int | None = None
    """Rendered camera images, square (default 84; 224 with --paper, the paper's encoder input)."""
    camera: str | None = None
    """Camera of the policy's images (default: the task's; robot0_eye_in_hand is the wrist camera)."""
    horizon: int | None = None
    """Episode step limit (default: the task's)."""
    byol_epochs: int = 4
    """CPU default; BYOL is ~1.6 s per batch of 64 at 84 px on 2 cores."""
    bc_epochs: int = 6
    """Most BC end-to-end epochs (early stopping on the validation demos may end it sooner)."""
    videos: int = 2
    """Episodes per method written as MP4 (not committed)."""
    k_sweep: tuple[int, ...] = ()
    """Closed-loop VINN success for these k as well (e.g. 1 5 10 20 50)."""
    demo_sweep: tuple[int, ...] = ()
    """Closed-loop VINN, BC-rep and BC for these training-demo counts (VINN just uses a subset database)."""
    replay: int | None = None
    """Re-run one seed with --method from the saved policies and write its video; skips everything else."""
    method: str = "vinn"
    provenance: bool = False
    """Write every VINN step's neighbours (episode, frame, distance, weight, action) to <run_dir>/provenance/."""
    retrain: bool = False
    """Retrain the BYOL encoder and the BC baselines even if cached."""
    smoke: bool = False
    """About a minute: tiny images, demos, epochs and episodes (for tests)."""
    paper: bool = False
    """The paper's settings: ResNet-50, 224 px, 100 BYOL epochs, paper batch sizes (a GPU job)."""

    def __post_init__(self) -> None:
        unknown = set(self.methods) - set(METHODS + OPTIONAL_METHODS)
        if unknown:
            raise ValueError(f"Unknown methods {sorted(unknown)}; available: {list(METHODS + OPTIONAL_METHODS)}")
        from vinn_policy.envs import resolve_camera

        self.camera = resolve_camera(self.task, self.camera)  # recorded in results.json as used
        if self.encoder not in ("byol", "random", "imagenet"):
            raise ValueError(f"--encoder must be byol, random or imagenet; got {self.encoder!r}")
        if self.encoder == "imagenet" and not self.imagenet_weights:
            raise ValueError("--encoder imagenet needs --imagenet-weights PATH (a local torchvision ResNet file).")
        if self.smoke:
            self.demos, self.episodes, self.image_size, self.byol_epochs, self.bc_epochs = 4, 4, 32, 1, 1
            self.horizon = self.horizon or 40
            self.videos = min(self.videos, 1)

    @property
    def image_px(self) -> int:
        """The rendered image size in use: --image-size, else 224 with --paper, else 84. Resolved here rather
        than in __post_init__, because the scripts' tyro defaults are instances made without --paper."""
        return self.image_size or (224 if self.paper else 84)

    @property
    def report_dir(self) -> Path:
        return Path(self.out or (f"runs/smoke-{self.task}" if self.smoke else f"runs/{self.task}"))

    @property
    def work_dir(self) -> Path:
        return Path(self.run_dir or (f"runs/smoke-{self.task}" if self.smoke else f"runs/{self.task}"))

    @property
    def val_demos(self) -> int:
        return max(2, round(0.2 * self.demos))

    def encoder_config(self) -> EncoderConfig:
        return EncoderConfig.paper() if self.paper else EncoderConfig(image_size=self.image_px)

    def byol_config(self) -> BYOLConfig:
        if self.paper:
            return BYOLConfig.paper()
        extra = {"batch_size": 16, "hidden_dim": 128} if self.smoke else {}
        return BYOLConfig(encoder=self.encoder_config(), epochs=self.byol_epochs, **extra)

    def bc_config(self, representation: bool = False) -> BCConfig:
        if self.paper:
            return replace(BCConfig.paper(representation), gripper_index=GRIPPER_INDEX)
        return BCConfig(encoder=self.encoder_config(), epochs=self.bc_epochs, gripper_index=GRIPPER_INDEX,
                        batch_size=16 if self.smoke else 64)

    @property
    def block(self) -> str:
        """Which evaluation block the seeds come from (recorded in results.json)."""
        return "test" if self.seed == 0 else f"development {self.seed}"

    def eval_seeds(self) -> list[int]:
        return [EVAL_SEED_BASE + 1000 * self.seed + i for i in range(self.episodes)]
