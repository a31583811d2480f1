"""The production dataflow for Bytewax's own launcher: ``python -m bytewax.run flows/production.py``.

The flow's code lives in ``stitchboard.flows`` and imports as ``stitchboard.…`` like every module;
this file only builds the production flow from settings, for runs that need the launcher's options
(``-w`` worker threads, ``-i``/``-a`` a cluster of processes, ``-r``/``-s`` recovery). ``stitchboard
run`` remains the usual way: it also creates the tables, serves metrics and writes the last epoch's
rows when the flow ends. Under this launcher create the tables first (``stitchboard init-db``), pass
``-r`` the settings' ``recovery_dir``, and expect the last epoch's rows at the next start.

Settings come from ``Settings.load`` in its usual precedence (stitchboard/settings.py): the
``STITCHBOARD_*`` environment, the secret files in the directory ``STITCHBOARD_SECRETS_DIR`` names
(if set) and the settings file ``STITCHBOARD_CONFIG`` names (TOML or JSON, if set).
"""

from __future__ import annotations

import os
from pathlib import Path

from stitchboard.app.runner import make_flow
from stitchboard.settings import Settings

_config = os.environ.get("STITCHBOARD_CONFIG")
_secrets = os.environ.get("STITCHBOARD_SECRETS_DIR")
flow = make_flow(
    Settings.load(Path(_config) if _config else None, secrets_dir=Path(_secrets) if _secrets else None)
)
