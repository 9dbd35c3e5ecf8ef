"""The int8 reference path against three LiteRT engines on the 1000 shared photos.

For each official uint8 file: top-1 accuracy of LiteRT XNNPACK (default resolver), LiteRT
BUILTIN (optimized kernels, no delegate), LiteRT BUILTIN_REF (reference kernels) and our
`QuantizedTFLiteModule`, and how often our output codes / top-1 equal each engine's. All
engines get the same uint8 input codes (87.5% central crop as tf.image.central_crop, Pillow
BILINEAR to 224x224, x = p / 127.5 - 1 quantized with the file's scale and zero point).

    .venv/bin/python benchmarks/int8_reference.py [--limit N]

Writes benchmarks/results/int8_reference.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from _common import shared_dir
from PIL import Image
from tqdm import tqdm

from mobilenetv3.tflite.interpreter import QuantizedTFLiteModule

FILES = ["v3-small_224_1.0_uint8.tflite", "v3-large-minimalistic_224_1.0_uint8.tflite"]
RESULTS = Path(__file__).resolve().parent / "results" / "int8_reference.json"


def central_crop_resize(path: Path, size: int = 224, fraction: float = 0.875) -> np.ndarray:
    """tf.image.central_crop (static shape) then Pillow BILINEAR, uint8 RGB HWC."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    top, left = int((h - h * fraction) / 2), int((w - w * fraction) / 2)
    crop = image.crop((left, top, w - left, h - top))
    return np.asarray(crop.resize((size, size), Image.BILINEAR), dtype=np.uint8)


def run_litert(
    path: Path, codes: np.ndarray, resolver: object, label: str
) -> tuple[np.ndarray, float]:
    """Output codes of one LiteRT engine, image by image (the files fix batch 1)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), experimental_op_resolver_type=resolver)
    it.allocate_tensors()
    inp = it.get_input_details()[0]["index"]
    out = it.get_output_details()[0]["index"]
    outputs = []
    start = time.perf_counter()
    for i in tqdm(range(len(codes)), desc=label, leave=False):
        it.set_tensor(inp, codes[i : i + 1])
        it.invoke()
        outputs.append(it.get_tensor(out)[0].copy())
    return np.stack(outputs), (time.perf_counter() - start) / len(codes)


def run_ours(
    module: QuantizedTFLiteModule, codes: torch.Tensor, batch: int
) -> tuple[np.ndarray, float]:
    module.run(codes[:2])  # warm-up: oneDNN builds its kernels on the first call per shape
    outputs = []
    start = time.perf_counter()
    for s in tqdm(range(0, len(codes), batch), desc="ours (int8 reference)", leave=False):
        outputs.append(module.run(codes[s : s + batch])[module.output_name].numpy())
    return np.concatenate(outputs), (time.perf_counter() - start) / len(codes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=0, help="use only the first N photos")
    parser.add_argument("--batch", type=int, default=25)
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads (1 is fastest on a busy machine)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from ai_edge_litert.interpreter import OpResolverType

    shared = shared_dir()
    if shared is None:
        raise SystemExit("reference data (../shared) not found; set MOBILENETV3_SHARED")
    files = sorted((shared / "images" / "imagenet-samples").glob("*.JPEG"))
    labels = np.arange(len(files)) + 1  # sorted synsets = class index; slim index = + 1
    if args.limit:
        files, labels = files[: args.limit], labels[: args.limit]
    pixels = np.stack([central_crop_resize(f) for f in tqdm(files, desc="photos", leave=False)])
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).to(torch.float32) / 127.5 - 1.0

    engines = {
        "litert_xnnpack": OpResolverType.AUTO,
        "litert_builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        "litert_builtin_ref": OpResolverType.BUILTIN_REF,
    }
    report: dict = {
        "photos": len(files),
        "preprocess": "tf.image.central_crop 0.875 + Pillow BILINEAR 224; x=p/127.5-1; quantized",
        "torch_threads": torch.get_num_threads(),
        "models": {},
    }
    for filename in FILES:
        path = shared / "pretrained" / filename
        module = QuantizedTFLiteModule.from_file(path)
        codes = module.quantize_input(x)
        outputs, seconds = {}, {}
        outputs["ours"], seconds["ours"] = run_ours(module, codes, args.batch)
        for name, resolver in engines.items():
            outputs[name], seconds[name] = run_litert(path, codes.numpy(), resolver, name)
        entry: dict = {"top1": {}, "ms_per_image": {}, "ours_vs": {}}
        for name, out in outputs.items():
            entry["top1"][name] = round(100 * float((out.argmax(1) == labels).mean()), 2)
            entry["ms_per_image"][name] = round(1000 * seconds[name], 2)
        ours = outputs["ours"]
        for name in engines:
            ref = outputs[name]
            entry["ours_vs"][name] = {
                "output_codes_equal_pct": round(100 * float((ours == ref).mean()), 4),
                "images_all_codes_equal_pct": round(100 * float((ours == ref).all(1).mean()), 2),
                "top1_agreement_pct": round(
                    100 * float((ours.argmax(1) == ref.argmax(1)).mean()), 2
                ),
                "max_code_diff": int(np.abs(ours.astype(int) - ref.astype(int)).max()),
            }
        report["models"][filename] = entry

    header = (
        f"{'model':44} {'engine':20} {'top-1 %':>8} {'ms/img':>8} "
        f"{'codes = ours %':>15} {'top-1 = ours %':>15}"
    )
    print(header)
    print("-" * len(header))
    for filename, entry in report["models"].items():
        for name in ["ours", *engines]:
            agree = entry["ours_vs"].get(name)
            codes_eq = f"{agree['output_codes_equal_pct']:.4f}" if agree else "-"
            top_eq = f"{agree['top1_agreement_pct']:.2f}" if agree else "-"
            print(
                f"{filename:44} {name:20} {entry['top1'][name]:8.2f} "
                f"{entry['ms_per_image'][name]:8.2f} {codes_eq:>15} {top_eq:>15}"
            )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
