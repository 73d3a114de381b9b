"""What every command line of the project shares: `--help` that shows each flag's default, and
one meaning of `--out` (where a command writes: a directory when it writes several files, the
file itself when it writes one; never results/ by default, which holds published studies)."""
from __future__ import annotations

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and '(default: ...)' after every flag that has one."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """A bad flag is one line, `error: <prog>: <problem>` (see --help), and exit code 2, like bad input."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    return Parser(prog=prog, description=description, formatter_class=HelpFormatter)


def subparser(sub, name: str, help: str, **kw) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=help, formatter_class=HelpFormatter, **kw)


def at_least(low: int):
    """argparse type: an integer >= low, else an error naming the bound."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


def add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="an export directory (a training run's <out_dir>/export)")


def add_species(p: argparse.ArgumentParser) -> None:
    p.add_argument("--species", help="for a model pretrained with a species embedding: which species (a genome name "
                                     "of its corpus, listed in its config.json)")


def load_model(a, require_species: bool = True, **kwargs):
    """The export of --model, with --species set; a model with a species embedding needs one
    unless the command reads it from the data (require_species=False)."""
    from .errors import InputError
    from .model import DNAChunker
    try:
        model = DNAChunker.from_pretrained(a.model, **kwargs).set_species(a.species)
    except (ValueError, FileNotFoundError) as e:  # a bad config, bad weights, or no export there
        raise InputError(str(e) if str(e).startswith(str(a.model)) else f"{a.model}: {e}") from None
    if require_species and (why := model.needs_species()):
        raise InputError(f"{a.model}: {why} (--species)")
    return model


def add_device(p: argparse.ArgumentParser) -> None:
    import torch
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")


def add_parts(p: argparse.ArgumentParser, what: str) -> None:
    """--parts N [--part K | --merge] (dnachunker.parts), `what`: how the input is split."""
    p.add_argument("--parts", type=at_least(1), default=None, help=f"split {what} into this many parts, written to "
                   "<out>.parts/ and merged into --out: with --part K only part K (a Slurm array element: "
                   "slurm/parts.sh), with --merge only the merge, with neither every missing part here, then the merge")
    p.add_argument("--part", type=at_least(0), default=None, help="with --parts: the part to run (0-based)")
    p.add_argument("--merge", action="store_true", help="with --parts: merge the finished parts into --out")


def check_parts(a) -> None:
    """--part and --merge only with --parts (an InputError, before any work)."""
    from .errors import InputError
    if (a.part is not None or a.merge) and not a.parts:
        raise InputError("--part and --merge go with --parts N")
