"""The CLI through click's CliRunner: exit codes, messages, no tracebacks for user errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from mmstd import __version__
from mmstd.cli import cli


def _run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_version() -> None:
    result = _run("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_card_init_then_validate(tmp_path: Path) -> None:
    card = tmp_path / "c.yaml"
    assert _run("card", "init", "--out", str(card)).exit_code == 0
    result = _run("validate", str(card))
    assert result.exit_code == 0, result.output
    assert "PASSED | card example-fusion@0.1.0 | draft" in result.output


def test_card_init_refuses_to_overwrite(tmp_path: Path) -> None:
    card = tmp_path / "c.yaml"
    card.write_text("mine")
    result = _run("card", "init", "--out", str(card))
    assert result.exit_code == 1
    assert "E_OUTPUT_EXISTS" in result.output and card.read_text() == "mine"


def test_unknown_field_makes_validate_exit_1_naming_it(tmp_path: Path) -> None:
    card = tmp_path / "c.yaml"
    _run("card", "init", "--out", str(card))
    card.write_text(card.read_text() + "colour: red\n")
    result = _run("validate", str(card))
    assert result.exit_code == 1
    assert "E_CARD_SCHEMA: c.yaml: is not a valid model card (1 problem)." in result.output
    assert "c.yaml: $: unknown field 'colour'" in result.output
    assert "Traceback" not in result.output


def test_validate_lists_every_problem(tmp_path: Path) -> None:
    card = tmp_path / "c.yaml"
    _run("card", "init", "--out", str(card))
    text = card.read_text().replace("kind: multiclass", "kind: regression").replace("[batch, 16]", "[-1, 16]")
    card.write_text(text)
    result = _run("validate", str(card))
    assert result.exit_code == 1
    assert "(2 problems)" in result.output
    assert "$.inputs[1].shape[0]: expected a positive int or an axis name, got -1." in result.output
    assert "$.task.kind: expected one of" in result.output


def test_validate_package_and_tampered_package(package_copy: Path) -> None:
    assert _run("validate", str(package_copy)).exit_code == 0
    with open(package_copy / "weights.safetensors", "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 0xFF]))
    result = _run("validate", str(package_copy))
    assert result.exit_code == 1
    assert "E_DIGEST_MISMATCH" in result.output and "weights.safetensors sha256 mismatch" in result.output
    assert "Traceback" not in result.output


def test_inspect(tiny_package_dir: Path) -> None:
    text = _run("inspect", str(tiny_package_dir))
    assert text.exit_code == 0
    assert "audio    audio" in text.output and "preprocessing: resample -> pad_trim -> mfcc" in text.output
    data = json.loads(_run("inspect", str(tiny_package_dir), "--json").output)
    assert data["model"] == "example-fusion@0.1.0"
    assert set(data["inputs_by_modality"]) == {"image", "text", "audio"}
    assert {f["path"] for f in data["files"]} == {"card.json", "model.onnx", "weights.safetensors", "reference.safetensors"}


def test_usage_error_exits_2() -> None:
    assert _run("validate").exit_code == 2
    assert _run("no-such-command").exit_code == 2


def test_missing_path_is_usage_error(tmp_path: Path) -> None:
    assert _run("validate", str(tmp_path / "nope")).exit_code == 2


def test_console_script_runs_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\na: 2\n")
    proc = subprocess.run([sys.executable, "-m", "mmstd", "validate", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "E_CARD_JSON: bad.yaml: line 2: duplicate key 'a'." in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1].startswith("FAILED | ")


def test_import_mmstd_stays_light() -> None:
    code = (
        "import sys, mmstd, mmstd.cli, mmstd.card, mmstd.package, mmstd.schema\n"
        "from mmstd.cli import COMMANDS, _LazyGroup\n"
        "[_LazyGroup._find(n) for n in COMMANDS]\n"
        "heavy = [m for m in ('torch', 'tensorflow', 'tf2onnx', 'onnxruntime', 'keras', 'matplotlib', 'sklearn') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == ""
