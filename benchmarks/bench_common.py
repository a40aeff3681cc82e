"""What every benchmark shares: a one-line description of the machine, and its RESULTS.md section."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import psutil
import torch

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return (f"{os.cpu_count()} cores ({cpu}), {psutil.virtual_memory().total / 2**30:.0f} GiB, CPU only, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}, "
            f"load average at start {os.getloadavg()[0]:.1f}")


def write_section(path: Path, text: str) -> None:
    """Replace the section of RESULTS.md headed by ``text``'s first line (or append it); keep the others."""
    heading = text.split("\n", 1)[0]
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    if heading in old:
        head, rest = old.split(heading, 1)
        cut = rest.find("\n## ")
        new = head + text + ("\n" + rest[cut + 1:] if cut >= 0 else "")
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.write_text(new)
