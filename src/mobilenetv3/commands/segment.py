"""`mobilenetv3 segment IMAGES (--weights W | --model NAME) --output DIR`."""

from __future__ import annotations

import argparse
from pathlib import Path

from mobilenetv3.commands._common import add_model_arguments, load_task_model, writable_path
from mobilenetv3.commands.predict import expand_images

HELP = "segment images with LR-ASPP: a class-id mask PNG and a colour overlay PNG per image"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", help="image files, folders or glob patterns")
    add_model_arguments(parser, weights_required=False)
    parser.add_argument("--output", type=writable_path, required=True,
                        help="folder for the PNGs")  # fmt: skip


def segment(model, path: Path):  # -> (PIL image, [H, W] uint8 class ids)
    """Class ids at the image's own size, run as DeepLab does: (2 / 255) x - 1, logits
    upsampled to the input (align_corners), argmax."""
    import numpy as np
    import torch

    from mobilenetv3.data.preprocess import load_image, to_model_range

    image = load_image(path)
    with torch.inference_mode():
        logits = model(to_model_range(np.asarray(image))[None])
    return image, logits[0].argmax(0).to(torch.uint8).numpy()


def save(image, mask, folder: Path, stem: str) -> None:
    """`<stem>_mask.png` (class ids as grey levels) and `<stem>_overlay.png` (half-blended)."""
    import numpy as np
    from PIL import Image

    from mobilenetv3.atomic import atomic_output

    palette = np.random.default_rng(0).integers(0, 256, (256, 3), dtype=np.uint8)
    overlay = Image.blend(image, Image.fromarray(palette[mask]), 0.5)
    for name, picture in ((f"{stem}_mask.png", Image.fromarray(mask)),
                          (f"{stem}_overlay.png", overlay)):  # fmt: skip
        with atomic_output(folder / name) as tmp:
            picture.save(tmp, format="PNG")


def run(args: argparse.Namespace) -> int:
    from mobilenetv3.heads import LRASPP

    model = load_task_model(args, LRASPP, "segmentation", "lraspp_v3_large")
    for path in expand_images(args.images):
        image, mask = segment(model, path)
        save(image, mask, Path(args.output), path.stem)
        print(f"{path}: {Path(args.output) / (path.stem + '_mask.png')}")
    return 0
