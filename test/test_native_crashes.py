"""Native crashes, in subprocesses: OpenVINO engines freed in any order leave signal delivery working, and a
segmentation fault in the CLI or in training prints a Python traceback instead of dying without a word.

The first case fails without :func:`segaff_core.runtimes.openvino_runtime.shared_core`: each
``openvino.Core`` installs an alternate signal stack of its own and two freed in the order they were made
leave the thread's stack unmapped, so the next signal handled in Python ends the process with SIGSEGV.
"""
from __future__ import annotations

import importlib.util
import signal
import subprocess
from pathlib import Path

import pytest

from segaff_core.paths import find_default_checkpoint
from subprocess_checks import assert_signals_delivered_after, run_script

@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino is not installed")
@pytest.mark.parametrize("free_order", ["creation", "reverse"])
def test_openvino_predictors_freed_in_any_order_leave_signals_deliverable(free_order: str, tmp_path: Path) -> None:
    assert_signals_delivered_after("""
        import gc
        from segaff_core.inference import Predictor

        predictors = [Predictor.from_checkpoint(backend="openvino", cache_dir=sys.argv[1]) for _ in range(2)]
        assert [p.backend for p in predictors] == ["openvino", "openvino"]
        if sys.argv[2] == "reverse":
            predictors.reverse()
        while predictors:
            del predictors[0]
            gc.collect()
    """, str(tmp_path / "cache"), free_order)


def assert_traceback_printed(completed: subprocess.CompletedProcess[str], innermost: str) -> None:
    """The process died of SIGSEGV and faulthandler printed the Python stack down to ``innermost``."""
    assert completed.returncode == -signal.SIGSEGV, f"exit {completed.returncode}\n{completed.stderr[-3000:]}"
    assert "Fatal Python error: Segmentation fault" in completed.stderr, completed.stderr[-3000:]
    assert innermost in completed.stderr, completed.stderr[-3000:]


def test_a_native_crash_in_the_cli_prints_a_traceback(tmp_path: Path) -> None:
    script = """
        import ctypes, sys
        import segaff_core.cli as cli

        def crash_in_native_code(args):
            return ctypes.string_at(0)  # reads address 0: SIGSEGV inside a C function

        crash_in_native_code.__doc__ = "Crash."  # the parser's help line

        cli.SUBCOMMANDS["slim"] = (cli.SUBCOMMANDS["slim"][0], crash_in_native_code)
        sys.exit(cli.main(["slim", "--checkpoint", sys.argv[1], "--out", sys.argv[2]]))
    """
    completed = run_script(script, str(find_default_checkpoint()), str(tmp_path / "slim.ckpt"))
    assert_traceback_printed(completed, "crash_in_native_code")


def test_a_native_crash_after_training_prints_a_traceback(tmp_path: Path) -> None:
    """Lightning's signal connector puts SIG_DFL back over faulthandler's SIGSEGV handler at the end of a run;
    the crash comes after a fit, when only the re-armed handler can report it."""
    script = """
        import ctypes, importlib.util, sys
        from segaff_core.synth import generate_dataset

        root, run_dir = sys.argv[1], sys.argv[2]
        generate_dataset("sf3d", root, num_images=8, seed=0, image_size=(64, 64), views_per_scene=2)
        spec = importlib.util.spec_from_file_location("fit", "train/fit.py")
        fit = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(fit)
        fit.main(["fit", "--config", "config/synthetic_train.yaml", f"--data.init_args.root={root}",
                  "--data.init_args.input_size=[64, 64]", "--data.init_args.batch_size=2",
                  "--data.init_args.num_workers=0", f"--trainer.default_root_dir={run_dir}",
                  "--trainer.max_steps=1", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=0",
                  "--trainer.num_sanity_val_steps=0", "--trainer.enable_progress_bar=false"])

        def crash_after_the_fit():
            return ctypes.string_at(0)

        crash_after_the_fit()
    """
    completed = run_script(script, str(tmp_path / "data"), str(tmp_path / "run"))
    assert_traceback_printed(completed, "crash_after_the_fit")


def test_sigusr1_dumps_every_threads_stack_and_the_process_goes_on() -> None:
    """What a user does to a node that stopped answering (docs/ROBOT.md): ``kill -USR1 PID``."""
    completed = run_script("""
        import os, signal, threading
        from segaff_core.crash_reports import dump_stacks_on_signal

        dump_stacks_on_signal()
        waiting, release = threading.Event(), threading.Event()

        def worker_waiting_for_a_frame():
            waiting.set()
            release.wait(30.0)

        worker = threading.Thread(target=worker_waiting_for_a_frame)
        worker.start()
        waiting.wait(30.0)
        os.kill(os.getpid(), signal.SIGUSR1)
        release.set()
        worker.join()
        print("went on")
    """, timeout_s=60.0)
    assert completed.returncode == 0, f"exit {completed.returncode}\n{completed.stderr[-3000:]}"
    assert completed.stdout.strip() == "went on"
    assert "worker_waiting_for_a_frame" in completed.stderr, completed.stderr
    assert "Current thread 0x" in completed.stderr, completed.stderr  # the main thread's too
