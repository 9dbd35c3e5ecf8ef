"""SSD anchors exactly as TF's `create_ssd_anchors` + `MultipleGridAnchorGenerator` tile them.

Anchors are normalized (ymin, xmin, ymax, xmax), ordered by feature map, then row, column and
box of a location; computed in float32 with TF's order of operations so they match it bit for
bit. The base size is [1, 1] scaled by min(H, W) / (H, W): square anchors on a non-square input
stay square in pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SSDAnchors:
    """The configs' `ssd_anchor_generator` (interpolated_scale_aspect_ratio 1.0 and
    reduce_boxes_in_lowest_layer: the first map has 3 boxes (0.1, 1), (s, 2), (s, 0.5))."""

    num_layers: int = 6
    min_scale: float = 0.2
    max_scale: float = 0.95
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 0.3333)

    def box_specs(self) -> list[list[tuple[float, float]]]:
        """(scale, aspect ratio) of each box of a location, per feature map."""
        n = self.num_layers
        scales = [self.min_scale + (self.max_scale - self.min_scale) * i / (n - 1)
                  for i in range(n)] + [1.0]  # fmt: skip
        specs = [[(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]]
        for scale, following in zip(scales[1:-1], scales[2:], strict=True):
            boxes = [(scale, ratio) for ratio in self.aspect_ratios]
            specs.append([*boxes, (math.sqrt(scale * following), 1.0)])
        return specs

    def per_location(self) -> list[int]:
        return [len(boxes) for boxes in self.box_specs()]

    def generate(self, feature_shapes: list[tuple[int, int]], image_size: tuple[int, int]
                 ) -> torch.Tensor:  # fmt: skip
        """[A, 4] anchors for feature maps of these (height, width) on an image of this size."""
        if len(feature_shapes) != self.num_layers:
            raise ValueError(f"{len(feature_shapes)} feature maps, the anchors need "
                             f"{self.num_layers}")  # fmt: skip
        f32 = torch.float32
        height, width = (torch.tensor(float(s), dtype=f32) for s in image_size)
        shortest = torch.minimum(height, width)
        base = (shortest / height, shortest / width)
        out = []
        for (rows, cols), boxes in zip(feature_shapes, self.box_specs(), strict=True):
            scales = torch.tensor([s for s, _ in boxes], dtype=f32)
            ratio_sqrts = torch.sqrt(torch.tensor([r for _, r in boxes], dtype=f32))
            heights = scales / ratio_sqrts * base[0]
            widths = scales * ratio_sqrts * base[1]
            stride_y = 1.0 / torch.tensor(float(rows), dtype=f32)
            stride_x = 1.0 / torch.tensor(float(cols), dtype=f32)
            y = torch.arange(rows, dtype=f32) * stride_y + 0.5 * stride_y
            x = torch.arange(cols, dtype=f32) * stride_x + 0.5 * stride_x
            shape = (rows, cols, len(boxes))
            centers = torch.stack([y[:, None, None].expand(shape), x[None, :, None].expand(shape)],
                                  dim=3).reshape(-1, 2)  # fmt: skip
            sizes = torch.stack([heights.expand(shape), widths.expand(shape)], dim=3).reshape(-1, 2)
            out.append(torch.cat([centers - 0.5 * sizes, centers + 0.5 * sizes], dim=1))
        return torch.cat(out)
