"""Zoo packages exported once per test session and shared by the exporter and zoo test files.

Import from tests (``from exporter_fixtures import zoo_package``). Exports are cached per
(framework, model, contract) under the session's pytest temp root, so test_exporters_torch,
test_exporters_keras and test_zoo pay for each export once. Treat the packages as read-only.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

LOG: dict[tuple[str, str, str], list[str]] = {}


@functools.cache
def _zoo_package(framework: str, name: str, contract: str, root: str) -> Path:
    from mmstd.zoo import export_zoo_model

    out = Path(root) / "zoo-packages" / f"{framework}-{name}-{contract}"
    lines: list[str] = []
    export_zoo_model(name, out, framework=framework, contract=contract, seed=0, progress=lines.append)
    LOG[(framework, name, contract)] = lines
    return out


def zoo_package(tmp_path_factory: Any, framework: str, name: str, contract: str = "digits-av") -> Path:
    """The sealed package of zoo model ``name`` (seed 0) exported with ``framework``; built on first use."""
    return _zoo_package(framework, name, contract, str(tmp_path_factory.getbasetemp()))


def ort_run(package_dir: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a package's graph on onnxruntime CPU, by path."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(package_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))


def graph_io(package_dir: Path) -> list[tuple[str, str, int, list[int | str]]]:
    """(side, name, elem_type, dims) for every graph input and output; dims as dim_value or dim_param."""
    import onnx

    model = onnx.load(str(package_dir / "model.onnx"), load_external_data=False)
    out = []
    for side, values in (("input", model.graph.input), ("output", model.graph.output)):
        for v in values:
            dims = [d.dim_param if d.dim_param else d.dim_value for d in v.type.tensor_type.shape.dim]
            out.append((side, v.name, v.type.tensor_type.elem_type, dims))
    return out
