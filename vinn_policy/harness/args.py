"""The settings of one closed-loop benchmark run (benchmarks/run_<task>.py): CPU defaults, --smoke and --paper presets."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from vinn_policy.demos.collect import BLOCK_SIZE, block_seeds

from vinn_policy.actions import GRIPPER_INDEX
from vinn_policy.baselines.bc import BCConfig
from vinn_policy.byol import BYOLConfig
from vinn_policy.encoder import EncoderConfig

METHODS = ("vinn", "vinn_random", "bc", "bc_paper", "bc_rep", "open_loop", "random")
OPTIONAL_METHODS = ("vinn_dominant", "vinn_consistent", "vinn_chunk", "vinn_multiview", "vinn_proprio", "vinn_plus", "vinn_bc_encoder")
"""VINN with mode selection (VINNConfig.mode_selection) or chunked retrieval (--chunk, --requery) on VINN's encoder; with
more cameras in its key (--views, an encoder each), with proprioception in its key (weight chosen on the validation
demos), or vinn_plus: chunks and more cameras together. vinn_bc_encoder is VINN's regression over the trunk of the
same training's BC (robomimic's recipe) instead of BYOL's: it tells the representation's share of VINN's gap to BC
from the regression's. Each chooses its own k."""
MULTIVIEW_METHODS = ("vinn_multiview", "vinn_plus")
LEARNED = ("vinn", "vinn_random", "bc", "bc_paper", "bc_rep", *OPTIONAL_METHODS)
"""Methods whose training depends on its seed: trained once per --train-seeds; open-loop and random are not."""


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
    """Methods to train and evaluate. Optional VINN variants: vinn_dominant, vinn_consistent (mode selection),
    vinn_chunk (--chunk, --requery), vinn_multiview and vinn_plus (--views), vinn_proprio, vinn_bc_encoder (VINN's
    regression over BC's trunk). Each kNN method chooses its own k on the validation demos unless --k is given."""
    workers: int = 2
    """Rollout processes (each a torch thread and a renderer)."""
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
    bc_epochs: int = 60
    """The cap on BC epochs; early stopping on the validation demos (--bc-patience epochs without improvement) ends
    a converged training sooner, and the report says which trainings reached the cap."""
    bc_patience: int = 6
    """Epochs without a lower validation loss after which BC stops (converged); --paper uses 10."""
    train_seeds: int = 1
    """Train every learned method (BYOL, VINN's k, BC, BC-rep, the untrained encoder's init) this many times, with
    seeds 0, 1, ...; each training is evaluated on the same episodes, and the report gives per-training success,
    the mean and spread, and paired tests over the episodes of all trainings with the seed as the unit. Committed
    runs use 3."""
    videos: int = 2
    """Episodes per method written as MP4 (not committed)."""
    chunk: int = 8
    """vinn_chunk: steps each query plans (VINNConfig.chunk)."""
    requery: float | None = None
    """vinn_chunk: query again when the frame drifts this many typical distances from the plan's (VINNConfig.requery)."""
    views: tuple[str, ...] = ("agentview",)
    """vinn_multiview and vinn_plus: cameras whose images join the task camera's in VINN's key. Runs with these methods
    collect demonstrations that hold them (data/<task>-<version>+<camera>_84px.hdf5) and render them in every episode."""
    shared_view_encoder: bool = False
    """vinn_multiview and vinn_plus: one BYOL encoder trained on every view's frames instead of one per view."""
    proprio_weights: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
    """vinn_proprio: weights of the proprioception block tried (vinn_policy.keys); the one with the lowest validation
    error (at its own best k) is used."""
    k_sweep: tuple[int, ...] = ()
    """Closed-loop VINN success for these k as well (e.g. 1 5 10 20 50)."""
    demo_sweep: tuple[int, ...] = ()
    """Closed-loop VINN, BC-rep, BC and the paper's BC for these training-demo counts, each learned from the n demos
    alone (VINN's BYOL encoder and k too), with training seed 0."""
    sweep_shared_encoder: bool = False
    """In --demo-sweep, keep the main run's encoder (BYOL on all demos) and k for VINN and BC-rep instead: cheaper,
    but VINN then sees more data than BC (the report says so)."""
    replay: int | None = None
    """Re-run one seed with --method from the saved policies and write its video; skips everything else."""
    method: str = "vinn"
    training: int = 0
    """With --replay: which training's policy (its --train-seeds index; open-loop and random have only training 0)."""
    provenance: bool = False
    """Write every VINN step's neighbours (episode, frame, distance, weight, action) to <run_dir>/provenance/."""
    retrain: bool = False
    """Retrain the BYOL encoder and the BC baselines even if cached."""
    smoke: bool = False
    """A minute or two: tiny images, demos, epochs and episodes (for tests)."""
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
        if set(self.methods) & set(MULTIVIEW_METHODS) and (not self.views or self.camera in self.views):
            raise ValueError(f"--views must name cameras other than the task camera {self.camera!r}; got {self.views}.")
        if not self.proprio_weights or min(self.proprio_weights) <= 0:
            raise ValueError(f"--proprio-weights must be numbers > 0; got {self.proprio_weights}.")
        if not 1 <= self.episodes <= BLOCK_SIZE:
            raise ValueError(f"--episodes must be 1-{BLOCK_SIZE} (a block holds {BLOCK_SIZE} seeds); got {self.episodes}")
        if self.k_sweep and self.seed == 0:
            raise ValueError("--k-sweep probes a design choice: run it on a development block (--seed 1 or more), not the test block")
        if self.train_seeds < 1:
            raise ValueError(f"--train-seeds must be >= 1; got {self.train_seeds}")
        if self.smoke:
            self.demos, self.episodes, self.image_size, self.byol_epochs, self.bc_epochs = 4, 4, 32, 1, 1
            self.horizon = self.horizon or 40
            self.videos = min(self.videos, 1)

    @property
    def extra_cameras(self) -> tuple[str, ...]:
        """Cameras rendered besides the task camera, in the demonstrations and every episode: --views, if a method uses them."""
        used = set(self.methods) | ({self.method} if self.replay is not None else set())
        return tuple(self.views) if used & set(MULTIVIEW_METHODS) else ()

    @property
    def obs_keys(self) -> tuple[str, ...]:
        """Observation arrays the methods read from the demonstrations besides the task camera's frames."""
        from vinn_policy.keys import PROPRIO_KEYS

        proprio = PROPRIO_KEYS if "vinn_proprio" in self.methods else ()
        return (*(f"{camera}_image" for camera in self.extra_cameras), *proprio)

    def env_kwargs(self, render: bool = False, method: str | None = None) -> dict:
        """make_env's arguments for this run (with render: 256 px rgb frames for videos). With `method`, the extra
        cameras only if that method reads them: the others are rolled out as in a run without them (rendering a
        camera changes no simulation, tests/test_envs.py), so their evaluation rows stay those of such a run."""
        kwargs = {"image_size": self.image_px, "camera": self.camera, "horizon": self.horizon,
                  **({"render_mode": "rgb_array", "render_size": 256} if render else {"render_mode": None})}
        cameras = self.extra_cameras if method is None or method in MULTIVIEW_METHODS else ()
        return kwargs | ({"extra_cameras": cameras} if cameras else {})

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

    def byol_config(self, seed: int = 0) -> BYOLConfig:
        if self.paper:
            return replace(BYOLConfig.paper(), seed=seed)
        extra = {"batch_size": 16, "hidden_dim": 128} if self.smoke else {}
        return BYOLConfig(encoder=self.encoder_config(), epochs=self.byol_epochs, seed=seed, **extra)

    def bc_config(self, method: str, seed: int = 0) -> BCConfig:
        """The config of `method` (bc: robomimic's recipe; bc_paper and bc_rep: the paper's) for training `seed`."""
        recipe = BCConfig.robomimic if method == "bc" else BCConfig.paper_recipe
        config = recipe(self.encoder_config(), epochs=self.bc_epochs, patience=self.bc_patience, gripper_index=GRIPPER_INDEX,
                        batch_size=16 if self.smoke else 64, seed=seed)
        if self.paper:
            paper = BCConfig.paper(representation=method == "bc_rep")
            config = replace(config, batch_size=paper.batch_size, epochs=paper.epochs, patience=paper.patience)
        return config

    @property
    def block(self) -> str:
        """Which evaluation block the seeds come from (recorded in results.json)."""
        return "test" if self.seed == 0 else f"development {self.seed}"

    def eval_seeds(self) -> list[int]:
        return list(block_seeds(self.seed, self.episodes))
