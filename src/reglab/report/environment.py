"""Where a report was made: versions and device, without the host name."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime

import numpy as np
import pandas as pd


def environment(devices: list[str] | None = None) -> dict[str, str]:
    import scipy
    import torch

    from reglab import __version__

    return {
        "reglab": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "scipy": scipy.__version__, "pandas": pd.__version__,
        "platform": platform.platform(terse=True), "machine": platform.machine(),
        "cpu cores": str(os.cpu_count()), "torch threads": str(torch.get_num_threads()),
        "cuda": torch.version.cuda or "none",
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "device(s) used": ", ".join(devices) if devices else "—",
        "generated (UTC)": datetime.now(UTC).isoformat(timespec="seconds"),
    }
