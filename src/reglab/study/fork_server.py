"""Imported by the workers' fork server only (the last of `reglab.study.workers.PRELOAD`).

The server exits when its driver has (and its workers have) gone. Tearing down torch takes it about
a second, during which it still holds the driver's stdout and stderr, so a pipeline such as
``reglab compare | tee log`` waited that long for its end. Nothing is left to clean up by then
(workers leave through ``os._exit`` and never run this), so the server leaves at once.
"""

import atexit
import os

atexit.register(os._exit, 0)
