"""The exporter registry and the export stage's framework-independent rules (mmstd.exporters)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mmstd.card import ModelCard
from mmstd.cli import cli
from mmstd.errors import MmstdError
from mmstd.exporters import (
    DEFAULT_OPSET,
    EXPORTERS,
    ExportOptions,
    call_factory,
    export_model,
    get_exporter,
    import_factory,
    resolve_opset,
    resolve_path,
)
from mmstd.testing import EXAMPLE_CARD


def test_both_frameworks_are_registered_lazily() -> None:
    assert {"torch", "keras"} <= set(EXPORTERS.names())


def test_an_unknown_exporter_suggests_the_closest() -> None:
    with pytest.raises(MmstdError, match=r"E_NOT_FOUND: Unknown exporter 'torh'\. Did you mean 'torch'\? "
                                         r"Available: keras, torch\."):
        get_exporter("torh")


@pytest.mark.parametrize(("framework", "module"), [("torch", "torch"), ("keras", "tf2onnx"), ("keras", "tensorflow")])
def test_a_missing_framework_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch, framework: str,
                                                        module: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # what an absent package looks like to the import system
    with pytest.raises(MmstdError, match=rf"E_DEPENDENCY: The '{framework}' exporter needs the Python package "
                                         rf"'{module}', which is not installed\.") as info:
        get_exporter(framework)
    assert info.value.hint == f"pip install 'mmstd[{framework}]'"


def test_a_missing_framework_on_the_command_line_exits_1_with_the_pip_line(monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    result = CliRunner().invoke(cli, ["export", "--framework", "torch", "--model", "m:f", "--card", str(EXAMPLE_CARD),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "E_DEPENDENCY" in result.output and "hint: pip install 'mmstd[torch]'" in result.output
    assert "Traceback" not in result.output


def test_an_existing_output_is_refused_before_any_export_work(tmp_path: Path, example_card: ModelCard) -> None:
    out = tmp_path / "pkg"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(MmstdError, match=r"E_OUTPUT_EXISTS: .*pkg: already exists; refusing to overwrite it\."):
        export_model(object(), example_card, out, framework="no-such-framework")
    assert (out / "mine.txt").read_text() == "keep me"


def test_an_existing_output_makes_mmstd_export_exit_1(tmp_path: Path) -> None:
    out = tmp_path / "pkg"
    out.mkdir()
    result = CliRunner().invoke(cli, ["export", "--framework", "torch", "--model", "m:f", "--card", str(EXAMPLE_CARD),
                                      "--out", str(out)])
    assert result.exit_code == 1 and "E_OUTPUT_EXISTS" in result.output and "--force" in result.output


@pytest.mark.parametrize(("ref", "message"), [
    ("mmstd.zoo", r"E_USAGE: --model: 'mmstd.zoo' is not 'pkg.module:factory'\."),
    ("no_such_module_xyz:make", r"E_NOT_FOUND: --model: module 'no_such_module_xyz' of 'no_such_module_xyz:make' "
                                r"cannot be imported"),
    ("mmstd.zoo:no_such_factory", r"E_NOT_FOUND: --model: 'mmstd.zoo' has no attribute 'no_such_factory'\."),
    ("mmstd.zoo:STRATEGIES", r"E_USAGE: --model: 'mmstd.zoo:STRATEGIES' is a tuple, not a callable\."),
])
def test_bad_model_references_are_named(ref: str, message: str) -> None:
    with pytest.raises(MmstdError, match=message):
        import_factory(ref, what="--model")


def test_factories_get_the_card_when_they_ask_for_it(example_card: ModelCard) -> None:
    assert call_factory(lambda card: card.ref, example_card) == "example-fusion@0.1.0"
    assert call_factory(lambda: "no card", example_card) == "no card"


def test_exporter_path_and_opset_come_from_options_then_the_card(example_card: ModelCard) -> None:
    pinned = example_card.with_sections(export={"exporter_path": "dynamo", "opset": 17})
    paths = ("torchscript", "dynamo")
    assert resolve_path(ExportOptions(), example_card, allowed=paths, default=None, framework="torch") is None
    assert resolve_path(ExportOptions(), pinned, allowed=paths, default=None, framework="torch") == "dynamo"
    assert resolve_path(ExportOptions(exporter_path="torchscript"), pinned, allowed=paths, default=None,
                        framework="torch") == "torchscript"
    assert (resolve_opset(ExportOptions(), example_card), resolve_opset(ExportOptions(), pinned),
            resolve_opset(ExportOptions(opset=20), pinned)) == (DEFAULT_OPSET, 17, 20)
    with pytest.raises(MmstdError, match=r"E_USAGE: exporter path 'torchscript' is not available for framework "
                                         r"'keras'; expected one of tf2onnx\."):
        resolve_path(ExportOptions(exporter_path="torchscript"), example_card, allowed=("tf2onnx",), default="tf2onnx",
                     framework="keras")


def test_export_commands_and_modules_import_no_framework() -> None:
    code = ("import sys, mmstd.commands.export, mmstd.commands.zoo, mmstd.exporters, mmstd.exporters.parity, "
            "mmstd.exporters.graph, mmstd.exporters.preflight, mmstd.exporters.torch, mmstd.exporters.keras, mmstd.zoo, "
            "mmstd.zoo.spec; "
            "heavy = [m for m in ('torch', 'tensorflow', 'keras', 'tf2onnx', 'onnxruntime', 'onnx') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_export_help_lists_the_contract_options() -> None:
    result = CliRunner().invoke(cli, ["export", "--help"])
    assert result.exit_code == 0
    for option in ("--framework", "--model", "--weights", "--card", "--out", "--opset", "--exporter", "--force"):
        assert option in result.output


def _words_card(example_card: ModelCard) -> ModelCard:
    doc = example_card.to_dict()
    doc["inputs"][1]["preprocessing"] = [{"op": "tokenize", "kind": "words", "vocab": "assets/vocab.txt",
                                          "max_length": 16, "lowercase": True}]
    return ModelCard.from_dict(doc)


def test_assets_the_card_names_are_staged_for_the_package(example_card: ModelCard, tmp_path: Path) -> None:
    from mmstd.exporters import card_assets, stage_assets

    card = _words_card(example_card)
    assert card_assets(card) == ["assets/vocab.txt"] and card_assets(example_card) == []
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "vocab.txt").write_text("zero\none\n")
    staged = stage_assets(card, tmp_path, tmp_path / "staged")
    assert list(staged) == ["assets/vocab.txt"] and staged["assets/vocab.txt"].read_text() == "zero\none\n"


def test_a_missing_or_linked_asset_is_refused(example_card: ModelCard, tmp_path: Path) -> None:
    from mmstd.exporters import stage_assets

    card = _words_card(example_card)
    with pytest.raises(MmstdError, match=r"E_USAGE: card 'example-fusion@0.1.0' names assets/vocab.txt, but no "
                                         r"directory holding assets/ was given\."):
        stage_assets(card, None, tmp_path / "staged")
    with pytest.raises(MmstdError, match=r"E_FS_NOT_REGULAR: .*assets/vocab.txt: .*does not exist"):
        stage_assets(card, tmp_path, tmp_path / "staged")
    (tmp_path / "assets").mkdir()
    (tmp_path / "secret.txt").write_text("not for the package")
    (tmp_path / "assets" / "vocab.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(MmstdError, match=r"E_FS_PATH_ESCAPE"):
        stage_assets(card, tmp_path, tmp_path / "staged")
