"""Exceptions shared by every part of hwq.

Bad input raises the built-in ``ValueError`` / ``TypeError`` with a message naming the
value received and what is allowed; the classes here are for the cases those do not cover.
"""


class HwqError(Exception):
    """Base class of hwq's own errors."""


class CheckFailed(HwqError):
    """A verification or budget check failed (CLI exit code 1): a mismatch, a missed target."""


class ToolchainError(HwqError):
    """A required external tool (Verilator, Yosys, a compiler) is missing or broken."""


class ArtifactError(HwqError, ValueError):
    """A saved artifact (network, program) is truncated, corrupted, tampered or wrong-version."""
