"""Shared fixtures. Models are built in code (mmstd.testing); nothing binary is committed."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmstd.testing import EXAMPLE_CARD

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden/* from the current output")


class Golden:
    """Compare rendered text with tests/golden/<name>; `pytest --update-golden` rewrites them."""

    def __init__(self, update: bool) -> None:
        self.update = update

    def check(self, name: str, actual: str | bytes) -> None:
        path = GOLDEN_DIR / name
        data = actual.encode("utf-8") if isinstance(actual, str) else actual
        if self.update or not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            if not self.update:
                pytest.fail(f"golden file {path.name} did not exist; wrote it. Re-run to compare.")
            return
        assert data == path.read_bytes(), f"{name} differs from its golden file; run pytest --update-golden if intended"


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Golden:
    return Golden(request.config.getoption("--update-golden"))


@pytest.fixture(scope="session")
def example_card():
    from mmstd.card import load_card

    return load_card(EXAMPLE_CARD)


@pytest.fixture(scope="session")
def tiny_package_dir(tmp_path_factory: pytest.TempPathFactory, example_card) -> Path:
    """A sealed package of the tiny ONNX fusion model for the example card (read-only: copy before tampering)."""
    from mmstd.testing import seal_tiny_package

    out = tmp_path_factory.mktemp("pkg") / "example-fusion"
    seal_tiny_package(example_card, out)
    return out


@pytest.fixture
def package_copy(tmp_path: Path, tiny_package_dir: Path) -> Path:
    """A private copy of the tiny package, free to tamper with."""
    import shutil

    dest = tmp_path / "pkg"
    shutil.copytree(tiny_package_dir, dest)
    return dest
