"""Logging for workflow scripts: every rule's log file gets the package's messages and tracebacks."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from optical_clir.io import remove_stale_temporaries


@contextlib.contextmanager
def script_logging(
    log_path: str | Path | None, outputs: Iterable[str | Path] = (), level: int = logging.INFO
) -> Iterator[logging.Logger]:
    """Send log records to the rule's log file (and stderr); log any exception with its traceback.

    ``outputs``: the job's outputs; the temporary files a killed run of this job left beside
    them (:func:`optical_clir.io.remove_stale_temporaries`) are deleted first.
    """
    root = logging.getLogger()
    root.setLevel(level)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w", encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)
    logging.captureWarnings(True)
    logger = logging.getLogger("optical_clir.workflow")
    for output in outputs:
        output = Path(output)
        remove_stale_temporaries(output.parent, [output.name])
    try:
        yield logger
    except Exception:
        logger.exception("job failed")
        raise
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
