#!/usr/bin/env python3
"""Generate the Pixio reference fixtures used by pixdex's Rust tests.

Run from the repository root:

    /work/venv/ref/bin/python tests/reference/generate_pixio_fixtures.py

Writes everything under tests/fixtures/pixio/ (images/, models/, reference/, README.md).
Fully deterministic: fixed seeds, single-threaded torch, no network access.
See tests/fixtures/pixio/README.md (written by this script) for what every file is.
"""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
from pathlib import Path

import numpy as np
import PIL
import safetensors
import torch
import torchvision
import transformers
from PIL import Image, ImageDraw, ImageOps
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoImageProcessor, BitImageProcessor, PixioBackbone, PixioConfig, PixioModel
from transformers.image_transforms import convert_to_rgb
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from transformers.utils import logging as hf_logging

torch.set_num_threads(1)
torch.manual_seed(0)
hf_logging.disable_progress_bar()
hf_logging.set_verbosity_error()

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "pixio"
IMG_DIR = OUT / "images"
MODEL_DIR = OUT / "models"
REF_DIR = OUT / "reference"

IMAGE_SEED = 1234
MODEL_SEEDS = {"a": 20240601, "b": 20240602}
BACKBONE_LN_SEED = 777  # the a-backbone checkpoint's own top-level layernorm
ATTN_IMPL = "eager"  # reference outputs use the eager attention path (SDPA diff is printed)

VERSIONS = {
    "python": platform.python_version(),
    "transformers": transformers.__version__,
    "torch": torch.__version__,
    "torchvision": torchvision.__version__,
    "pillow": PIL.__version__,
    "numpy": np.__version__,
    "safetensors": safetensors.__version__,
}

# --------------------------------------------------------------------------------------------
# configs

CONFIGS = {
    "a": dict(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=4, n_cls_tokens=8,
        patch_size=16, image_size=64, layer_norm_eps=1e-6, qkv_bias=True,
    ),
    "b": dict(
        hidden_size=48, num_hidden_layers=3, num_attention_heads=3, mlp_ratio=2, n_cls_tokens=1,
        patch_size=14, image_size=56, layer_norm_eps=1e-5, qkv_bias=True,
    ),
}
# transformers 5.24's strict PixioConfig rejects a float mlp_ratio; the JSON for config b still says 2.0
# (so the Rust parser sees a float) and the generator builds the model with the equal int 2.
JSON_MLP_RATIO = {"a": None, "b": 2.0}

PREPROCESSORS = {
    "a": dict(
        size={"height": 64, "width": 64}, do_center_crop=False, crop_size={"height": 64, "width": 64},
        resample=3, image_mean=list(IMAGENET_DEFAULT_MEAN), image_std=list(IMAGENET_DEFAULT_STD),
    ),
    "b": dict(
        size={"shortest_edge": 64}, do_center_crop=True, crop_size={"height": 56, "width": 56},
        resample=3, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    ),
}
EXTRA_RES = {"a": [(48, 112), (80, 80)], "b": [(42, 70), (84, 84)]}  # (height, width)
# images that get the EXTRA_RES variants; None = all. (Setting ["photo.jpg"] saves ~2.2 MB raw.)
EXTRA_RES_IMAGES: list[str] | None = ["photo.jpg", "gray.png"]
# photo.jpg only: a non-square input whose patch count equals the table's N (gh*gw == N, H != W), so the
# transformers skip rule (N equal AND height == width) still interpolates (spec §3 step 3 trap)
SKIP_RULE_RES = {"a": [(32, 128)], "b": [(28, 112)]}
SKIP_RULE_IMAGE = "photo.jpg"
HIDDEN_STATES_IMAGE = "photo_jpg"
BACKBONE_OUT_FEATURES = ["stem", "stage2"]  # a-backbone (non-default choice)
MODEL_BACKBONE_OUT_FEATURES = ["stage1", "stage2"]  # backbone built from the a-hub PixioModel checkpoint


# --------------------------------------------------------------------------------------------
# images


