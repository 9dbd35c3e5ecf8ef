"""ExecuTorch program (.pte): the deployment graph lowered to the XNNPACK delegate.

The deployment graph (`core.deploy`: BatchNorm folded, static TF padding, native hard-swish,
the SE gate) is traced with `torch.export`, lowered with `to_edge_transform_and_lower` and
the `XnnpackPartitioner`, and serialized; the file runs in ExecuTorch's runtime
(`runtime.engines`, kind `executorch`) without this package.

Every op is delegated at a fixed batch. The one that was not is the final global mean:
XNNPACK takes a mean over H and W only with `keepdim=True`, and the model's head pools to
[N, C], so that mean ran in ExecuTorch's portable kernels between two delegate calls.
`core.deploy.KeepdimPool` pools to [N, C, 1, 1] and flattens, the same numbers in one delegate call.
With a free batch (`dynamic_batch`) the flatten before the classifier (`view_copy` to a
symbolic size, and the `sym_size` it reads) stays outside: XNNPACK's reshape takes static
sizes only. It moves N x C floats, so it costs microseconds, not a kernel. Ops left outside
the delegate are named by `undelegated_ops`, and the exporter warns with them.

A free batch is bounded: ExecuTorch plans memory for the largest batch (`MAX_BATCH`); the
runner splits larger batches.

A .pte has no metadata of its own, so what the file is rides in constant methods, readable
without running the model: `PTE_SOFTMAX_MARK` where it ends in a softmax, and `PTE_NOTE` (a
JSON string: variant, precision, preprocessing) where a writer gives a note (int8 files).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mobilenetv3.atomic import atomic_output
from mobilenetv3.core.deploy import KeepdimPool, deploy_graph
from mobilenetv3.export.check import ExportResult, engine_difference, example_input
from mobilenetv3.runtime.engines import PTE_NOTE, PTE_SOFTMAX_MARK, require_extra

MAX_BATCH = 32
# what the lowered graph calls besides the delegate: plumbing, not computation
_PLUMBING = ("executorch_call_delegate", "getitem")


def pte_graph(model: nn.Module, image_size: tuple[int, int], softmax: bool = False) -> nn.Module:
    """The deployment graph with the delegate-friendly pool (and a softmax where asked)."""
    graph = KeepdimPool(deploy_graph(model, image_size)).eval()
    return nn.Sequential(graph, nn.Softmax(-1)) if softmax else graph


def trace(module: nn.Module, image_size: tuple[int, int],
          dynamic_batch: bool) -> torch.export.ExportedProgram:  # fmt: skip
    """`torch.export` with a batch of 2 (a 1 would be specialized) where the batch is free."""
    x = example_input(image_size, 2 if dynamic_batch else 1)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    dynamic = ({0: batch},) if dynamic_batch else None
    with torch.no_grad():
        return torch.export.export(module, (x,), dynamic_shapes=dynamic)


def lower(program: torch.export.ExportedProgram, softmax: bool = False,
          note: dict[str, Any] | None = None) -> Any:  # fmt: skip
    """XNNPACK-delegated ExecuTorch program (an `ExecutorchProgramManager`), marked as ending
    in a softmax where it does and carrying `note`; warns naming every op left to ExecuTorch's
    portable kernels."""
    require_extra("executorch")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    marks = {PTE_SOFTMAX_MARK: 1} if softmax else {}
    marks |= {PTE_NOTE: json.dumps(note)} if note else {}
    edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()],
                                       constant_methods=marks or None)  # fmt: skip
    left = undelegated_ops(edge.exported_program().graph_module)
    if left:
        warnings.warn(f"ExecuTorch: not delegated to XNNPACK, run in portable kernels: "
                      f"{', '.join(left)}", stacklevel=2)  # fmt: skip
    return edge.to_executorch()


def undelegated_ops(graph_module: torch.fx.GraphModule) -> list[str]:
    """The ops of a lowered graph that run outside the delegate (e.g. `aten.mean.dim`)."""
    calls = [getattr(node.target, "__name__", str(node.target))
             for node in graph_module.graph.nodes if node.op == "call_function"]  # fmt: skip
    return [call for call in calls if not any(p in call for p in _PLUMBING)]


def write_pte(program: torch.export.ExportedProgram, path: str | os.PathLike,
              verify: Callable[[Path], float] | None = None, softmax: bool = False,
              note: dict[str, Any] | None = None) -> Any:  # fmt: skip
    """Lower `program` and write it atomically; `verify` runs on the written file before it
    takes the name (an exception leaves nothing behind) and its result is returned."""
    buffer = lower(program, softmax, note).buffer
    with atomic_output(path) as tmp:
        tmp.write_bytes(buffer)
        return verify(tmp) if verify else None


def export_pte(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    image_size: tuple[int, int] = (224, 224),
    dynamic_batch: bool = False,
    softmax: bool = False,
    check: bool = True,
) -> ExportResult:
    """Write `model` as an XNNPACK-delegated .pte, then run it in ExecuTorch against PyTorch."""
    image_size = tuple(image_size)
    program = trace(pte_graph(model, image_size, softmax), image_size, dynamic_batch)
    batch = 3 if dynamic_batch else 1

    def verify(tmp: Path) -> float:
        return engine_difference("executorch", tmp, model, image_size, softmax, batch)

    diff = write_pte(program, path, verify if check else None, softmax)
    return ExportResult(Path(path), "pte", diff)
