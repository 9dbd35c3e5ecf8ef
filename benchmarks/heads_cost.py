"""Write docs/heads_cost.md: params and MACs of the four head models at their published input
sizes, beside every published figure, and where each published figure's convention differs.

    python benchmarks/heads_cost.py [--no-write]

Our figures are counted here (on the meta device: no compute); TF's come from
tools/fixtures/detection_segmentation_flops.py (scratch venv), copied below with their source.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import _common  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
import torch

from mobilenetv3 import count_macs, count_params, create_model
from mobilenetv3.atomic import atomic_output

DOC = Path(__file__).resolve().parents[1] / "docs" / "heads_cost.md"
PAPER = "paper (arXiv 1905.02244v5)"
# Paper table 6 (SSDLite, COCO test, 320x320, "V3†" = reduced tail): params M, MAdds B.
PAPER_SSD = {"ssdlite_v3_large": (3.22, 0.51), "ssdlite_v3_small": (1.77, 0.16)}
# torchvision ssdlite320_mobilenet_v3_large / lraspp_mobilenet_v3_large: num_params and GFLOPS
# (`_ops`) of their weights' meta (torchvision 0.28; older docs round the latter to 2.1).
TORCHVISION_SSD = (3_440_060, 0.583)
TORCHVISION_SEG = (3_221_538, 2.086)
# Measured by hand (torchvision is no dependency): count_macs(lraspp_mobilenet_v3_large(
# weights=None, weights_backbone=None), 520) with torchvision 0.28 (its released graph).
TORCHVISION_SEG_MACS = 2_086_219_688
# Paper tables 7 (params, rows 8 and 11) and 8 (MAdds B: (output stride, full/half res)).
PAPER_SEG = {
    "lraspp_v3_large": (1.51, {(16, "f"): 9.74, (32, "f"): 7.74, (16, "h"): 2.48, (32, "h"): 1.98}),
    "lraspp_v3_small": (0.47, {(16, "f"): 2.90, (32, "f"): 2.06, (16, "h"): 0.74, (32, "h"): 0.53}),
}
# DeepLab model_zoo.md, mobilenetv3_{large,small}_cityscapes_trainfine: Multiply-Adds, eval OS 32.
ZOO = {"lraspp_v3_large": 15.95, "lraspp_v3_small": 4.63}
# tools/fixtures/detection_segmentation_flops.py (TF 2.15 tf.profiler float ops; 1025x2049, OS 32,
# pooling crop 769): the model, then what each candidate changes of it.
TF_FLOAT_OPS = {"lraspp_v3_large": 15_409_846_875, "lraspp_v3_small": 4_047_707_089}
GAP_CANDIDATES = {  # candidate: (Large, Small) float ops added
    "input 1024x2048 instead of 1025x2049": (-279_378_497, -81_233_153),
    "output stride 16 (last block dilated)": (4_078_304_832, 1_737_851_376),
    "global image pooling (crop 1025x2049)": (-10_275_264, -6_169_152),
    "last 1x1 conv at full width (960 / 576)": (443_142_720, 226_330_560),
    "BatchNorm unfused (2 ops per element)": (354_035_136, 110_280_384),
    "eval graph: input (2/255)x-1 and mean padding, argmax": (63_006_750, 63_006_750),
    "eval graph: softmax of the upsampled logits": (199_521_375, 199_521_375),
}
# Half of the float ops of the eval graph (model + preprocessing + argmax) that reproduces the
# paper's table 8 cell (half res: 513x1025 with pooling crop 385; OS 16: pooling stride 8, 10).
TF_PAPER_CONVENTION = {
    "lraspp_v3_large": {(16, "f"): 9.7386, (32, "f"): 7.7364, (16, "h"): 2.4777,
                        (32, "h"): 1.9701},  # fmt: skip
    "lraspp_v3_small": {(16, "f"): 2.9021, (32, "f"): 2.0554, (16, "h"): 0.7386,
                        (32, "h"): 0.5240},  # fmt: skip
}
SIZES = {"f": ((1025, 2049), (769, 769)), "h": ((513, 1025), (385, 385))}


def cost(name: str, size: tuple[int, int], pooling_crop: tuple[int, int] | None = None
         ) -> tuple[int, int]:  # fmt: skip
    """(params, MACs) of a head model at depth 1.0, built without weights."""
    with torch.device("meta"):
        model = create_model(name)
    if pooling_crop:
        model.pooling_crop = pooling_crop
    return count_params(model), count_macs(model, size)


def _no_batch_norm(name: str) -> int:
    with torch.device("meta"):
        model = create_model(name)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    return count_params(model) - sum(p.numel() for m in norms for p in m.parameters())


def torchvision_ssdlite() -> tuple[int, int]:
    """Our ssdlite_v3_large with torchvision's one difference of graph: 6 anchors (not 3) on
    the first map, i.e. 3 more boxes x (91 class logits + 4 box codes) in its two predictors."""
    with torch.device("meta"):
        model = create_model("ssdlite_v3_large")
    params, macs = count_params(model), count_macs(model, 320)
    channels, outputs = model.backbone.feature_info[0]["num_chs"], 3 * (model.num_classes + 1 + 4)
    return params + (channels + 1) * outputs, macs + channels * outputs * (320 // 16) ** 2


def ssdlite_section() -> list[str]:
    tv_params, tv_macs = torchvision_ssdlite()
    lines = ["## SSDLite (COCO, 90 classes + background, 320x320)", "",
             f"| model | params | params without BatchNorm | MACs | {PAPER} table 6 |",
             "| --- | ---: | ---: | ---: | --- |"]  # fmt: skip
    for name, (params_m, madds_b) in PAPER_SSD.items():
        params, macs = cost(name, (320, 320))
        lines.append(f"| {name}_1.0 | {params:,} | {_no_batch_norm(name):,} | {macs:,} | "
                     f"{params_m} M, {madds_b} B |")  # fmt: skip
    lines += ["", "- Table 6 counts parameters without BatchNorm's gamma/beta (3,215,311 -> "
              "3.22 M, 1,765,279 -> 1.77 M) and conv MACs as here (0.51 B, 0.16 B); with them "
              "(TF's trainable variables) the counts would read 3.25 M and 1.79 M.",
              "- The detection zoo (`tf1_detection_zoo.md`) gives mAP and Pixel 1 latency only "
              "(22.6 mAP / 119 ms, 15.4 / 43 ms), no cost.",
              f"- torchvision's `ssdlite320_mobilenet_v3_large` ({TORCHVISION_SSD[0]:,} params, "
              f"{TORCHVISION_SSD[1]} GFLOPS, which are MACs) is this graph (reduced tail, C4 at "
              "layer_14's expansion, the same extra layers and depthwise predictors, 91 "
              "logits) with 6 anchors instead of 3 on the first map (`DefaultBoxGenerator` "
              f"[[2, 3]] x 6): that gives {tv_params:,} params and {tv_macs:,} MACs, what "
              "`count_macs` also counts on torchvision's own model. Its anchors, box coder and "
              "post-processing differ too (cost-free). No Small model."]  # fmt: skip
    return lines


def lraspp_section() -> list[str]:
    lines = ["## LR-ASPP (Cityscapes, 19 classes, output stride 32)", "",
             "| model | params | MACs 1025x2049 | MACs 1024x2048 | MACs 513x1025 | "
             f"{PAPER} params (table 7) | DeepLab zoo Multiply-Adds |",
             "| --- | ---: | ---: | ---: | ---: | --- | --- |"]  # fmt: skip
    for name, (params_m, _) in PAPER_SEG.items():
        params, full = cost(name, *SIZES["f"])
        paper_size = cost(name, (1024, 2048))[1]
        half = cost(name, *SIZES["h"])[1]
        lines.append(f"| {name}_1.0 | {params:,} | {full:,} | {paper_size:,} | {half:,} | "
                     f"{params_m} M | {ZOO[name]} B |")  # fmt: skip
    lines += ["", "1025x2049 is DeepLab's Cityscapes eval crop (`--eval_crop_size=1025,2049`, "
              "g3doc/cityscapes.md), "
              "pooling crop 769x769 (the zoo's flags); 513x1025 is half of it with crop 385x385. "
              "tf.profiler counts the same conv MACs on TF's graph (`conv_macs`, "
              "tools/fixtures/detection_segmentation_flops.py), and TF's trainable variables are "
              "our params.", "",
              f"torchvision's `lraspp_mobilenet_v3_large` ({TORCHVISION_SEG[0]:,} params, "
              f"{TORCHVISION_SEG[1]} GFLOPS, MACs: `count_macs` on its model at its 520x520 gives "
              f"{TORCHVISION_SEG_MACS:,}) is another network: the full-width tail (960 channels, "
              "no halving), the last block dilated (output stride 16), the low-level input the "
              "stride-8 block's output (40 channels, not `layer_7/depthwise_output`'s 120), a "
              "global pooling branch with sigmoid (not a 769-crop window with stride 4, 5 and a "
              "hard sigmoid), 21 VOC classes, trained at 520x520 on COCO.", "",
              f"### {PAPER} table 8 \"MAdds\"", "",
              "Not conv MACs: half of tf.profiler's float ops of DeepLab's eval graph (the model, "
              "its input normalization and padding, the argmax of the upsampled logits) at the "
              "eval crop, with the pooling stride doubled at OS 16. That reproduces 6 of the 8 "
              "cells to the printed digit; the two half-resolution OS 32 cells come out 0.01 B "
              "under.", "",
              "| model | cell | published | half of TF's eval-graph float ops |",
              "| --- | --- | ---: | ---: |"]  # fmt: skip
    for name, (_, cells) in PAPER_SEG.items():
        for (stride, res), published in cells.items():
            reproduced = TF_PAPER_CONVENTION[name][(stride, res)]
            lines.append(f"| {name}_1.0 | OS {stride}, {'full' if res == 'f' else 'half'} | "
                         f"{published:.2f} B | {reproduced:.4f} B |")  # fmt: skip
    return lines + ["", *gap_section()]


def gap_section() -> list[str]:
    large, small = (ZOO[n] * 1e9 - TF_FLOAT_OPS[n] for n in ZOO)
    lines = ["### The gap to DeepLab's zoo figures", "",
             "The zoo's MobileNetV3 Multiply-Adds are float-op sized (2 per MAC: 15.95 B is 2.06 "
             "x table 8's 7.74 B, while the zoo's MobileNetV2 row, 21.27 B, is table 7's 21.29 B "
             "in the paper's own convention): tf.profiler gives "
             f"{TF_FLOAT_OPS['lraspp_v3_large']:,} and {TF_FLOAT_OPS['lraspp_v3_small']:,} float "
             f"ops for the models at 1025x2049, {large:,.0f} and {small:,.0f} under 15.95 B and "
             "4.63 B. What each candidate adds (TF float ops, Large / Small):", "",
             "| candidate | Large | Small |", "| --- | ---: | ---: |"]  # fmt: skip
    lines += [f"| {k} | {a:+,} | {b:+,} |" for k, a, b in
              ((k, *v) for k, v in GAP_CANDIDATES.items())]  # fmt: skip
    eval_graph = sum(v[0] for k, v in GAP_CANDIDATES.items() if k.startswith("eval graph"))
    return lines + ["", "The gap is about the same for both models while every architectural "
                    "candidate scales with the backbone, so none of them fits both; the input "
                    "size, output stride 16 and the pooling size are ruled out by sign or size. "
                    f"DeepLab's whole eval graph (preprocessing, argmax, softmax: {eval_graph:,} "
                    f"float ops, the same for both) leaves {large - eval_graph:,.0f} (Large) and "
                    f"{small - eval_graph:,.0f} (Small) unexplained."]  # fmt: skip


def render() -> str:
    header = ["# Cost of the detection and segmentation heads", "",
              "Generated by `python benchmarks/heads_cost.py`. Convention (`count_macs`, "
              "`count_params`): MACs are the multiply-accumulates of every conv (depthwise, SE and "
              "every head conv included) for one image; BatchNorm, activations, pooling, resizing, "
              "NMS are free. Params are the trainable ones: weights, biases, BatchNorm gamma and "
              "beta (TF's trainable variables). Depth multiplier 1.0.", ""]  # fmt: skip
    return "\n".join([*header, *ssdlite_section(), "", *lraspp_section()]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-write", action="store_true", help="print instead of writing")
    args = parser.parse_args()
    text = render()
    if args.no_write:
        print(text)
        return
    with atomic_output(DOC) as tmp:
        tmp.write_text(text)
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