def _base_rgb(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth gradients + a few shapes + mild noise (uint8 HxWx3)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    u = x / max(w - 1, 1)
    v = y / max(h - 1, 1)
    r = 30 + 200 * u
    g = 40 + 180 * v
    b = 128 + 100 * np.sin(2 * np.pi * (1.3 * u + 0.7 * v)) * np.cos(np.pi * v)
    img = Image.fromarray(np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    d.ellipse([0.15 * w, 0.2 * h, 0.55 * w, 0.7 * h], fill=(230, 40, 60))
    d.rectangle([0.6 * w, 0.1 * h, 0.9 * w, 0.45 * h], fill=(20, 200, 90))
    d.line([0, h - 1, w - 1, 0], fill=(250, 250, 30), width=max(1, min(w, h) // 12))
    d.polygon([(0.1 * w, 0.95 * h), (0.35 * w, 0.6 * h), (0.5 * w, 0.98 * h)], fill=(10, 10, 160))
    arr = np.asarray(img).astype(np.float64) + rng.normal(0, 8, size=(h, w, 3))
    return np.clip(np.round(arr), 0, 255).astype(np.uint8)


def make_images() -> list[str]:
    rng = np.random.default_rng(IMAGE_SEED)
    IMG_DIR.mkdir(parents=True, exist_ok=True)

    Image.fromarray(_base_rgb(5, 3, rng)).save(IMG_DIR / "tiny.png")
    Image.fromarray(_base_rgb(300, 40, rng)).save(IMG_DIR / "wide.png")
    Image.fromarray(_base_rgb(37, 53, rng)).convert("L").save(IMG_DIR / "gray.png")

    # RGBA: alpha ramps 0..255 along x (with clamped runs of exactly 0 and 255), a half-transparent disc,
    # and random colour under the fully transparent pixels (so compositing matters)
    w, h = 61, 45
    rgb = _base_rgb(w, h, rng)
    x = np.arange(w)[None, :].repeat(h, 0).astype(np.float64)
    alpha = np.clip(np.round((x - 8) * 255.0 / (w - 17)), 0, 255)
    yy, xx = np.mgrid[0:h, 0:w]
    alpha[(yy - 22) ** 2 + (xx - 30) ** 2 < 64] = 128
    alpha[:4, :] = 0
    alpha[-3:, :] = 255
    alpha = alpha.astype(np.uint8)
    rgb[alpha == 0] = rng.integers(0, 256, size=(int((alpha == 0).sum()), 3), dtype=np.uint8)
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(IMG_DIR / "rgba.png")

    # palette image with a transparent palette index (tRNS chunk)
    pal_src = Image.fromarray(_base_rgb(50, 30, rng))
    pal = pal_src.quantize(colors=16, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    counts = np.bincount(np.asarray(pal).ravel(), minlength=16)
    t_index = int(np.argsort(counts)[-2])  # second most frequent index is transparent
    pal.save(IMG_DIR / "palette.png", transparency=t_index)

    Image.fromarray(_base_rgb(97, 131, rng)).save(
        IMG_DIR / "photo.jpg", quality=90, subsampling=2, progressive=False, optimize=False
    )
    Image.fromarray(_base_rgb(64, 48, rng)).convert("L").save(
        IMG_DIR / "gray.jpg", quality=90, progressive=False, optimize=False
    )

    # EXIF orientation 6 ("rotate 90 CW to display"); asymmetric content so orientation is detectable
    ex = _base_rgb(40, 24, rng)
    ex[:6, :6] = (255, 0, 0)
    ex[-6:, -10:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(ex).save(
        IMG_DIR / "exif_rot6.jpg", quality=90, subsampling=2, progressive=False, optimize=False,
        exif=exif.tobytes(),
    )
    with Image.open(IMG_DIR / "exif_rot6.jpg") as im:
        assert im.getexif().get(0x0112) == 6
        up = ImageOps.exif_transpose(im).convert("RGB")
    assert up.size == (24, 40)
    up.save(IMG_DIR / "exif_rot6_upright.png")

    names = [
        "tiny.png", "wide.png", "gray.png", "rgba.png", "palette.png",
        "photo.jpg", "gray.jpg", "exif_rot6.jpg", "exif_rot6_upright.png",
    ]
    with Image.open(IMG_DIR / "palette.png") as im:
        assert im.mode == "P" and im.info.get("transparency") is not None, im.info
    with Image.open(IMG_DIR / "rgba.png") as im:
        a = np.asarray(im)[..., 3]
        assert a.min() == 0 and a.max() == 255 and ((a > 0) & (a < 255)).any()
    return names


def key_prefix(name: str) -> str:
    return name.replace(".", "_")


def extra_res_for(name: str, img_name: str) -> list[tuple[int, int]]:
    res = []
    if EXTRA_RES_IMAGES is None or img_name in EXTRA_RES_IMAGES:
        res += EXTRA_RES[name]
    if img_name == SKIP_RULE_IMAGE:
        res += SKIP_RULE_RES[name]
    return res


def pil_pass_order(in_w: int, in_h: int, out_w: int, out_h: int) -> str:
    """Pass order of Pillow 13.0's ImagingResampleInner (src/libImaging/Resample.c).

    Vertical pass first iff (in_h - out_h) > 0 and (in_h - out_h) > 2 * (in_w - out_w); older Pillow
    (and torchvision's antialiased resize) always run the horizontal pass first. Each pass rounds and
    clamps to uint8, so the order changes results by several LSB on images with hard edges.
    """
    need_h, need_v = out_w != in_w, out_h != in_h
    dh, dw = in_h - out_h, in_w - out_w
    vfirst = dh > 0 and dh > 2 * dw
    if need_h and need_v:
        return "vertical_then_horizontal" if vfirst else "horizontal_then_vertical"
    return "horizontal_only" if need_h else ("vertical_only" if need_v else "none")


def resize_target(name: str, h: int, w: int) -> tuple[int, int]:
    size = PREPROCESSORS[name]["size"]
    if "shortest_edge" in size:
        s = size["shortest_edge"]
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(s * long / short)
        return (new_long, s) if w <= h else (s, new_long)
    return size["height"], size["width"]


# --------------------------------------------------------------------------------------------
# parameters (Hub layout names, spec §2a)


def hub_keys_and_shapes(cfg: dict) -> list[tuple[str, tuple[int, ...]]]:
    H = cfg["hidden_size"]
    P = cfg["patch_size"]
    N = (cfg["image_size"] // P) ** 2
    ncls = cfg["n_cls_tokens"]
    inter = int(H * cfg["mlp_ratio"])
    ks = [
        ("embeddings.cls_token", (1, ncls, H)),
        ("embeddings.position_embeddings", (1, ncls + N, H)),
        ("embeddings.patch_embeddings.projection.weight", (H, 3, P, P)),
        ("embeddings.patch_embeddings.projection.bias", (H,)),
    ]
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        ks += [
            (p + "norm1.weight", (H,)), (p + "norm1.bias", (H,)),
            (p + "attention.attention.query.weight", (H, H)), (p + "attention.attention.query.bias", (H,)),
            (p + "attention.attention.key.weight", (H, H)), (p + "attention.attention.key.bias", (H,)),
            (p + "attention.attention.value.weight", (H, H)), (p + "attention.attention.value.bias", (H,)),
            (p + "attention.output.dense.weight", (H, H)), (p + "attention.output.dense.bias", (H,)),
            (p + "norm2.weight", (H,)), (p + "norm2.bias", (H,)),
            (p + "mlp.fc1.weight", (inter, H)), (p + "mlp.fc1.bias", (inter,)),
            (p + "mlp.fc2.weight", (H, inter)), (p + "mlp.fc2.bias", (H,)),
        ]
    ks += [("layernorm.weight", (H,)), ("layernorm.bias", (H,))]
    return ks


def _bf16_min_ge(x: float) -> float:
    """Smallest bfloat16 value >= x (x > 0)."""
    v = torch.tensor([x], dtype=torch.bfloat16)
    if v.float().item() < x:
        v = (v.view(torch.int16) + 1).view(torch.bfloat16)
    return v.float().item()


NUDGE = _bf16_min_ge(1e-3)


def bf16_exact(x: np.ndarray) -> torch.Tensor:
    """Round to bfloat16-representable f32 values; push nonzero |v| < 1e-3 out to +-NUDGE."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(torch.bfloat16).to(torch.float32)
    small = (t != 0) & (t.abs() < 1e-3)
    t = torch.where(small, torch.sign(t) * NUDGE, t)
    assert torch.equal(t.to(torch.bfloat16).to(torch.float32), t)
    assert torch.equal(t.to(torch.float16).to(torch.float32), t)
    nz = t[t != 0].abs()
    assert nz.numel() == 0 or nz.min().item() >= 1e-3
    return t.contiguous()


def random_param(rng: np.random.Generator, key: str, shape: tuple[int, ...]) -> torch.Tensor:
    n = rng.standard_normal(size=shape)
    last = key.rsplit(".", 1)[-1]
    is_norm = ".norm1." in key or ".norm2." in key or key.startswith("layernorm.")
    if is_norm and last == "weight":
        x = 1.0 + 0.2 * n
    elif last == "bias":
        x = 0.1 * n
    elif key.endswith("cls_token") or key.endswith("position_embeddings"):
        x = 0.5 * n
    else:  # linear / conv weights: std 1/sqrt(fan_in)
        fan_in = int(np.prod(shape[1:]))
        x = n / np.sqrt(fan_in)
    return bf16_exact(x)


def make_hub_state(cfg: dict, seed: int) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    return {k: random_param(rng, k, s) for k, s in hub_keys_and_shapes(cfg)}


def hub_to_memory(key: str) -> str:
    """Hub (spec §2a) name -> transformers 5.x in-memory PixioModel name."""
    k = key
    if k.startswith("encoder.layer."):
        k = "layers." + k[len("encoder.layer."):]
        k = k.replace(".norm1.", ".layernorm_before.").replace(".norm2.", ".layernorm_after.")
        k = k.replace(".attention.attention.query.", ".attention.q_proj.")
        k = k.replace(".attention.attention.key.", ".attention.k_proj.")
        k = k.replace(".attention.attention.value.", ".attention.v_proj.")
        k = k.replace(".attention.output.dense.", ".attention.o_proj.")
    return k


# --------------------------------------------------------------------------------------------
# writing model folders


def config_json(name: str, architectures: list[str], dtype: str, **extra) -> str:
    cfg = PixioConfig(**CONFIGS[name], **extra)
    d = json.loads(cfg.to_json_string())
    d["architectures"] = architectures
    d["dtype"] = dtype
    if JSON_MLP_RATIO[name] is not None:
        d["mlp_ratio"] = JSON_MLP_RATIO[name]
    return json.dumps(d, indent=2, sort_keys=True) + "\n"


def patch_config_file(path: Path, name: str) -> None:
    if JSON_MLP_RATIO[name] is None:
        return
    d = json.loads(path.read_text())
    d["mlp_ratio"] = JSON_MLP_RATIO[name]
    path.write_text(json.dumps(d, indent=2, sort_keys=True) + "\n")


def load_config(folder: Path) -> PixioConfig:
    """PixioConfig from a fixture folder; coerces an integral float mlp_ratio (5.24 strict config)."""
    d = json.loads((folder / "config.json").read_text())
    if isinstance(d.get("mlp_ratio"), float) and d["mlp_ratio"].is_integer():
        d["mlp_ratio"] = int(d["mlp_ratio"])
    return PixioConfig.from_dict(d)


def write_preprocessor(name: str, folder: Path) -> None:
    BitImageProcessor(**PREPROCESSORS[name]).save_pretrained(folder)


def reset_dir(p: Path) -> Path:
    if p.exists():
        shutil.rmtree(p)
    p.mkdir(parents=True)
    return p


def write_hub_folder(name: str, folder: Path, state: dict[str, torch.Tensor], dtype: torch.dtype,
                     shards: int = 1) -> None:
    reset_dir(folder)
    dtype_name = str(dtype).replace("torch.", "")
    (folder / "config.json").write_text(config_json(name, ["PixioModel"], dtype_name))
    write_preprocessor(name, folder)
    st = {k: v.to(dtype).contiguous() for k, v in state.items()}
    if shards == 1:
        save_file(st, folder / "model.safetensors", metadata={"format": "pt"})
        return
    keys = list(st.keys())
    # split after layer 0 (embeddings + layer 0 | rest)
    cut = next(i for i, k in enumerate(keys) if k.startswith("encoder.layer.1."))
    parts = [keys[:cut], keys[cut:]]
    assert len(parts) == shards == 2
    weight_map = {}
    for i, part in enumerate(parts):
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({k: st[k] for k in part}, folder / fname, metadata={"format": "pt"})
        weight_map.update({k: fname for k in part})
    index = {
        "metadata": {
            "total_parameters": int(sum(v.numel() for v in st.values())),
            "total_size": int(sum(v.numel() * v.element_size() for v in st.values())),
        },
        "weight_map": dict(sorted(weight_map.items())),
    }
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def safetensors_keys(folder: Path) -> list[str]:
    keys = []
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), "pt") as h:
            keys += list(h.keys())
    return sorted(keys)


def check_loading_info(info: dict, what: str, allow_missing: set[str] = frozenset()) -> None:
    missing = set(info["missing_keys"]) - set(allow_missing)
    bad = {k: v for k, v in info.items() if k != "missing_keys" and v}
    assert not missing and not bad, f"{what}: load problems {info}"


def load_model(folder: Path, name: str, **kw) -> PixioModel:
    model, info = PixioModel.from_pretrained(
        folder, config=load_config(folder), output_loading_info=True, attn_implementation=ATTN_IMPL, **kw
    )
    check_loading_info(info, str(folder))
    return model.eval()


def assert_params_equal(model: PixioModel, hub_state: dict[str, torch.Tensor], what: str) -> None:
    sd = model.state_dict()
    assert set(sd) == {hub_to_memory(k) for k in hub_state}, what
    for k, v in hub_state.items():
        p = sd[hub_to_memory(k)]
        assert p.dtype == torch.float32 and torch.equal(p, v), f"{what}: {k} differs"


def load_backbone(folder: Path) -> PixioBackbone:
    """PixioBackbone.from_pretrained, then both layernorms set from the file by their saved names.

    save_pretrained (5.24) writes the inner PixioModel's final norm as `encoder.layernorm.*` and the
    backbone's own feature norm as `layernorm.*`, but from_pretrained (5.24) loads them swapped
    (file `layernorm.*` -> `pixio.layernorm`, file `encoder.layernorm.*` -> `layernorm`). The fixture
    follows the saved names: the feature maps use the file's top-level `layernorm.*`.
    """
    bb, info = PixioBackbone.from_pretrained(folder, output_loading_info=True, attn_implementation=ATTN_IMPL)
    check_loading_info(info, str(folder))
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        with torch.no_grad():
            for p in ("weight", "bias"):
                getattr(bb.layernorm, p).copy_(f.get_tensor(f"layernorm.{p}"))
                getattr(bb.pixio.layernorm, p).copy_(f.get_tensor(f"encoder.layernorm.{p}"))
    return bb.eval()


# --------------------------------------------------------------------------------------------
# reference computation


def processors(folder: Path):
    pil = AutoImageProcessor.from_pretrained(folder, backend="pil")
    tv = AutoImageProcessor.from_pretrained(folder)
    assert type(pil).__name__ == "BitImageProcessorPil", type(pil)
    assert type(tv).__name__ == "BitImageProcessor", type(tv)
    return pil, tv


def pil_resize_reference(name: str, decoded: np.ndarray) -> np.ndarray:
    """Resize (+centre crop) with Pillow directly, mirroring the processor's algorithm."""
    pp = PREPROCESSORS[name]
    h, w = decoded.shape[:2]
    nh, nw = resize_target(name, h, w)
    out = np.asarray(Image.fromarray(decoded).resize((nw, nh), Image.Resampling.BICUBIC))
    if pp["do_center_crop"]:
        ch, cw = pp["crop_size"]["height"], pp["crop_size"]["width"]
        top, left = (nh - ch) // 2, (nw - cw) // 2
        assert top >= 0 and left >= 0
        out = out[top:top + ch, left:left + cw]
    return np.ascontiguousarray(out)


def resized_u8(proc, img: Image.Image, **kw) -> np.ndarray:
    r = proc(img, do_rescale=False, do_normalize=False, return_tensors="pt", **kw)["pixel_values"][0]
    r = r.numpy() if hasattr(r, "numpy") else np.asarray(r)
    assert np.all(r == np.round(r)) and r.min() >= 0 and r.max() <= 255
    return r.transpose(1, 2, 0).astype(np.uint8)


def compute_reference(name: str, images: list[str], hub_folder: Path, backbone_folder: Path | None,
                      stats: dict) -> tuple[dict[str, torch.Tensor], dict]:
    cfg = CONFIGS[name]
    L = cfg["num_hidden_layers"]
    ncls = cfg["n_cls_tokens"]
    P = cfg["patch_size"]
    pil_proc, tv_proc = processors(hub_folder)
    model = load_model(hub_folder, name)
    model_sdpa = PixioModel.from_pretrained(hub_folder, config=load_config(hub_folder), attn_implementation="sdpa").eval()
    backbone = None
    model_backbone = None
    if backbone_folder is not None:
        backbone = load_backbone(backbone_folder)
        assert list(backbone.out_features) == BACKBONE_OUT_FEATURES, backbone.out_features
        # a backbone from the plain PixioModel checkpoint; 5.24 leaves its `layernorm` MISSING (1/0 init),
        # we set it to the model's final layernorm (spec §5 recommended behaviour)
        model_backbone, info = PixioBackbone.from_pretrained(
            hub_folder, out_features=MODEL_BACKBONE_OUT_FEATURES, output_loading_info=True,
            attn_implementation=ATTN_IMPL,
        )
        assert set(info["missing_keys"]) == {"layernorm.weight", "layernorm.bias"}, info
        check_loading_info(info, "model_backbone", allow_missing={"layernorm.weight", "layernorm.bias"})
        stats["model_backbone_missing_keys"] = sorted(info["missing_keys"])
        stats["model_backbone_default_ln"] = (
            bool(torch.all(model_backbone.layernorm.weight == 1)), bool(torch.all(model_backbone.layernorm.bias == 0))
        )
        with torch.no_grad():
            model_backbone.layernorm.weight.copy_(model.layernorm.weight)
            model_backbone.layernorm.bias.copy_(model.layernorm.bias)
        model_backbone.eval()

    ref: dict[str, torch.Tensor] = {}
    max_pv_diff = 0.0
    max_u8_diff = 0
    n_u8_diff = 0
    n_u8_total = 0
    max_sdpa = 0.0
    for img_name in images:
        pre = key_prefix(img_name)
        with Image.open(IMG_DIR / img_name) as im:
            im.load()
            img = im
            decoded = convert_to_rgb(img, return_numpy=True)
            # the PIL backend's own view of the image before resize (CHW)
            seen = pil_proc.process_image(img, do_convert_rgb=True)
            assert np.array_equal(seen.transpose(1, 2, 0), decoded)
            resized = pil_resize_reference(name, decoded)
            assert np.array_equal(resized, resized_u8(pil_proc, img)), f"{img_name}: Pillow != BitImageProcessorPil"
            tv_resized = resized_u8(tv_proc, img)
            d = np.abs(tv_resized.astype(np.int32) - resized.astype(np.int32))
            max_u8_diff = max(max_u8_diff, int(d.max()))
            n_u8_diff += int((d > 0).sum())
            n_u8_total += d.size

            pv = pil_proc(img, return_tensors="pt")["pixel_values"].to(torch.float32)
            pv_tv = tv_proc(img, return_tensors="pt")["pixel_values"].to(torch.float32)
            max_pv_diff = max(max_pv_diff, (pv - pv_tv).abs().max().item())
            dh_, dw_ = decoded.shape[:2]
            th, tw = resize_target(name, dh_, dw_)
            stats.setdefault("pass_order", {})[pre] = pil_pass_order(dw_, dh_, tw, th)
            for (H, W) in extra_res_for(name, img_name):
                stats["pass_order"][f"{pre}.res{H}x{W}"] = pil_pass_order(dw_, dh_, W, H)
            ref[f"{pre}.decoded_rgb"] = torch.from_numpy(np.ascontiguousarray(decoded))
            ref[f"{pre}.resized_pil"] = torch.from_numpy(resized.copy())
            ref[f"{pre}.pixel_values"] = pv.contiguous()
            ref[f"{pre}.pixel_values_tv"] = pv_tv.contiguous()

            with torch.inference_mode():
                want_hs = pre == HIDDEN_STATES_IMAGE
                out = model(pixel_values=pv, output_hidden_states=want_hs)
                ref[f"{pre}.last_hidden_state"] = out.last_hidden_state.contiguous()
                ref[f"{pre}.pooler_output"] = out.pooler_output.contiguous()
                out_sdpa = model_sdpa(pixel_values=pv)
                max_sdpa = max(max_sdpa, (out_sdpa.last_hidden_state - out.last_hidden_state).abs().max().item())
                if want_hs:
                    assert len(out.hidden_states) == L + 1
                    for k, hs in enumerate(out.hidden_states):
                        ref[f"{pre}.hidden_states.{k}"] = hs.contiguous()
                    ln = torch.nn.functional.layer_norm(
                        out.hidden_states[-1], (cfg["hidden_size"],), model.layernorm.weight,
                        model.layernorm.bias, cfg["layer_norm_eps"])
                    stats["ln_final_check"] = (ln - out.last_hidden_state).abs().max().item()
                if backbone is not None:
                    fm = backbone(pixel_values=pv).feature_maps
                    for st, t in zip(backbone.out_features, fm):
                        ref[f"{pre}.backbone.{st}"] = t.contiguous()
                    fm2 = model_backbone(pixel_values=pv).feature_maps
                    for st, t in zip(model_backbone.out_features, fm2):
                        ref[f"model_backbone.{pre}.{st}"] = t.contiguous()
                    # with the learned norm, the last stage equals the patch part of last_hidden_state
                    gh, gw = pv.shape[2] // P, pv.shape[3] // P
                    lhs_patch = out.last_hidden_state[:, ncls:].reshape(1, gh, gw, -1).permute(0, 3, 1, 2)
                    stats["model_backbone_last_vs_lhs"] = max(
                        stats.get("model_backbone_last_vs_lhs", 0.0), (fm2[-1] - lhs_patch).abs().max().item()
                    )

            for (H, W) in extra_res_for(name, img_name):
                rp = f"{pre}.res{H}x{W}"
                pvr = pil_proc(img, size={"height": H, "width": W}, do_center_crop=False,
                               return_tensors="pt")["pixel_values"].to(torch.float32)
                assert tuple(pvr.shape) == (1, 3, H, W), pvr.shape
                ref[f"{rp}.pixel_values"] = pvr.contiguous()
                with torch.inference_mode():
                    o = model(pixel_values=pvr)
                    ref[f"{rp}.last_hidden_state"] = o.last_hidden_state.contiguous()
                    ref[f"{rp}.pooler_output"] = o.pooler_output.contiguous()
                    if backbone is not None and pre == HIDDEN_STATES_IMAGE and (H, W) == EXTRA_RES[name][0]:
                        for st, t in zip(backbone.out_features, backbone(pixel_values=pvr).feature_maps):
                            ref[f"{rp}.backbone.{st}"] = t.contiguous()
                        for st, t in zip(model_backbone.out_features, model_backbone(pixel_values=pvr).feature_maps):
                            ref[f"model_backbone.{rp}.{st}"] = t.contiguous()

    stats["max_pv_pil_vs_tv"] = max_pv_diff
    stats["max_u8_pil_vs_tv"] = max_u8_diff
    stats["frac_u8_pil_vs_tv_differ"] = n_u8_diff / max(n_u8_total, 1)
    stats["max_sdpa_vs_eager_lhs"] = max_sdpa
    return ref, stats


# --------------------------------------------------------------------------------------------
# verification: reload each folder and recompute


def verify_folder(name: str, folder: Path, ref: dict[str, torch.Tensor], images: list[str]) -> float:
    model = load_model(folder, name, dtype=torch.float32)
    worst = 0.0
    with torch.inference_mode():
        for img_name in images:
            pre = key_prefix(img_name)
            o = model(pixel_values=ref[f"{pre}.pixel_values"])
            worst = max(worst, (o.last_hidden_state - ref[f"{pre}.last_hidden_state"]).abs().max().item())
            worst = max(worst, (o.pooler_output - ref[f"{pre}.pooler_output"]).abs().max().item())
            for (H, W) in extra_res_for(name, img_name):
                rp = f"{pre}.res{H}x{W}"
                o = model(pixel_values=ref[f"{rp}.pixel_values"])
                worst = max(worst, (o.last_hidden_state - ref[f"{rp}.last_hidden_state"]).abs().max().item())
    return worst


def save_file_deterministic(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """safetensors.save_file, but with `__metadata__` keys in sorted order (the Rust writer emits the
    metadata map in hash order, which makes the bytes differ from run to run)."""
    from safetensors.torch import save

    raw = save(tensors, metadata=metadata)
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    md = header.pop("__metadata__")
    new = {"__metadata__": dict(sorted(md.items())), **header}
    enc = json.dumps(new, separators=(",", ":"), ensure_ascii=False).encode()
    assert len(enc) <= n, (len(enc), n)
    enc = enc + b" " * (n - len(enc))
    path.write_bytes(raw[:8] + enc + raw[8 + n:])


def dir_size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


# --------------------------------------------------------------------------------------------
# README


def _image_rows(images: list[str]) -> str:
    notes = {
        "tiny.png": "RGB; extreme upscale (5x3 -> 64x64)",
        "wide.png": "RGB; 7.5:1 aspect",
        "gray.png": "mode L (convert(\"RGB\") replicates the channel)",
        "rgba.png": "RGBA; alpha ramps 0..255 along x, rows 0-3 alpha 0 (random colour under it), "
                    "last 3 rows alpha 255, a disc at alpha 128; composited over white",
        "palette.png": "mode P, 16 colours, tRNS palette transparency (one index fully transparent) "
                       "-> converted to RGBA and composited over white",
        "photo.jpg": "RGB baseline JPEG q90 4:2:0",
        "gray.jpg": "grayscale (1-component) baseline JPEG q90",
        "exif_rot6.jpg": "RGB baseline JPEG q90 4:2:0, EXIF Orientation=6. transformers does NOT apply "
                         "EXIF orientation: decoded_rgb is the stored 40x24 (WxH) raster",
        "exif_rot6_upright.png": "PIL decode of exif_rot6.jpg after ImageOps.exif_transpose (24x40), lossless; "
                                 "compare a Rust EXIF-aware decode against it within JPEG tolerance",
    }
    rows = []
    for n in images:
        with Image.open(IMG_DIR / n) as im:
            rows.append(f"| `images/{n}` | `{key_prefix(n)}` | {im.mode} | {im.size[0]}x{im.size[1]} | {notes[n]} |")
    return "\n".join(rows)


def _keys_example(keys: list[str]) -> str:
    import re
    pick = [k for k in keys if re.search(r"(^|\.)layers?\.0\.", k) or not re.search(r"(^|\.)layers?\.\d+\.", k)]
    return ", ".join(f"`{k}`" for k in pick)


def write_readme(summary: dict, images: list[str]) -> None:
    v = summary["versions"]
    sk = summary["saved_keys"]
    st_a, st_b = summary["stats"]["a"], summary["stats"]["b"]
    files = "\n".join(
        f"| `{p.relative_to(OUT)}` | {p.stat().st_size:,} |"
        for p in sorted(OUT.rglob("*")) if p.is_file() and p.name != "README.md"
    )
    native = ", ".join(f"{k} ({d}) {w:.2g}" for k, (d, w) in summary["native"].items())
    verify = "\n".join(f"| {k} | {val:.3g} |" for k, val in summary["verify"].items())
    vfirst = {c: sorted(k for k, o in summary["stats"][c]["pass_order"].items() if o == "vertical_then_horizontal")
              for c in ("a", "b")}
    text = f"""# Pixio reference fixtures

Generated by `tests/reference/generate_pixio_fixtures.py` (run from the repo root with
`/work/venv/ref/bin/python tests/reference/generate_pixio_fixtures.py`). Do not edit by hand: rerun the script.
Deterministic (fixed seeds, `torch.set_num_threads(1)`, CPU). This README is written by the script.

Versions: transformers {v['transformers']}, torch {v['torch']}, torchvision {v['torchvision']},
Pillow {v['pillow']}, numpy {v['numpy']}, safetensors {v['safetensors']}, Python {v['python']}.
Seeds: images {IMAGE_SEED}, model a {MODEL_SEEDS['a']}, model b {MODEL_SEEDS['b']},
a-backbone feature norm {BACKBONE_LN_SEED}.

## Images (`images/`)

Synthetic: smooth gradients + filled shapes (hard edges) + Gaussian noise (sigma 8). Sizes are W x H (PIL).
The key prefix used in the reference files is the file name with `.` replaced by `_`.

| file | key prefix | mode | size | notes |
|---|---|---|---|---|
{_image_rows(images)}

## Model configs

| cfg | hidden | layers | heads | mlp_ratio | n_cls | patch | image | eps | preprocessor |
|---|---|---|---|---|---|---|---|---|---|
| a | 64 | 2 | 4 | 4 (int) | 8 | 16 | 64 | 1e-6 | `size {{height:64,width:64}}`, no crop, bicubic (3), ImageNet mean/std |
| b | 48 | 3 | 3 | **2.0 (float in JSON)** | 1 | 14 | 56 | 1e-5 | `size {{shortest_edge:64}}` + centre crop 56x56, bicubic (3), mean/std 0.5 |

Every parameter is random (LN weights 1+0.2N, biases 0.1N, linear/conv weights N/sqrt(fan_in), cls token and
position table 0.5N), then rounded to bfloat16-representable values with every nonzero |v| >= 1e-3
(smaller ones pushed to +-{NUDGE!r}). So the f32, f16 and bf16 files hold identical values, and one f32
reference serves every folder (loaded with `dtype=torch.float32` they reproduce it bit-exactly).

**mlp_ratio 2.0**: transformers 5.24's strict `PixioConfig` declares `mlp_ratio: int` and *rejects* a float
(`StrictDataclassFieldValidationError`) both in the constructor and in `from_pretrained`. The b configs still
say `"mlp_ratio": 2.0` (the Rust parser must accept it); the generator builds/loads b with the int 2.

## Model folders (`models/`)

Each holds `config.json` (transformers-style, `architectures`, `dtype`), `preprocessor_config.json`
(`BitImageProcessor.save_pretrained`) and weights.

| folder | layout | dtype | how it was written |
|---|---|---|---|
| `a-hub` | Hub layout (spec §2a) | f32 | renamed state dict written with safetensors; transformers loads it with no missing/unexpected keys, params bit-identical |
| `a-saved` | `save_pretrained` default (`save_original_format=True`) | f32 | fresh `PixioModel(config)` + `load_state_dict`, then `save_pretrained(dir)` (see finding 5) |
| `a-memory` | in-memory names | f32 | same model, `save_pretrained(dir, save_original_format=False)` |
| `a-backbone` | saved `PixioBackbone` | f32 | `PixioBackbone(config a, out_features={BACKBONE_OUT_FEATURES})`, encoder weights = model a, its own top-level `layernorm` re-randomised (seed {BACKBONE_LN_SEED}), `save_pretrained` |
| `a-hub-f16-sharded` | Hub layout | f16 | 2 shards (embeddings + layer 0 / layer 1 + final norm) + `model.safetensors.index.json` (`metadata.total_size`, `metadata.total_parameters`, `weight_map`) |
| `a-hub-bf16` | Hub layout | bf16 | single file |
| `b-hub` | Hub layout | f32 | as `a-hub` |
| `b-saved-bf16` | `save_pretrained` default | bf16 | `model.to(bfloat16).save_pretrained(dir)`, then `mlp_ratio` patched to 2.0 in config.json |

Key names (layer 0 shown; every other layer is the same with its index):

* Hub (`a-hub`, `a-hub-f16-sharded`, `a-hub-bf16`, `b-hub`): `embeddings.cls_token`,
  `embeddings.position_embeddings`, `embeddings.patch_embeddings.projection.{{weight,bias}}`,
  `encoder.layer.0.norm1.*`, `encoder.layer.0.attention.attention.{{query,key,value}}.*`,
  `encoder.layer.0.attention.output.dense.*`, `encoder.layer.0.norm2.*`, `encoder.layer.0.mlp.fc1.*`,
  `encoder.layer.0.mlp.fc2.*`, `layernorm.*`.
* `save_pretrained` default (`a-saved`, `b-saved-bf16`), observed: {_keys_example(sk['a-saved'])}.
  I.e. Hub layout except the MLP is `intermediate.dense` (= fc1) and `output.dense` (= fc2);
  `attention.output.dense` is still the attention output projection.
* `save_original_format=False` (`a-memory`): {_keys_example(sk['a-memory'])}.
* Backbone (`a-backbone`): {_keys_example(sk['a-backbone'])}.
  `encoder.layernorm.*` is the inner PixioModel's final norm (unused by the feature maps);
  top-level `layernorm.*` is the backbone's own feature norm, and that is what the reference feature maps use.

## Reference outputs (`reference/a.safetensors`, `reference/b.safetensors`)

Computed by transformers on CPU in float32 under `torch.inference_mode()`, **eager** attention
(SDPA differs by at most {max(st_a['max_sdpa_vs_eager_lhs'], st_b['max_sdpa_vs_eager_lhs']):.2g}), weights from `models/<cfg>-hub`.
All tensors are f32 except `decoded_rgb` / `resized_pil` (u8). `<img>` is the key prefix (e.g. `photo_jpg`).

| key | shape | what |
|---|---|---|
| `<img>.decoded_rgb` | `[H,W,3]` u8 | PIL decode + transformers `convert_to_rgb` (alpha / palette transparency composited over white; L and P converted). Exactly the array the resize sees. |
| `<img>.resized_pil` | `[h,w,3]` u8 | `Image.fromarray(decoded).resize((w,h), BICUBIC)` (+ centre crop for b, `top=(h-ch)//2`, `left=(w-cw)//2`); asserted equal to `BitImageProcessorPil` with rescale/normalise off |
| `<img>.pixel_values` | `[1,3,h,w]` | `AutoImageProcessor.from_pretrained(dir, backend="pil")` |
| `<img>.pixel_values_tv` | `[1,3,h,w]` | default (torchvision) backend `BitImageProcessor` |
| `<img>.last_hidden_state` | `[1,ncls+gh*gw,H]` | `PixioModel(pixel_values)` |
| `<img>.pooler_output` | `[1,H]` | |
| `photo_jpg.hidden_states.<k>` | `[1,T,H]` | k = 0..L (`output_hidden_states=True`; 0 = embeddings, k = block k output, pre final norm) |
| `<img>.res<H>x<W>.pixel_values` | `[1,3,H,W]` | PIL backend with `size={{"height":H,"width":W}}`, `do_center_crop=False` |
| `<img>.res<H>x<W>.last_hidden_state` / `.pooler_output` | | model on those pixel values (position-embedding interpolation) |
| `<img>.backbone.<stage>` (a only) | `[1,H,gh,gw]` | `a-backbone` checkpoint, stages {BACKBONE_OUT_FEATURES}, feature norm = file's top-level `layernorm.*` |
| `photo_jpg.res48x112.backbone.<stage>` (a only) | `[1,64,3,7]` | same, rectangular input |
| `model_backbone.<img>.<stage>` (a only) | `[1,H,gh,gw]` | `PixioBackbone` from the plain `a-hub` PixioModel checkpoint, out_features {MODEL_BACKBONE_OUT_FEATURES}, feature norm set to the model's final `layernorm.*` (spec §5 recommendation) |
| `model_backbone.photo_jpg.res48x112.<stage>` (a only) | `[1,64,3,7]` | same, rectangular input |

Resolutions: a: {EXTRA_RES['a']} for every image, plus {SKIP_RULE_RES['a']} for photo_jpg only;
b: {EXTRA_RES['b']} for every image, plus {SKIP_RULE_RES['b']} for photo_jpg only (H, W).
The photo-only sizes have gh*gw == N but H != W, so transformers' skip rule still interpolates the table
(to a 2x8 grid). Check: `LN_final(hidden_states[-1]) == last_hidden_state` exactly;
`model_backbone.<img>.stage2` equals the patch part of `last_hidden_state` (max diff {st_a['model_backbone_last_vs_lhs']}).

`__metadata__` (all strings, several JSON-encoded): `config`, `versions`, seeds, `attn_implementation`,
`pixel_values_backend`, `preprocessor`, `images` (prefix -> file), `extra_resolutions_hw`,
`skip_rule_resolutions_hw`, `hidden_states_image`, `num_hidden_states`, `pil_resize_pass_order`
(per resize, see below), for a also `backbone_out_features`, `model_backbone_out_features`, and which
layernorm each backbone uses.

## Findings that matter for the Rust side

1. **Pillow 13.0 resize pass order.** `ImagingResampleInner` (Pillow 13.0.0 `src/libImaging/Resample.c`) runs
   the **vertical pass first** iff `(in_h - out_h) > 0 && (in_h - out_h) > 2 * (in_w - out_w)`; otherwise
   horizontal first (older Pillow and torchvision: always horizontal first). Each pass rounds/clamps to u8,
   so the order changes pixels by several LSB on hard edges. Checked on 396 random size pairs (all matched).
   Vertical-first cases in these fixtures: a: {vfirst['a']}; b: {vfirst['b']}.
2. **PIL vs torchvision backend**: max |pixel_values diff| a {st_a['max_pv_pil_vs_tv']:.4f}, b {st_b['max_pv_pil_vs_tv']:.4f};
   resized u8 max diff a {st_a['max_u8_pil_vs_tv']} LSB ({100*st_a['frac_u8_pil_vs_tv_differ']:.2f}% of values differ),
   b {st_b['max_u8_pil_vs_tv']} LSB ({100*st_b['frac_u8_pil_vs_tv_differ']:.2f}%). The large ones are the vertical-first
   resizes (torchvision is horizontal-first) and the 5x3 upscale. Test the Rust resize bit-exact against
   `resized_pil`/`pixel_values`, and only loosely against `pixel_values_tv`.
3. **Backbone layernorm.** `PixioBackbone.from_pretrained(<PixioModel checkpoint>)` reports
   `layernorm.weight/bias` MISSING and initialises them to 1/0 (features = LN without affine).
   And a saved PixioBackbone does not round-trip in 5.24: `save_pretrained` writes the inner final norm as
   `encoder.layernorm.*` and the feature norm as `layernorm.*`, but `from_pretrained` loads them **swapped**
   (file `layernorm.*` -> `pixio.layernorm`, file `encoder.layernorm.*` -> `layernorm`). The fixtures follow
   the saved names (the generator reloads, then sets both norms from the file by name).
4. Sharded f16 (`a-hub-f16-sharded`) and bf16 folders load in transformers with no missing keys. Without a
   `dtype` argument transformers 5.24 loads them in the checkpoint dtype; run natively on CPU their
   `last_hidden_state` differs from the f32 reference by at most: {native}.
5. `save_pretrained` output depends on the model's provenance: a model loaded from a Hub-layout checkpoint is
   written back in the Hub layout (`mlp.fc1/fc2`; observed: a {summary['stats'].get('a_resave_of_hub_loaded_model_is_hub_layout')},
   b {summary['stats'].get('b_resave_of_hub_loaded_model_is_hub_layout')}), a freshly constructed model writes
   `intermediate.dense`/`output.dense`. `a-saved`/`b-saved-bf16` come from fresh models (the distinct layout);
   the saved-backbone layout likewise comes from a freshly built backbone.

## Verification (reload every folder with transformers, dtype=float32, compare to the reference)

| folder | max abs diff |
|---|---|
{verify}

## Files

| file | bytes |
|---|---|
{files}
"""
    (OUT / "README.md").write_text(text)


# --------------------------------------------------------------------------------------------


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for sub in ("images", "models", "reference"):
        reset_dir(OUT / sub)
    images = make_images()
    summary: dict = {"versions": VERSIONS, "saved_keys": {}, "verify": {}, "stats": {}, "native": {}}

    for name in ("a", "b"):
        state = make_hub_state(CONFIGS[name], MODEL_SEEDS[name])
        hub = MODEL_DIR / f"{name}-hub"
        write_hub_folder(name, hub, state, torch.float32)
        model = load_model(hub, name)
        assert_params_equal(model, state, f"{name}-hub")
        # save_pretrained output depends on where the model came from: one loaded from a Hub-layout
        # checkpoint is written back in the Hub layout (mlp.fc1/fc2); a freshly constructed one uses
        # intermediate.dense/output.dense. The *-saved folders use a fresh model (the distinct layout).
        with tempfile.TemporaryDirectory() as td:
            model.save_pretrained(td)
            summary["stats"][f"{name}_resave_of_hub_loaded_model_is_hub_layout"] = (
                safetensors_keys(Path(td)) == sorted(state))
        fresh = PixioModel(PixioConfig(**CONFIGS[name])).eval()
        fresh.load_state_dict({hub_to_memory(k): v for k, v in state.items()}, strict=True)

        if name == "a":
            write_hub_folder(name, MODEL_DIR / "a-hub-f16-sharded", state, torch.float16, shards=2)
            write_hub_folder(name, MODEL_DIR / "a-hub-bf16", state, torch.bfloat16)

            saved = reset_dir(MODEL_DIR / "a-saved")
            fresh.save_pretrained(saved)
            write_preprocessor(name, saved)

            mem = reset_dir(MODEL_DIR / "a-memory")
            fresh.save_pretrained(mem, save_original_format=False)
            write_preprocessor(name, mem)

            # backbone: same encoder weights, its own (differently randomised) top-level layernorm
            bb_cfg = PixioConfig(**CONFIGS[name], out_features=BACKBONE_OUT_FEATURES)
            bb_cfg._attn_implementation = ATTN_IMPL
            bb = PixioBackbone(bb_cfg).eval()
            assert bb.config._attn_implementation == ATTN_IMPL
            missing, unexpected = bb.pixio.load_state_dict(model.state_dict(), strict=True)
            rng = np.random.default_rng(BACKBONE_LN_SEED)
            H = CONFIGS[name]["hidden_size"]
            with torch.no_grad():
                bb.layernorm.weight.copy_(bf16_exact(1.0 + 0.2 * rng.standard_normal(H)))
                bb.layernorm.bias.copy_(bf16_exact(0.1 * rng.standard_normal(H)))
            assert not torch.equal(bb.layernorm.weight, bb.pixio.layernorm.weight)
            bbdir = reset_dir(MODEL_DIR / "a-backbone")
            bb.save_pretrained(bbdir)
            write_preprocessor(name, bbdir)
            # transformers 5.24 round trip: which tensors come back different?
            bb_reloaded, info = PixioBackbone.from_pretrained(bbdir, output_loading_info=True)
            check_loading_info(info, "a-backbone")
            rsd = bb_reloaded.state_dict()
            summary["stats"]["a_backbone_roundtrip_mismatched"] = sorted(
                k for k, v in bb.state_dict().items() if not torch.equal(rsd[k], v)
            )
            summary["stats"]["a_backbone_roundtrip_ln_swapped"] = bool(
                torch.equal(rsd["layernorm.weight"], bb.pixio.layernorm.weight)
                and torch.equal(rsd["pixio.layernorm.weight"], bb.layernorm.weight)
            )
            fixed = load_backbone(bbdir)
            for k, v in bb.state_dict().items():
                assert torch.equal(fixed.state_dict()[k], v), k
            for d in (saved, mem, bbdir):
                summary["saved_keys"][d.name] = safetensors_keys(d)
        else:
            sb = reset_dir(MODEL_DIR / "b-saved-bf16")
            fresh.to(torch.bfloat16).save_pretrained(sb)
            patch_config_file(sb / "config.json", name)
            write_preprocessor(name, sb)
            summary["saved_keys"][sb.name] = safetensors_keys(sb)
        del model, fresh

        stats: dict = {}
        ref, stats = compute_reference(
            name, images, hub, MODEL_DIR / "a-backbone" if name == "a" else None, stats
        )
        summary["stats"][name] = stats

        metadata = {
            "config": name,
            "versions": json.dumps(VERSIONS, sort_keys=True),
            "model_seed": str(MODEL_SEEDS[name]),
            "image_seed": str(IMAGE_SEED),
            "backbone_ln_seed": str(BACKBONE_LN_SEED),
            "attn_implementation": ATTN_IMPL,
            "device": "cpu",
            "dtype": "float32",
            "pixel_values_backend": "pil (BitImageProcessorPil)",
            "pixel_values_tv_backend": "torchvision (BitImageProcessor)",
            "weights_folder": f"models/{name}-hub",
            "preprocessor": json.dumps(PREPROCESSORS[name], sort_keys=True),
            "images": json.dumps({key_prefix(n): n for n in images}),
            "extra_resolutions_hw": json.dumps(EXTRA_RES[name]),
            "skip_rule_resolutions_hw": json.dumps(SKIP_RULE_RES[name]),
            "skip_rule_image": key_prefix(SKIP_RULE_IMAGE),
            "hidden_states_image": HIDDEN_STATES_IMAGE,
            "num_hidden_states": str(CONFIGS[name]["num_hidden_layers"] + 1),
            "pil_resize_pass_order": json.dumps(stats["pass_order"], sort_keys=True),
            "extra_resolution_images": json.dumps(
                [key_prefix(n) for n in images if extra_res_for(name, n)]),
        }
        if name == "a":
            metadata.update({
                "backbone_folder": "models/a-backbone",
                "backbone_out_features": json.dumps(BACKBONE_OUT_FEATURES),
                "backbone_layernorm": "checkpoint top-level layernorm.* (the backbone's own, != encoder.layernorm.*)",
                "model_backbone_folder": "models/a-hub",
                "model_backbone_out_features": json.dumps(MODEL_BACKBONE_OUT_FEATURES),
                "model_backbone_layernorm": "the PixioModel's final layernorm.* (spec §5 recommendation; "
                                            "transformers itself leaves it MISSING -> weight 1, bias 0)",
            })
        save_file_deterministic(ref, REF_DIR / f"{name}.safetensors", metadata=metadata)

        # verification
        for folder in sorted(MODEL_DIR.glob(f"{name}-*")):
            if folder.name == "a-backbone":
                continue
            summary["verify"][folder.name] = verify_folder(name, folder, ref, images)
        # native-dtype runs (dtype="auto" = the checkpoint dtype, 5.24's default): tolerance hints
        for folder in (MODEL_DIR / "a-hub-f16-sharded", MODEL_DIR / "a-hub-bf16", MODEL_DIR / "b-saved-bf16"):
            if not folder.name.startswith(name + "-"):
                continue
            m = PixioModel.from_pretrained(folder, config=load_config(folder), dtype="auto",
                                           attn_implementation=ATTN_IMPL).eval()
            worst = 0.0
            with torch.inference_mode():
                for img_name in images:
                    pre = key_prefix(img_name)
                    o = m(pixel_values=ref[f"{pre}.pixel_values"].to(m.dtype))
                    worst = max(worst, (o.last_hidden_state.float() - ref[f"{pre}.last_hidden_state"]).abs().max().item())
            summary["native"][folder.name] = (str(m.dtype).replace("torch.", ""), worst)
        if name == "a":
            worst = 0.0
            with torch.inference_mode():
                for img_name in images:
                    pre = key_prefix(img_name)
                    fm = bb(pixel_values=ref[f"{pre}.pixel_values"]).feature_maps  # in-memory, pre-save
                    for st, t in zip(BACKBONE_OUT_FEATURES, fm):
                        worst = max(worst, (t - ref[f"{pre}.backbone.{st}"]).abs().max().item())
            summary["verify"]["a-backbone (in-memory pre-save vs reference)"] = worst

    # ---- report
    print(json.dumps(summary["versions"], indent=1))
    for name, st in summary["stats"].items():
        print(f"[{name}] stats: {json.dumps(st)}")
    for k, v in summary["native"].items():
        print(f"native dtype {k}: {v}")
    for k, v in summary["verify"].items():
        print(f"verify {k:45s} max|diff| = {v:.3g}")
    for d, keys in summary["saved_keys"].items():
        print(f"{d} keys ({len(keys)}): {keys[:6]} ...")
    write_readme(summary, images)
    total = dir_size(OUT)
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            print(f"{p.stat().st_size:>10d}  {p.relative_to(OUT)}")
    print(f"total {total} bytes")
    print(f"a-backbone round trip: {summary['stats'].get('a_backbone_roundtrip_mismatched')} "
          f"swapped={summary['stats'].get('a_backbone_roundtrip_ln_swapped')}")
    assert all(v == 0.0 for v in summary["verify"].values()), "reloaded folders do not reproduce the reference"


if __name__ == "__main__":
    main()
