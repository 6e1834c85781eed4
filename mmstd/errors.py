"""Errors a user can fix, with a stable code, and the exit codes shared by every command.

Every user-facing failure is an ``MmstdError``: the CLI prints its message (and hint) without a
traceback and exits with ``exit_code``. Anything else is a bug and keeps its traceback. Codes are
stable strings (see SECURITY.md's taxonomy) so CI systems can match on them.
"""
from __future__ import annotations

from collections.abc import Sequence

EXIT_OK = 0
EXIT_USER = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3
EXIT_INFRA = 4

#: Every code an ``MmstdError`` may carry, with one line saying what it means.
CODES: dict[str, str] = {
    "E_USAGE": "a command-line argument or option is invalid",
    "E_FS_PATH_ESCAPE": "absolute path, '..', symlink, hard link, or a path outside the root",
    "E_FS_NOT_REGULAR": "FIFO, device, socket, or directory where a file is expected; missing file",
    "E_FS_LIMIT": "file too large, too many files, path too deep or long, undecodable name",
    "E_FORMAT_UNSUPPORTED": "file kind not in the allowlist",
    "E_FORMAT_CORRUPT": "truncated, empty or unparsable file",
    "E_UNSAFE_CONTENT": "code-bearing content: pickle, Keras Lambda or module reference, custom ops",
    "E_ONNX_INVALID": "onnx.checker (full_check) failure",
    "E_ONNX_UNSUPPORTED": "ONNX domain, opset or operator not allowed",
    "E_TENSOR_LIMIT": "declared dimensions, bytes or rank above limits",
    "E_SAFETENSORS_INVALID": "malformed safetensors header or data",
    "E_CARD_JSON": "not strict JSON/YAML: duplicate keys, NaN, BOM, depth, huge numbers, bad UTF-8",
    "E_CARD_SCHEMA": "a card field is missing, mistyped, unknown or out of its enum",
    "E_DOCUMENT_SCHEMA": "a suite, policy, manifest or report does not match its schema",
    "E_DIGEST_MISMATCH": "sha256 or size of a file differs from the one pinned for it",
    "E_MANIFEST_MISMATCH": "a file is missing from the package or not listed in its manifest",
    "E_IO_CONTRACT": "input/output names, dtypes, ranks or dimensions differ from the card",
    "E_NONFINITE_OUTPUT": "NaN or Inf in model outputs",
    "E_RUNTIME_ERROR": "onnxruntime raised while running the model",
    "E_RUNTIME_CRASH": "the child process running the model died from a signal",
    "E_TIMEOUT": "wall-clock or CPU time limit exceeded",
    "E_MEMORY_LIMIT": "allocation failure or out of memory",
    "E_NONDETERMINISTIC": "repeated runs disagree beyond tolerance",
    "E_PARITY": "the exported graph's outputs differ from the source framework's",
    "E_EXPORT": "the source model could not be exported",
    "E_DEPENDENCY": "an optional dependency (extra) is not installed",
    "E_DATASET_SCHEMA": "dataset columns or dtypes differ from the suite",
    "E_DATASET_VALUE": "label out of range, NaN, wrong value",
    "E_DATASET_EMPTY": "a split has zero rows",
    "E_DATASET_LIMIT": "dataset size, row or byte caps exceeded",
    "E_IMAGE_INVALID": "undecodable, truncated or wrong-mode image",
    "E_IMAGE_BOMB": "image pixel count over limit",
    "E_TEXT_INVALID": "invalid UTF-8, control characters, or over-long text",
    "E_ARCHIVE_UNSAFE": "zip slip, link members, bomb ratio or member count",
    "E_OUTPUT_EXISTS": "refusing to overwrite an existing artifact",
    "E_NOT_FOUND": "a named thing (registry entry, suite, file) does not exist",
    "E_BACKEND_UNAVAILABLE": "the requested execution provider is not active on this machine",
    "E_DEVICE_FAILURE": "an execution provider or device failed while loading or running (retryable)",
    "E_POLICY": "a gate policy is invalid",
    "E_POLICY_RULE": "a gate policy rule (score, per-class, latency, cross-backend, baseline drop) is not met",
    "E_INTERNAL": "a bug in mmstd",
}


class MmstdError(Exception):
    """An error the user can fix. The CLI prints it without a traceback.

    Args:
        message: Names the file, the thing, the bad value and what was expected.
        code: A stable code from ``CODES``.
        hint: One sentence on how to fix it.
        problems: Every individual problem when there are several (e.g. schema errors).
    """

    exit_code: int = EXIT_USER
    default_code: str = "E_USAGE"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        hint: str | None = None,
        problems: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        if self.code not in CODES:
            raise ValueError(f"unknown error code {self.code!r}")
        self.hint = hint
        self.problems = tuple(problems)

    def __str__(self) -> str:
        return format_error(self)


def format_error(err: MmstdError) -> str:
    """Render an error as ``CODE: message``, its problems one per line, then the hint."""
    lines = [f"{err.code}: {err.message}"]
    lines += [f"  - {p}" for p in err.problems]
    if err.hint:
        lines.append(f"  hint: {err.hint}")
    return "\n".join(lines)


class CardError(MmstdError):
    default_code = "E_CARD_SCHEMA"


class DocumentError(MmstdError):
    default_code = "E_DOCUMENT_SCHEMA"


class PackageError(MmstdError):
    default_code = "E_FORMAT_CORRUPT"


class ExportError(MmstdError):
    default_code = "E_EXPORT"


class SuiteError(MmstdError):
    default_code = "E_DATASET_SCHEMA"


class RunError(MmstdError):
    default_code = "E_RUNTIME_ERROR"


class MetricError(MmstdError, ValueError):
    """Metrics behave like numeric functions, so their errors are also ValueErrors."""

    default_code = "E_USAGE"


class ReportError(MmstdError):
    default_code = "E_DOCUMENT_SCHEMA"


class GateError(MmstdError):
    default_code = "E_POLICY"


class RegistryError(MmstdError, KeyError):
    default_code = "E_NOT_FOUND"

    def __str__(self) -> str:  # KeyError would repr() the message
        return format_error(self)


class InfraError(MmstdError):
    """Worth retrying on another machine or later: a GPU is absent, a device failed."""

    exit_code = 4
    default_code = "E_BACKEND_UNAVAILABLE"


EXIT_CODES_FOR_DOCS = {
    EXIT_OK: "success, or every submission accepted",
    EXIT_USER: "an error the user can fix (no traceback)",
    EXIT_USAGE: "command-line usage",
    EXIT_REJECTED: "the gate rejected at least one submission",
    EXIT_INFRA: "infrastructure error worth retrying (GPU absent, device failure)",
}
