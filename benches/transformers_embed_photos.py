#!/usr/bin/env python3
"""Time Hugging Face transformers embedding real photos on the CPU: the reference an index is measured
against. Per batch: decode with Pillow, the model's own image processor, one forward pass, the pooler.

    python benches/transformers_embed_photos.py --model-dir DIR --batch 8 --threads 2 FILE...

Files that Pillow cannot open are skipped (and counted). One warm-up batch first (not timed, its
images are embedded again in the timed run). Prints exactly one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True, help="folder with config.json, preprocessor_config.json, weights")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()

    import torch
    import transformers
    from PIL import Image
    from transformers import AutoImageProcessor, PixioConfig, PixioModel

    torch.set_num_threads(args.threads)
    with open(os.path.join(args.model_dir, "config.json")) as f:
        cfg = json.load(f)
    # transformers 5.x's strict PixioConfig rejects a float mlp_ratio such as 4.0
    if isinstance(cfg.get("mlp_ratio"), float) and cfg["mlp_ratio"].is_integer():
        cfg["mlp_ratio"] = int(cfg["mlp_ratio"])
    model = PixioModel.from_pretrained(args.model_dir, config=PixioConfig.from_dict(cfg), dtype=torch.float32)
    model.eval()
    processor = AutoImageProcessor.from_pretrained(args.model_dir)

    def embed(paths: list[str]) -> int:
        images = []
        for p in paths:
            try:
                with Image.open(p) as im:
                    images.append(im.convert("RGB"))
            except Exception:  # noqa: BLE001 - a file Pillow cannot read is skipped, as pixdex records it
                pass
        if not images:
            return 0
        pixel_values = processor(images=images, return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            out = model(pixel_values=pixel_values)
        _ = out.pooler_output.sum().item()
        return len(images)

    batches = [args.files[i : i + args.batch] for i in range(0, len(args.files), args.batch)]
    embed(batches[0])  # warm-up
    w0, c0 = time.perf_counter(), time.process_time()
    embedded = sum(embed(b) for b in batches)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    print(
        json.dumps(
            {
                "impl": "transformers",
                "model": os.path.basename(os.path.normpath(args.model_dir)),
                "files": len(args.files),
                "embedded": embedded,
                "batch": args.batch,
                "threads": args.threads,
                "wall_s": round(wall, 3),
                "cpu_s": round(cpu, 3),
                "images_per_s": round(embedded / wall, 3) if wall > 0 else None,
                "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()
