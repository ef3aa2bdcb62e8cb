#!/usr/bin/env python3
"""Time the Hugging Face transformers PixioModel forward pass on CPU (the baseline for the candle port).

    python benches/transformers_forward.py --model-dir DIR --size 224 --batch 1 --iters 5 --warmup 1
    python benches/transformers_forward.py --random-config vith16 --size 256 --batch 8 --iters 3

Input is torch.randn(B, 3, S, S) (speed does not depend on the values), fp32, torch.inference_mode().
Prints exactly one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

# Sizes of the released checkpoints (spec §1); everything else is the PixioConfig default.
RANDOM_CONFIGS = {
    "vitb16": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12),
    "vitl16": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16),
    "vith16": dict(),  # PixioConfig() defaults are ViT-H/16
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model-dir", help="folder with config.json + safetensors weights")
    src.add_argument("--random-config", choices=sorted(RANDOM_CONFIGS), help="random weights, released size")
    ap.add_argument("--size", type=int, default=256, help="input height = width in pixels")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--iters", type=int, default=5, help="timed iterations")
    ap.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"], help="attention implementation")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch
    import transformers
    from transformers import PixioConfig, PixioModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    if args.model_dir:
        with open(os.path.join(args.model_dir, "config.json")) as f:
            cfg = json.load(f)
        # transformers 5.x's strict PixioConfig rejects a float mlp_ratio such as 4.0
        if isinstance(cfg.get("mlp_ratio"), float) and cfg["mlp_ratio"].is_integer():
            cfg["mlp_ratio"] = int(cfg["mlp_ratio"])
        model = PixioModel.from_pretrained(
            args.model_dir, config=PixioConfig.from_dict(cfg), dtype=torch.float32, attn_implementation=args.attn
        )
        name = os.path.basename(os.path.normpath(args.model_dir))
    else:
        config = PixioConfig(**RANDOM_CONFIGS[args.random_config])
        config._attn_implementation = args.attn
        model = PixioModel(config)
        name = f"random-{args.random_config}"
    model.eval()

    x = torch.randn(args.batch, 3, args.size, args.size, dtype=torch.float32)
    walls, cpus = [], []
    with torch.inference_mode():
        for i in range(args.warmup + args.iters):
            w0, c0 = time.perf_counter(), time.process_time()
            out = model(pixel_values=x)
            _ = out.last_hidden_state.sum().item()  # make sure the work is done
            w1, c1 = time.perf_counter(), time.process_time()
            if i >= args.warmup:
                walls.append(w1 - w0)
                cpus.append(c1 - c0)

    wall_med = statistics.median(walls)
    result = {
        "impl": "transformers",
        "model": name,
        "params": sum(p.numel() for p in model.parameters()),
        "size": args.size,
        "batch": args.batch,
        "iters": args.iters,
        "warmup": args.warmup,
        "threads": args.threads,
        "attn": model.config._attn_implementation,
        "dtype": "float32",
        "tokens": int(out.last_hidden_state.shape[1]),
        "wall_s_min": round(min(walls), 4),
        "wall_s_median": round(wall_med, 4),
        "cpu_s_per_image_median": round(statistics.median(cpus) / args.batch, 4),
        "per_image_s_median": round(wall_med / args.batch, 4),
        "wall_s_all": [round(w, 4) for w in walls],
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "cpu": platform.processor() or platform.machine(),
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
