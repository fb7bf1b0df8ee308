"""What the benchmarks ask of the CPU: the check lives in segaff_core (the Predictor refuses emulated bf16)."""
from segaff_core.runtimes.hardware import cpu_has_native_bf16

__all__ = ["cpu_has_native_bf16"]
