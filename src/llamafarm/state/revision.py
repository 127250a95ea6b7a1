"""Write the next state migration: `python -m llamafarm.state.revision "add api keys"`.

It upgrades a scratch SQLite database to the current head, compares it with `tables.py`
(Alembic's autogenerate) and writes `migrations/versions/NNNN_<words>.py` with the
difference. Read it before committing: autogenerate misses renames and data changes.
"""

from __future__ import annotations

import re
import sys
import tempfile

from alembic import command
from sqlalchemy import create_engine

from llamafarm.state.migrate import alembic_config, scripts, upgrade


def next_revision_id(message: str) -> str:
    number = sum(1 for _ in scripts().walk_revisions()) + 1
    words = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")[:40] or "change"
    return f"{number:04d}_{words}"


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    message = " ".join(argv)
    rev_id = next_revision_id(message)
    with tempfile.TemporaryDirectory() as scratch:
        engine = create_engine(f"sqlite:///{scratch}/state.db")
        try:
            if rev_id != "0001_initial":
                upgrade(engine, lock_timeout=60.0)
            with engine.begin() as connection:
                config = alembic_config(connection)
                # Format the new file as `make lint` wants it.
                config.set_section_option("post_write_hooks", "hooks", "ruff")
                config.set_section_option("post_write_hooks", "ruff.type", "module")
                config.set_section_option("post_write_hooks", "ruff.module", "ruff")
                config.set_section_option(
                    "post_write_hooks", "ruff.options", "format REVISION_SCRIPT_FILENAME"
                )
                command.revision(config, message=message, autogenerate=True, rev_id=rev_id)
        finally:
            engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
