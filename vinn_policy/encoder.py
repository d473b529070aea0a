"""The image encoder: a torchvision ResNet trunk (classifier removed) and the one preprocessing path.

Preprocessing is split in two so that BYOL can augment in between, while the database and queries use
exactly the same steps without augmentation:

    uint8 (B, H, W, 3) --to_unit_tensor--> float (B, 3, S, S) in [0, 1] --normalize--> model input

`preprocess` is the composition and is what embedding uses; BYOL calls the two halves around its
augmentations (colour jitter must see [0, 1] images, not normalised ones).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from numpy.typing import NDArray
from torch import nn

from vinn_policy.artefact import ArtefactError, load_artefact, save_artefact

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# name -> (torchvision constructor, feature dimension, file name of the official ImageNet weights)
ARCHITECTURES: dict[str, tuple[Callable[..., nn.Module], int, str]] = {
    "resnet18": (torchvision.models.resnet18, 512, "resnet18-f37072fd.pth"),
    "resnet34": (torchvision.models.resnet34, 512, "resnet34-b627a593.pth"),
    "resnet50": (torchvision.models.resnet50, 2048, "resnet50-0676ba61.pth"),
}


@dataclass
class EncoderConfig:
    """What defines an encoder's input and architecture (saved with every artefact that embeds images)."""

    arch: str = "resnet18"
    """torchvision ResNet: resnet18 (512-d, CPU default), resnet34 (512-d) or resnet50 (2048-d, paper)."""
    image_size: int = 84
    """Images are resized to image_size x image_size before the trunk (paper: 224)."""
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"Unknown encoder arch {self.arch!r}; available: {sorted(ARCHITECTURES)}")
        if not isinstance(self.image_size, int) or self.image_size < 32:
            raise ValueError(f"image_size must be an int >= 32 (ResNet downsamples 32x); got {self.image_size!r}")
        self.mean, self.std = tuple(float(m) for m in self.mean), tuple(float(s) for s in self.std)
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 values each, std > 0; got mean={self.mean}, std={self.std}")

    @classmethod
    def paper(cls) -> EncoderConfig:
        """The paper's encoder: ResNet-50 at 224 px."""
        return cls(arch="resnet50", image_size=224)

    @property
    def feature_dim(self) -> int:
        return ARCHITECTURES[self.arch][1]


def check_images(images: object) -> NDArray[np.uint8]:
    """Validate RGB images and return them as a (B, H, W, 3) uint8 array (a single image gets B = 1).

    Raises:
        ValueError: not an array, not uint8, not HxWx3 / BxHxWx3, or empty.
    """
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    if not isinstance(images, np.ndarray):
        raise ValueError(f"Expected images as a numpy uint8 array of shape (H, W, 3) or (B, H, W, 3); got {type(images).__name__}.")
    if images.dtype != np.uint8:
        hint = " (convert floats in [0, 1] with (img * 255).round().astype(np.uint8))" if images.dtype.kind == "f" else ""
        raise ValueError(f"Expected uint8 images; got dtype {images.dtype}{hint}.")
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"Expected RGB images of shape (H, W, 3) or (B, H, W, 3) (channels last, 3 channels); got shape {images.shape}."
        )
    if 0 in images.shape:
        raise ValueError(f"Expected non-empty images; got shape {images.shape}.")
    return images


def to_unit_tensor(images: NDArray[np.uint8], image_size: int) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float32 (B, 3, S, S) in [0, 1], resized (antialiased bilinear) if needed."""
    # The permuted (H, W, 3) view is already channels-last in memory: the layout the trunk runs in.
    x = torch.from_numpy(np.ascontiguousarray(check_images(images))).permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
        x = x.clamp_(0.0, 1.0)
    return x  # (B, 3, S, S)


def resize_uint8(images: NDArray[np.uint8], image_size: int, chunk: int = 512) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> uint8 (N, 3, S, S): resized once for training sets (4x smaller than float)."""
    return torch.cat([
        (to_unit_tensor(images[i : i + chunk], image_size) * 255).round_().to(torch.uint8).contiguous()  # NCHW: augmentations see training data as before
        for i in range(0, len(images), chunk)
    ])


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(B, 3, S, S) in [0, 1] -> (B, 3, S, S) standardised per channel."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def preprocess(images: NDArray[np.uint8], config: EncoderConfig) -> torch.Tensor:
    """The preprocessing shared by BYOL (around its augmentations), the database and queries."""
    return normalize(to_unit_tensor(images, config.image_size), config.mean, config.std)


