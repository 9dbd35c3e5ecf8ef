"""The README's two pictures of "Detection and segmentation", redrawn into docs/.

No trained detection or segmentation weights are at hand, so both models have seeded random
weights (`core.init.randomize`, seed 0): the pictures show what `detect --draw` and
`segment --output` write (the same functions draw them), not what a trained model finds. The
photo is a ../shared photo scaled to 384 px wide; the PNGs are saved with 256 colours to stay
small.

Run: `PYTHONPATH=src .venv/bin/python tools/readme_pictures.py` (~10 s).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from shared_data import shared_dir

from mobilenetv3 import create_model
from mobilenetv3.commands.detect import detect, draw
from mobilenetv3.commands.segment import save, segment
from mobilenetv3.core.init import randomize

DOCS = Path(__file__).resolve().parents[1] / "docs"
PHOTO = "images/photos/motorcycle_left.png"
WIDTH = 384
BOXES = 8  # the highest-scoring boxes drawn


def scaled_photo(folder: Path) -> Path:
    shared = shared_dir()
    if shared is None:
        sys.exit("the ../shared reference folder is needed (its photo is drawn on)")
    image = Image.open(shared / PHOTO).convert("RGB")
    image = image.resize((WIDTH, round(image.height * WIDTH / image.width)), Image.LANCZOS)
    path = folder / "photo.png"
    image.save(path)
    return path


def publish(picture: Path, name: str) -> None:
    """`picture` as docs/<name> with a 256-colour palette (a photo's PNG is otherwise ~300 KB)."""
    target = DOCS / name
    Image.open(picture).convert("RGB").quantize(256).save(target, optimize=True)
    print(f"{target}: {target.stat().st_size // 1024} KB")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photo = scaled_photo(folder)
        detector = randomize(create_model("ssdlite_v3_large"), seed=0)
        found = detect(detector, photo, 0.0)[:BOXES]
        publish(draw(photo, found, folder / "drawn"), "detect_random_weights.png")
        segmenter = randomize(create_model("lraspp_v3_large"), seed=0)
        image, mask = segment(segmenter, photo)
        save(image, mask, folder, "photo")
        publish(folder / "photo_overlay.png", "segment_random_weights.png")


if __name__ == "__main__":
    main()
