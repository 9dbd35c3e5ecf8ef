"""ExecuTorch (.pte, XNNPACK delegate): every variant within 1e-4 of torch, every op delegated
at a fixed batch, the runner's batches and threads, and the CLI (extra `[executorch]`)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("executorch", reason="needs the [executorch] extra: pip install .[executorch]")

from export_helpers import VARIANTS, export_every_variant, export_size  # noqa: E402

import mobilenetv3  # noqa: E402
from mobilenetv3.cli import main  # noqa: E402
from mobilenetv3.export import example_input, randomize  # noqa: E402
from mobilenetv3.export.pte import (  # noqa: E402
    export_pte,
    lower,
    pte_graph,
    trace,
    undelegated_ops,
)
from mobilenetv3.runtime.engines import make_runner  # noqa: E402
from mobilenetv3.weights.safetensors_io import save_safetensors  # noqa: E402

pytestmark = pytest.mark.executorch
SIZE = (64, 64)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a fixed batch leaves no op undelegated
        return export_every_variant(tmp_path_factory.mktemp("pte"), ".pte", export_pte)


@pytest.mark.slow
@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_matches_torch(name: str, exported: dict) -> None:
    model, path, result = exported[name]
    assert result.format == "pte" and result.max_abs_diff <= 1e-4
    x = example_input(export_size(name), 1, seed=5)
    with torch.no_grad():
        expected = model(x).numpy()
    assert expected.std() > 0.1  # random non-trivial weights: a zero output cannot pass
    out = make_runner("executorch", path, threads=1)(x.numpy())
    np.testing.assert_allclose(out, expected, atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    return randomize(mobilenetv3.create_model("v2_0.35"), seed=7)


def test_the_final_mean_is_delegated(tiny: torch.nn.Module) -> None:
    """The model's own head pools to [N, C], a mean XNNPACK does not take; the .pte graph
    pools keepdim, and nothing is left outside the delegate."""
    plain = torch.export.export(tiny.eval(), (example_input(SIZE),))
    assert any("mean" in op for op in _undelegated(plain))
    assert _undelegated(trace(pte_graph(tiny, SIZE), SIZE, dynamic_batch=False)) == []


def _undelegated(program: torch.export.ExportedProgram) -> list[str]:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    return undelegated_ops(edge.exported_program().graph_module)


def test_cli_free_batch_and_softmax(tmp_path: Path, tiny: torch.nn.Module) -> None:
    """`export --format pte --dynamic-batch`: any batch (above the planned maximum in slices);
    --softmax files say they output probabilities."""
    free, soft = tmp_path / "free.pte", tmp_path / "soft.pte"
    weights = save_safetensors(tiny, tmp_path / "tiny.safetensors")
    common = ["export", "--weights", str(weights), "--image-size", "64"]
    assert main([*common, "--format", "pte", "--dynamic-batch", "--output", str(free)]) == 0
    x = example_input(SIZE, 40, seed=2)
    runner = make_runner("executorch", free, threads=1)
    assert runner.output == "logits" and runner.max_batch < 40
    with torch.no_grad():
        expected = tiny(x)
    np.testing.assert_allclose(runner(x.numpy()), expected, atol=1e-4, rtol=0)
    assert main([*common, "--format", "pte", "--softmax", "--output", str(soft)]) == 0
    runner = make_runner("executorch", soft, threads=1)
    assert runner.output == "probabilities"
    np.testing.assert_allclose(runner(x[:1].numpy()), expected[:1].softmax(-1), atol=1e-6)


# runners of 1 and 2 threads in one process, called alternately: every call resizes the pool
ALTERNATE = ("import sys, numpy as np; from mobilenetv3.runtime.engines import make_runner; "
             "x = np.load(sys.argv[2]); "
             "one, two = (make_runner('executorch', sys.argv[1], threads=t) for t in (1, 2)); "
             "np.save(sys.argv[3], np.stack([r(x) for r in (one, two, one, two)]))")


def test_thread_counts_alternate_in_one_process(tmp_path: Path, tiny: torch.nn.Module) -> None:
    """A method loaded before ExecuTorch's pool was resized ran on the freed pool (it hung,
    segfaulted or aborted in `execute`: issue 15); the runner loads it again. In a child
    process, so that a hang or a crash fails this test instead of stopping the run."""
    path = export_pte(tiny, tmp_path / "tiny.pte", image_size=SIZE).path
    x = example_input(SIZE, 1, seed=3)
    np.save(tmp_path / "x.npy", x.numpy())
    command = [sys.executable, "-c", ALTERNATE, str(path), str(tmp_path / "x.npy"),
               str(tmp_path / "out.npy")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    with torch.no_grad():
        expected = tiny(x).numpy()
    for out in np.load(tmp_path / "out.npy"):
        np.testing.assert_allclose(out, expected, atol=1e-4, rtol=0)


def test_lower_warns_naming_what_is_not_delegated() -> None:
    """A free batch leaves the flatten (a reshape to a symbolic size) outside XNNPACK: named."""
    model = randomize(mobilenetv3.create_model("v3_small_0.35"))
    program = trace(pte_graph(model, SIZE), SIZE, dynamic_batch=True)
    with pytest.warns(UserWarning, match="not delegated to XNNPACK.*view_copy"):
        lower(program)


@pytest.mark.xfail(reason="issue 15, open: on this randomized V2 0.35 at 64x64 the int8 .pte "
                   "follows float with correlation 0.947 (and its own Q/DQ graph 0.977); on the "
                   "official Small weights it scores 75.9 top-1 vs float 74.0", strict=False)
def test_int8_pte_tracks_float(tmp_path: Path, tiny: torch.nn.Module) -> None:
    """`quantize --format pte`: XNNPACK int8 through PT2E, calibrated on the given images; its
    logits follow the float model's (a broken scale or zero point would scramble them)."""
    from mobilenetv3.quantize import quantize_model

    calibration = example_input(SIZE, 16, seed=11).numpy()
    path = quantize_model(tiny, calibration, tmp_path / "int8.pte", "pte")
    float_bytes = 4 * sum(p.numel() for p in tiny.parameters())
    assert path.stat().st_size < 0.5 * float_bytes  # int8 weights
    x = example_input(SIZE, 4, seed=12)
    with torch.no_grad():
        expected = tiny(x).numpy()
    out = make_runner("executorch", path, threads=1)(x.numpy())
    assert np.corrcoef(out.ravel(), expected.ravel())[0, 1] > 0.98