def build_trunk(arch: str) -> nn.Module:
    """A randomly initialised torchvision ResNet with its classifier replaced by the identity."""
    constructor = ARCHITECTURES[arch][0]
    trunk = constructor(weights=None)
    trunk.fc = nn.Identity()
    return trunk


def load_imagenet_weights(trunk: nn.Module, arch: str, weights_file: str | Path) -> None:
    """Load official torchvision ImageNet weights from a local file (never downloads).

    Accepts the `.pth` file torchvision publishes (read with `weights_only=True`, so no code runs) or a
    `.safetensors` export of it. The classifier weights are dropped.
    """
    path = Path(weights_file)
    official = ARCHITECTURES[arch][2]
    if not path.is_file():
        raise FileNotFoundError(
            f"ImageNet weights file {path} not found. vinn-policy never downloads weights. On a machine with "
            f"internet access run: python -c \"import torchvision; torchvision.models.{arch}(weights='IMAGENET1K_V1')\" "
            f"and copy ~/.cache/torch/hub/checkpoints/{official} here, then pass its path."
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        trunk.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path} does not hold {arch} ImageNet weights ({str(e)[:200]}); expected torchvision's {official}.") from e


class SpatialSoftmax(nn.Module):
    """(B, C, H, W) feature map -> (B, K, 2): each of K learned 1x1-conv heatmaps' expected (x, y) in [-1, 1]
    (Levine et al. 2016; robomimic's SpatialSoftmax without its optional noise)."""

    def __init__(self, in_channels: int, keypoints: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, keypoints, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return expected_positions(self.conv(x))


def expected_positions(heat: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) heatmaps -> (B, K, 2): each map's softmax-weighted mean image position (x, y), in [-1, 1]."""
    h, w = heat.shape[-2:]
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, device=heat.device), torch.linspace(-1, 1, w, device=heat.device), indexing="ij")
    grid = torch.stack([xs.flatten(), ys.flatten()], dim=-1).to(heat.dtype)  # (HW, 2)
    return F.softmax(heat.flatten(2), dim=-1) @ grid  # (B, K, 2)


class RandomCrop(nn.Module):
    """A random `size` x `size` crop of each image in training mode, the centre crop in eval mode (robomimic's
    CropRandomizer with one crop). Crops draw from torch's global generator, seeded by fitting."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, size, size)
        b, c, h, w = x.shape
        s = self.size
        if not self.training:
            top, left = (h - s) // 2, (w - s) // 2
            return x[:, :, top : top + s, left : left + s]
        span = torch.arange(s, device=x.device)
        rows = torch.randint(0, h - s + 1, (b, 1), device=x.device) + span  # (B, s)
        cols = torch.randint(0, w - s + 1, (b, 1), device=x.device) + span
        batch, channel = torch.arange(b, device=x.device), torch.arange(c, device=x.device)
        return x[batch[:, None, None, None], channel[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]


def custom_trunk(arch: str, spec: dict) -> nn.Module:
    """A randomly initialised `arch` trunk pooled and cropped as `spec` says: {"pooling": "avg" (torchvision's global
    average) or "spatial_softmax" (`keypoints` expected image positions, projected to `projection` dims), "crop": a
    RandomCrop size or None}. End-to-end BC's trunks are these (baselines.bc.trunk_spec)."""
    if spec.get("pooling") not in ("avg", "spatial_softmax"):
        raise ValueError(f"trunk spec pooling must be 'avg' or 'spatial_softmax'; got {spec!r}")
    trunk = build_trunk(arch)
    if spec["pooling"] == "spatial_softmax":
        trunk.avgpool = SpatialSoftmax(ARCHITECTURES[arch][1], int(spec["keypoints"]))
        trunk.fc = nn.Linear(2 * int(spec["keypoints"]), int(spec["projection"]))  # ResNet.forward flattens (B, K, 2) first
    return nn.Sequential(RandomCrop(int(spec["crop"])), trunk) if spec.get("crop") else trunk


