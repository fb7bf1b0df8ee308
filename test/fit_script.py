"""``train/fit.py`` (a script, not a package module) loaded as a module, so tests can call its ``main(args)``
in their own process."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

FIT_SCRIPT = Path(__file__).resolve().parents[1] / "train" / "fit.py"


def load_fit_script() -> ModuleType:
    """A fresh module of ``train/fit.py``."""
    spec = importlib.util.spec_from_file_location("segaff_train_fit", FIT_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
