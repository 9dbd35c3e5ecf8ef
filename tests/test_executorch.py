"""ExecuTorch (.pte, XNNPACK delegate): every variant within 1e-4 of torch, every op delegated
at a fixed batch, the runner's batches and threads, and the CLI (extra `[executorch]`)."""

from __future__ import annotations

import json
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
from mobilenetv3.data.preprocess import Preprocess  # noqa: E402
from mobilenetv3.export import example_input, randomize  # noqa: E402
from mobilenetv3.export.pte import (  # noqa: E402
    export_pte,
    lower,
    pte_graph,
    trace,
    undelegated_ops,
)
from mobilenetv3.quantize.files import is_quantized_file, read_metadata  # noqa: E402
from mobilenetv3.runtime.engines import make_runner  # noqa: E402
from mobilenetv3.weights.safetensors_io import save_safetensors  # noqa: E402

pytestmark = pytest.mark.executorch
SIZE = (64, 64)


@pytest.mark.slow
class TestEveryVariant:
    """A class: xdist's loadscope runs it in a worker of its own, beside the rest of the file."""

    @pytest.fixture(scope="class")
    def exported(self, tmp_path_factory) -> dict:
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # a fixed batch leaves no op undelegated
            return export_every_variant(tmp_path_factory.mktemp("pte"), ".pte", export_pte)

    @pytest.mark.parametrize("name", VARIANTS)
    def test_every_variant_matches_torch(self, name: str, exported: dict) -> None:
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
    """Random weights, evaluated at the test size (the int8 file's note carries it)."""
    model = randomize(mobilenetv3.create_model("v2_0.35"), seed=7)
    model.pretrained_info = {"preprocess": Preprocess(image_size=SIZE).to_dict()}
    return model


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


@pytest.fixture(scope="module")
def tiny_pte(tmp_path_factory, tiny: torch.nn.Module) -> Path:
    return export_pte(tiny, tmp_path_factory.mktemp("float") / "tiny.pte", image_size=SIZE).path


def test_thread_counts_alternate_in_one_process(tmp_path: Path, tiny: torch.nn.Module,
                                                tiny_pte: Path) -> None:  # fmt: skip
    """A method loaded before ExecuTorch's pool was resized ran on the freed pool (it hung,
    segfaulted or aborted in `execute`: issue 15); the runner loads it again. In a child
    process, so that a hang or a crash fails this test instead of stopping the run."""
    x = example_input(SIZE, 1, seed=3)
    np.save(tmp_path / "x.npy", x.numpy())
    command = [sys.executable, "-c", ALTERNATE, str(tiny_pte), str(tmp_path / "x.npy"),
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


@pytest.fixture(scope="module")
def calibration() -> np.ndarray:
    return example_input(SIZE, 16, seed=11).numpy()


@pytest.fixture(scope="module")
def int8_pte(tmp_path_factory, tiny: torch.nn.Module, calibration: np.ndarray) -> Path:
    from mobilenetv3.quantize import quantize_model

    return quantize_model(tiny, calibration, tmp_path_factory.mktemp("int8") / "int8.pte", "pte")


def test_int8_pte_runs_its_quantized_graph(int8_pte: Path, tiny: torch.nn.Module,
                                           calibration: np.ndarray) -> None:  # fmt: skip
    """`quantize --format pte`: XNNPACK int8 through PT2E, calibrated on the given images. Its
    kernels reproduce the converted graph's Q/DQ pairs to within a rounding tie, so on held-out
    inputs the file departs from that graph less than the graph departs from float (1 -
    correlation, measured 0.023 vs 0.051 here: this randomized V2 0.35 roughly doubles any
    rounding difference every two blocks; 0.025 vs 0.103 with the official Small weights on 32
    photos, top-1 as the graph's on 32 of 32 and as float's on 26). A float file fails the size,
    a wrong scale or zero point the departure."""
    from mobilenetv3.quantize.ptq_pte import calibrated_graph, departure

    float_bytes = 4 * sum(p.numel() for p in tiny.parameters())
    assert int8_pte.stat().st_size < 0.5 * float_bytes  # int8 weights
    x = example_input(SIZE, 4, seed=12)
    with torch.no_grad():
        graph, reference = calibrated_graph(tiny, calibration)(x).numpy(), tiny(x).numpy()
    out = make_runner("executorch", int8_pte, threads=1)(x.numpy())
    assert departure(out, graph) < departure(graph, reference) < 0.1


def test_evaluate_says_an_int8_pte_ran_in_executorch(int8_pte: Path, tiny_pte: Path,
                                                      shared: Path, tmp_path: Path,
                                                      capsys) -> None:  # fmt: skip
    """The int8 file's note (a constant method) says int8; a float .pte has none."""
    assert read_metadata(tiny_pte) == {} and not is_quantized_file(tiny_pte)
    data = tmp_path / "data"
    data.mkdir()
    for photo in sorted((shared / "images" / "imagenet-samples").iterdir())[:4]:
        (data / photo.name).symlink_to(photo)
    out = tmp_path / "result.json"
    assert main(["evaluate", str(data), "--weights", str(int8_pte), "--workers", "1",
                 "--json", str(out)]) == 0  # fmt: skip
    result = json.loads(out.read_text())
    assert (result["engine"], result["precision"]) == ("executorch", "int8")
    assert "executorch (auto), int8, int8.pte" in capsys.readouterr().out
    assert read_metadata(int8_pte)["variant"] == "v2_0.35_int8"