@dataclass
class Encoder:
    """A ResNet trunk with its config: images in, (N, D) float32 embeddings out."""

    config: EncoderConfig = field(default_factory=EncoderConfig)
    trunk: nn.Module | None = None
    origin: str = "random-init"
    """How the weights came to be: random-init, imagenet, byol, bc (recorded in saved artefacts)."""
    trunk_spec: dict | None = None
    """How to rebuild a trunk that is not a plain ResNet (its pooling and crop, see `custom_trunk`; e.g. an end-to-end
    BC's), saved with it. None: build_trunk(config.arch)."""
    output_dim: int | None = None
    """Embedding size of such a trunk (BC's spatial-softmax projection); None: the architecture's (config.feature_dim)."""

    def __post_init__(self) -> None:
        if self.trunk is None:
            self.trunk = build_trunk(self.config.arch)
        # oneDNN runs these convolutions faster channels-last, weights and input alike (a mix takes a slow
        # path): single-image act() about 2x faster, batched embedding 1.3x (docs/speed-and-scale.md).
        self.trunk.to(memory_format=torch.channels_last)

    @classmethod
    def imagenet(cls, weights_file: str | Path, config: EncoderConfig | None = None) -> Encoder:
        """An encoder initialised from a local torchvision ImageNet weights file."""
        config = config or EncoderConfig()
        trunk = build_trunk(config.arch)
        load_imagenet_weights(trunk, config.arch, weights_file)
        return cls(config=config, trunk=trunk, origin="imagenet")

    @property
    def feature_dim(self) -> int:
        return self.output_dim or self.config.feature_dim

    @property
    def device(self) -> torch.device:
        return next(self.trunk.parameters()).device

    def to(self, device: str | torch.device) -> Encoder:
        """Move the trunk (e.g. to "cuda"); embeddings always come back as CPU numpy arrays."""
        self.trunk.to(device)
        return self

    @torch.inference_mode()
    def embed(self, images: NDArray[np.uint8], batch_size: int = 256) -> NDArray[np.float32]:
        """Embed uint8 (B, H, W, 3) or (H, W, 3) images -> float32 (B, D), in eval mode, batched.

        Eval mode matters: BatchNorm in train mode would use the statistics of each (possibly single-image)
        batch, which made the original code's embeddings depend on batch composition.
        """
        images = check_images(images)
        was_training = self.trunk.training
        self.trunk.eval()
        try:
            device = self.device
            out = [
                self.trunk(preprocess(images[i : i + batch_size], self.config).to(device).contiguous(memory_format=torch.channels_last))
                .float().cpu().numpy()
                for i in range(0, len(images), batch_size)
            ]
        finally:
            self.trunk.train(was_training)
        return np.concatenate(out).astype(np.float32, copy=False)  # (B, D)

    def state_tensors(self, prefix: str = "encoder.") -> dict[str, torch.Tensor]:
        return {prefix + k: v.cpu() for k, v in self.trunk.state_dict().items()}  # saved from any device

    def meta(self) -> dict:
        custom = {"encoder_trunk": self.trunk_spec, "encoder_output_dim": self.output_dim} if self.trunk_spec else {}
        return {"encoder": asdict(self.config), "encoder_origin": self.origin, **custom}

    @classmethod
    def from_saved(cls, tensors: dict[str, torch.Tensor], meta: dict, path: str | Path, prefix: str = "encoder.",
                   trunk: nn.Module | None = None) -> Encoder:
        """Rebuild an encoder from an artefact's tensors and metadata (see `save_artefact`), into `trunk` if given
        (a trunk of another shape, such as BC's), else a plain `build_trunk(arch)`."""
        try:
            config = EncoderConfig(**meta["encoder"])
        except (KeyError, TypeError, ValueError) as e:
            raise ArtefactError(f"{path}: invalid encoder metadata ({e}).") from e
        spec, output_dim = meta.get("encoder_trunk"), meta.get("encoder_output_dim")
        if trunk is None:
            try:
                trunk = custom_trunk(config.arch, spec) if spec else build_trunk(config.arch)
            except (KeyError, TypeError, ValueError) as e:
                raise ArtefactError(f"{path}: invalid encoder trunk metadata ({e}).") from e
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            trunk.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ArtefactError(f"{path}: encoder weights do not fit a {config.arch}: {str(e)[:300]}") from e
        return cls(config=config, trunk=trunk, origin=meta.get("encoder_origin", "unknown"), trunk_spec=spec, output_dim=output_dim)

    def save(self, path: str | Path) -> Path:
        return save_artefact(path, "encoder", self.state_tensors(), self.meta())

    @classmethod
    def load(cls, path: str | Path) -> Encoder:
        tensors, meta = load_artefact(path, "encoder")
        return cls.from_saved(tensors, meta, path)
