"""The `edgeai` command: a thin click group; each subcommand lives in its own module.

Exit codes: 0 ok, 1 failure, 2 bad input, 130 interrupted. Errors are one line (plus a hint);
a traceback only with --debug. Nothing heavy is imported at this level.
"""

from __future__ import annotations

import os
import sys

import click

from edgeai import __version__
from edgeai.cli.bench import bench
from edgeai.cli.chat import chat
from edgeai.cli.convert import convert
from edgeai.cli.doctor import doctor
from edgeai.cli.finetune import finetune
from edgeai.cli.guard import guard
from edgeai.cli.models import models
from edgeai.cli.rag import rag
from edgeai.cli.run import run
from edgeai.cli.see import see
from edgeai.cli.serve import serve
from edgeai.cli.speak import speak
from edgeai.cli.transcribe import transcribe
from edgeai.errors import EdgeAIError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeai")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def cli(debug: bool) -> None:
    """edgeai: local chat, model export and edge benchmarks, on your own hardware."""


cli.add_command(run)
cli.add_command(chat)
cli.add_command(models)
cli.add_command(doctor)
cli.add_command(bench)
cli.add_command(rag)
cli.add_command(convert)
cli.add_command(serve)
cli.add_command(guard)
cli.add_command(finetune)
cli.add_command(see)
cli.add_command(speak)
cli.add_command(transcribe)


def _fail(message: str, hint: str | None, code: int) -> int:
    click.echo(f"edgeai: error: {message}", err=True)
    if hint:
        click.echo(f"  hint: {hint}", err=True)
    return code


def run_cli(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code instead of raising."""
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    # Offline by default: only `edgeai models pull` may reach a model hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        result = cli.main(args=argv, prog_name="edgeai", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("edgeai: interrupted", err=True)
        return 130
    except click.UsageError as exc:
        hint = f"see: edgeai {exc.ctx.command_path.partition(' ')[2]} --help".replace("  ", " ") \
            if exc.ctx else None
        return _fail(exc.format_message(), hint, 2)
    except click.ClickException as exc:
        return _fail(exc.format_message(), None, exc.exit_code)
    except KeyboardInterrupt:
        click.echo("\nedgeai: interrupted", err=True)
        return 130
    except EdgeAIError as exc:
        if debug:
            raise
        return _fail(exc.message, exc.hint, exc.exit_code)
    except BrokenPipeError:
        # the reader went away (`edgeai run ... | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        if debug:
            raise
        return _fail(f"internal error: {type(exc).__name__}: {exc}",
                     "run again with --debug for the traceback, and report it", 1)


def main() -> None:
    sys.exit(run_cli())
