"""`edgeai guard log [--json]`: the guard's audit log (`<home>/guard.db`), oldest first.

Boundary: reading and printing only; the rows are written by `edgeai.guard.audit`.
"""

from __future__ import annotations

import json
import time

import click


@click.group()
def guard() -> None:
    """Guardrails: the audit log of what the guard refused, flagged and redacted."""


@guard.command("log")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (all columns).")
@click.option("-n", "--limit", type=click.IntRange(min=1), default=None, help="Only the newest N rows.")
def log(as_json: bool, limit: int | None) -> None:
    """Print the audit log: when, surface, layer, rule, action, source, and the text's sha256
    (an excerpt only when redaction was off)."""
    from edgeai.config import load_settings
    from edgeai.guard.audit import read

    settings = load_settings()
    rows = read(settings.home, limit)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        return
    if not rows:
        click.echo(f"the guard has logged nothing yet ({settings.home / 'guard.db'})")
        return
    for row in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["at"]))
        what = row["excerpt"] if row["excerpt"] is not None else f"sha256:{row['sha256'][:16]}"
        what = " ".join(what.split())
        detail = f" ({row['detail']})" if row["detail"] else ""
        click.echo(f"{when}  {row['surface']:<6} {row['layer']:<10} {row['action']:<8} {row['source']:<7} "
                   f"{row['rule']}{detail}  {what[:80]}")
