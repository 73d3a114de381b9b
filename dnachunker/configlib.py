"""The one loader every config of the project goes through (model, data pipeline, pretraining,
sweeps, suites): a dataclass schema, then a YAML file, then `key=value` overrides in OmegaConf
dot-list form, checked against the schema and validated; errors that name the file and key; range
checks; the YAML every run records, secrets redacted. It knows no schema of its own."""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from omegaconf import OmegaConf

T = TypeVar("T")


class ConfigError(ValueError):
    """A bad config: the message names the file (or override) and the key. `keys`: the dotted
    keys at fault, when known (load_structured names the layer that set each)."""

    def __init__(self, message: str, keys: Sequence[str] = ()):
        super().__init__(message)
        self.keys = list(keys)


def invalid(problems: list[tuple[str, str]], what: str = "config") -> ConfigError:
    """[(dotted key, what is wrong)] -> one ConfigError naming them all."""
    return ConfigError(f"invalid {what}: " + "; ".join(f"{k}: {m}" for k, m in problems), [k for k, _ in problems])


def out_of_range(obj, rules: dict[str, str], prefix: str = "") -> list[tuple[str, str]]:
    """Range checks: {dotted attribute: bound} with bounds '>0', '>=0', '[0,1]', '(0,1]', ...;
    None values pass (optional keys), list values are checked element by element."""
    problems = []
    for key, bound in rules.items():
        value = obj
        for part in key.split("."):
            value = getattr(value, part)
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v is not None and not _within(v, bound):
                need = f"in {bound}" if bound[0] in "[(" else f"{bound.rstrip('0123456789.-')} {bound.lstrip('<>=')}"
                problems.append((prefix + key, f"must be {need}, got {value}"))
                break
    return problems


def _within(v: float, bound: str) -> bool:
    b = bound.replace(" ", "")
    if b[0] in "<>":
        op, x = (b[:2], b[2:]) if b[1] == "=" else (b[:1], b[1:])
        x = float(x)
        return {">": v > x, ">=": v >= x, "<": v < x, "<=": v <= x}[op]
    lo, hi = (float(t) for t in b[1:-1].split(","))
    return (v >= lo if b[0] == "[" else v > lo) and (v <= hi if b[-1] == "]" else v < hi)


def load_structured(schema: type[T], path: str | Path | None = None, overrides: Sequence[str] = (),
                    what: str = "config", sections: dict[str, type] | None = None,
                    whole: Sequence[str] = ()) -> T:
    """schema defaults <- YAML file at `path` <- each override in order -> a validated `schema`.

    `sections` names keys whose value may instead be the path of a YAML file with that section
    (e.g. model: configs/model/tiny.yaml). The file is read here, once, and replaces the whole
    section (the section's schema gives what the file omits); later `key.sub=value` overrides
    apply on top. `whole` names free-form mappings (a sweep's grid) that a later layer replaces
    instead of merging into. Unknown keys and wrong types are errors naming the file.
    """
    sections = sections or {}
    try:
        cfg = OmegaConf.structured(schema)
        layers = []
        if path is not None:
            if not Path(path).is_file():
                raise ConfigError(f"{path}: {what} file not found")
            layers.append((str(path), OmegaConf.load(path)))
            note_env_values(Path(path).read_text())
        layers += [(f"override {o!r}", OmegaConf.from_dotlist([o])) for o in overrides]
        for o in overrides:
            note_env_values(o)
        for source, layer in layers:
            for key, section in sections.items():
                if isinstance(layer.get(key), str):
                    cfg[key] = _section_file(layer.pop(key), section)
            for key in whole:
                if key in layer:
                    cfg[key] = layer.pop(key)
            try:
                cfg = OmegaConf.merge(cfg, layer)
            except Exception as e:  # OmegaConf's errors name the key but not where it came from
                raise ConfigError(f"{source}: {_plain(e)}") from None
        obj = OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"{path or what}: {e}") from None
    if not hasattr(obj, "validate"):
        return obj
    try:
        return obj.validate()
    except ValueError as e:
        keys = getattr(e, "keys", [])
        where = list(dict.fromkeys(_source(k, layers) or str(path or what) for k in keys)) or [str(path or what)]
        raise ConfigError(f"{', '.join(where)}: {e}", keys) from None


def _plain(e: Exception) -> str:
    """An OmegaConf error as one line a user reads: the key and what is wrong, without its internals."""
    key = getattr(e, "full_key", None)
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if "is not a ListConfig" in first:
        first = "takes a list, e.g. [0.5, 0.5]"
    return f"{key}: {first}" if key and f"'{key}'" not in first else first


def _source(key: str, layers) -> str | None:
    """The last layer (file or override) that set `key` (or a section above it), if any."""
    found = None
    for source, layer in layers:
        parts = key.split(".")
        if any(OmegaConf.select(layer, ".".join(parts[:i]), default=None) is not None for i in range(1, len(parts) + 1)):
            found = source
    return found


def _section_file(file: str, section: type):
    if not Path(file).is_file():
        raise ConfigError(f"{file}: config file not found")
    note_env_values(Path(file).read_text())
    try:
        return OmegaConf.merge(OmegaConf.structured(section), OmegaConf.load(file))
    except Exception as e:
        raise ConfigError(f"{file}: {e}") from None


def to_yaml(obj) -> str:
    """A config dataclass (nested sections included) as YAML, secrets redacted: what every run
    records (config.yaml, checkpoints, sweep.yaml)."""
    return OmegaConf.to_yaml(OmegaConf.create(to_dict(obj)))


def to_dict(obj, redact: bool = True) -> dict:
    """A config dataclass as a dict; secrets redacted (see `redacted`) unless redact=False."""
    d = OmegaConf.to_container(OmegaConf.structured(obj))
    return redacted(d) if redact else d


_SECRET = re.compile(r"(^|[_.-])(password|passwd|pwd|pass|token|secret|api_?key|access_?key|private_?key|auth|"
                     r"credentials?|signature|sig)($|[_.-])", re.IGNORECASE)
_USERINFO = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")
_ENV = re.compile(r"\$\{oc\.env:\s*([A-Za-z_][A-Za-z0-9_]*)")
_ENV_VALUES: set[str] = set()  # values a config took from the environment: redacted wherever recorded


def note_env_values(text: str) -> None:
    """Remember the value of every environment variable that `text` interpolates (${oc.env:NAME}):
    whatever key it lands in (a run name, a path), it is written nowhere in clear."""
    for name in _ENV.findall(text):
        if len(os.environ.get(name, "")) >= 3:
            _ENV_VALUES.add(os.environ[name])


def redact(value: str) -> str:
    """Values interpolated from the environment, a URL's user info (user:token@, anywhere in the
    text) and secret-looking query parameters -> ***."""
    for secret in sorted(_ENV_VALUES, key=len, reverse=True):
        value = value.replace(secret, "***")
    value = _USERINFO.sub(r"\1***@", value)
    if "?" in value and "://" in value:
        base, query = value.split("?", 1)
        value = base + "?" + "&".join(f"{k}=***" if _SECRET.search(k) else f"{k}={v}" if sep else k
                                      for k, sep, v in (q.partition("=") for q in query.split("&")))
    return value


def redacted(d):
    """Every string of a nested config redacted; the values of secret-named keys hidden."""
    if isinstance(d, dict):
        return {k: "***" if isinstance(v, str) and _SECRET.search(str(k)) and v else redacted(v) for k, v in d.items()}
    if isinstance(d, list):
        return [redacted(v) for v in d]
    return redact(d) if isinstance(d, str) else d


def flatten(d: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}"""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
