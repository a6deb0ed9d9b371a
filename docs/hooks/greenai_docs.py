"""MkDocs hook: the tables that must match the code are generated at build time, never copied.

Markers a page may hold, each replaced by Markdown:

* ``<!-- greenai:sweeper-options -->``: every ``hydra.sweeper.*`` option, read from the dataclass
  ``GreenAISweeperConf`` (and the ones nested in it), with its type, its default and the comment the shipped
  ``lightning_greenai/conf/hydra/sweeper/greenai.yaml`` gives it.
* ``<!-- greenai:logged-keys -->``: every metric key the callbacks log, found by running a tiny ``lightning.Trainer``
  (fit, validate, test) with ``EnergyMonitor`` and ``FlopMonitor`` into a ``CSVLogger``; meanings come from the
  callbacks' docstrings.
* ``<!-- greenai:api -->``: a mkdocstrings directive per public name of ``lightning_greenai.__all__``.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import tempfile
import typing
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SWEEPER_YAML = ROOT / "lightning_greenai" / "conf" / "hydra" / "sweeper" / "greenai.yaml"

MARK_OPTIONS = "<!-- greenai:sweeper-options -->"
MARK_KEYS = "<!-- greenai:logged-keys -->"
MARK_API = "<!-- greenai:api -->"
MARK_DB_ERRORS = "<!-- greenai:database-errors -->"
#: ``<!-- greenai:message lightning_greenai.sensors.discovery.RAPL_FIX -->``: a message constant, as the code says it
MARK_MESSAGE = re.compile(r"<!-- greenai:message ([\w.]+) -->")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace each marker with its generated table."""
    if MARK_OPTIONS in markdown:
        markdown = markdown.replace(MARK_OPTIONS, sweeper_options_markdown())
    if MARK_KEYS in markdown:
        markdown = markdown.replace(MARK_KEYS, logged_keys_markdown())
    if MARK_API in markdown:
        markdown = markdown.replace(MARK_API, api_markdown())
    if MARK_DB_ERRORS in markdown:
        markdown = markdown.replace(MARK_DB_ERRORS, database_errors_markdown())
    return MARK_MESSAGE.sub(lambda m: message_markdown(m.group(1)), markdown)


#: A Sphinx role the docstrings use (``:class:`~lightning_greenai.Grid```), as mkdocstrings renders it.
_ROLE = re.compile(r":(?:class|func|meth|mod|attr|exc|data|obj):<code>(~?)([\w.]+)(?: &lt;[\w.]+&gt;)?</code>")


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    """Docstrings are written for Sphinx too: show their roles as code, ``~`` keeping the last name only."""
    html = _ROLE.sub(lambda m: f"<code>{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}</code>", html)
    return re.sub(r"(\w)::</p>", r"\1:</p>", html)  # reST's "Example::" before a literal block


# -- hydra.sweeper.* options ------------------------------------------------------------------------------------


def yaml_comments(path: Path = SWEEPER_YAML) -> dict[str, str]:
    """The comment of each key of the sweeper's YAML, by dotted key; comment-only lines continue the one above."""
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing mappings
    last: str | None = None
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("- "):
            continue
        if stripped.startswith("#"):
            # a comment-only line indented past column 0 continues the previous key's comment
            if last is not None and line.startswith(" "):
                comments[last] = f"{comments.get(last, '')} {stripped.lstrip('#').strip()}".strip()
            else:
                last = None
            continue
        match = re.match(r"^(\s*)([A-Za-z_][\w]*):(.*)$", line)
        if match is None:
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        dotted = ".".join([*(k for _, k in stack), key])
        comment = rest.split("#", 1)[1].strip() if "#" in rest else ""
        comments[dotted] = comment
        last = dotted
        if rest.split("#", 1)[0].strip() == "":  # a mapping opens: its keys are nested
            stack.append((indent, key))
    return comments


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " or null"
    if origin in (dict, typing.Dict):  # noqa: UP006
        key, value = typing.get_args(tp)
        return f"dict[{_type_name(key)}, {_type_name(value)}]"
    if tp is typing.Any:
        return "any"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _default(field: dataclasses.Field[Any]) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        return "(below)"
    else:
        return "(required)"
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _cell(text: str) -> str:
    """Text for a Markdown table cell: code spans kept, Markdown and HTML outside them escaped."""
    parts = re.split(r"(`[^`]*`)", text)
    for i in range(0, len(parts), 2):  # the text between code spans
        parts[i] = re.sub(r"([_*\[\]])", r"\\\1", parts[i]).replace("<", "&lt;").replace(">", "&gt;")
    return "".join(parts).replace("|", "\\|") or "—"


def sweeper_options_markdown() -> str:
    """Tables of every ``hydra.sweeper.*`` option: the dataclass's fields, the YAML's defaults and comments."""
    from hydra_plugins.greenai_sweeper.config import GreenAISweeperConf

    comments = yaml_comments()
    hints_of = functools.cache(typing.get_type_hints)
    sections: list[tuple[str, str, list[str]]] = []

    def walk(cls: type, prefix: str, title: str, doc: str) -> None:
        rows: list[str] = []
        nested: list[tuple[type, str, str]] = []
        hints = hints_of(cls)
        for field in dataclasses.fields(cls):
            name = field.name
            if name.startswith("_"):
                continue  # _target_, _recursive_: Hydra's plumbing, not options
            dotted = f"{prefix}{name}"
            tp = hints[name]
            comment = comments.get(dotted, "")
            rows.append(f"| `{name}` | {_type_name(tp)} | {_default(field)} | {_cell(comment)} |")
            if dataclasses.is_dataclass(tp):
                nested.append((tp, f"{dotted}.", dotted))
        sections.append((title, doc, rows))
        for sub, sub_prefix, sub_title in nested:
            sub_doc = comments.get(sub_title, "") or (sub.__doc__ or "").strip()
            walk(sub, sub_prefix, sub_title, sub_doc)

    walk(GreenAISweeperConf, "", "", "")
    out: list[str] = []
    for title, doc, rows in sections:
        name = f"hydra.sweeper.{title}" if title else "hydra.sweeper"
        out.append(f"### `{name}`\n")
        if doc:
            out.append(f"{doc}\n")
        out.append(f"| `{name}.*` | type | default | what it does |\n|---|---|---|---|")
        out.extend(rows)
        out.append("")
    source = (
        "*Generated at build time from `GreenAISweeperConf` in `hydra_plugins/greenai_sweeper/config.py` and the "
        "comments of `lightning_greenai/conf/hydra/sweeper/greenai.yaml`.*\n"
    )
    return "\n".join([source, *out])


# -- logged metric keys ----------------------------------------------------------------------------------------


def _rst_inline(text: str) -> str:
    text = re.sub(r":\w+:`~?([^`]+)`", lambda m: f"`{m.group(1).rsplit('.', 1)[-1]}`", text)
    return text.replace("``", "`")


def docstring_key_meanings(doc: str) -> list[tuple[list[str], str]]:
    """The rows of the ``====`` key tables in a callback's docstring: (key patterns, meaning)."""
    lines = doc.splitlines()
    entries: list[tuple[list[str], str]] = []
    i = 0
    while i < len(lines):
        border = lines[i].strip()
        if not re.fullmatch(r"=+ +=+", border):
            i += 1
            continue
        indent = len(lines[i]) - len(lines[i].lstrip())
        split = indent + border.index(" ") + 1
        i += 1
        left_keys: list[str] = []
        right: list[str] = []
        open_left = False
        while i < len(lines) and not re.fullmatch(r"=+ +=+", lines[i].strip()):
            row = lines[i]
            left, rest = row[:split].strip(), row[split:].strip()
            if left and not open_left and left_keys:
                entries.append((left_keys, " ".join(right)))
                left_keys, right = [], []
            if left:
                left_keys.extend(re.findall(r"``([^`]+)``", left))
                open_left = left.endswith(",")
            right.append(rest)
            i += 1
        if left_keys:
            entries.append((left_keys, " ".join(right)))
        i += 1
    out: list[tuple[list[str], str]] = []
    for keys, meaning in entries:
        full: list[str] = []
        for key in keys:
            if key.startswith("_") and full:  # ``_high`` after ``greenai/energy_kwh_low``
                key = re.sub(r"_[a-z]+$", key, full[-1])
            full.append(key)
        out.append((full, _rst_inline(meaning)))
    return out


def _flop_prediction_meanings(doc: str) -> list[tuple[list[str], str]]:
    """FlopMonitor says its per-sample keys in prose: take that sentence."""
    text = " ".join(doc.split())
    match = re.search(r"And the price of a prediction,(.*?)\.\s", text)
    if match is None:
        return []
    sentence = _rst_inline(f"the price of a prediction,{match.group(1)}")
    return [(re.findall(r"``([^`]+)``", match.group(0)), sentence)]


def _pattern(key: str) -> re.Pattern[str]:
    escaped = re.escape(key)
    escaped = re.sub(r"<[a-z]+>", r"[^/]+", escaped.replace(r"\<", "<").replace(r"\>", ">"))
    return re.compile(f"^{escaped}$")


@functools.cache
def run_tiny_fit() -> tuple[list[str], list[str]]:
    """Fit, validate and test a 2-layer MLP on random tensors; the metric keys and run fields the callbacks logged."""
    import csv

    import lightning as L
    import torch
    import yaml
    from lightning.pytorch.loggers import CSVLogger
    from torch import nn

    from lightning_greenai import EnergyMonitor, FlopMonitor

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))

        def _loss(self, batch: Any) -> torch.Tensor:
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            return self._loss(batch)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("val_loss", self._loss(batch))

        def test_step(self, batch: Any, batch_idx: int) -> None:
            self.log("test_loss", self._loss(batch))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(16, 8), torch.randint(0, 2, (16,)))
    loader = torch.utils.data.DataLoader(data, batch_size=8)  # 2 batches
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the docs build needs the keys, not advice about this machine's sensors
        trainer = L.Trainer(
            max_epochs=1,
            callbacks=[EnergyMonitor(grid={"country": "DE"}, verbose=False), FlopMonitor()],
            logger=CSVLogger(tmp, name="keys"),
            log_every_n_steps=1,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            default_root_dir=tmp,
        )
        model = Tiny()
        trainer.fit(model, loader, loader)
        trainer.validate(model, loader, verbose=False)
        trainer.test(model, loader, verbose=False)
        metrics: set[str] = set()
        fields: list[str] = []
        for path in Path(tmp).rglob("metrics.csv"):
            with path.open() as f:
                metrics.update(next(csv.reader(f)))
        for path in Path(tmp).rglob("hparams.yaml"):
            fields.extend(k for k in (yaml.safe_load(path.read_text()) or {}) if k not in fields)
    keys = sorted(k for k in metrics if k.startswith("greenai/"))
    return keys, [k for k in fields if k.startswith("greenai/")]


_GROUPS = (
    ("Energy, CO2e, money (EnergyMonitor)", r"^greenai/(energy_kwh|co2e_kg|cost|power_w|is_estimate|embodied|water)"),
    ("Per device (EnergyMonitor, `per_device=True`)", r"^greenai/device_energy_kwh/"),
    ("Projected totals of the fit (EnergyMonitor)", r"^greenai/projected_"),
    ("FLOPs (FlopMonitor)", r"^greenai/(flops|mfu)"),
    ("The price of a prediction (per stage: validate, test, predict)", r"^greenai/(validate|test|predict)/"),
)


def logged_keys_markdown() -> str:
    """Every key the tiny run logged, grouped by prefix, each with the meaning its callback's docstring gives."""
    from lightning_greenai.callbacks.energy_monitor import EnergyMonitor
    from lightning_greenai.callbacks.flop_monitor import FlopMonitor

    keys, fields = run_tiny_fit()
    meanings = [
        *docstring_key_meanings(EnergyMonitor.__doc__ or ""),
        *docstring_key_meanings(FlopMonitor.__doc__ or ""),
        *_flop_prediction_meanings(FlopMonitor.__doc__ or ""),
    ]
    patterns = [(_pattern(k), k, meaning) for ks, meaning in meanings for k in ks]
    # then keys a meaning names in passing ("`greenai/co2e_kg_low` and `_high` likewise"), at lower priority
    for _, meaning in meanings:
        named: list[str] = []
        for key in re.findall(r"`([^`]+)`", meaning):
            if key.startswith("greenai/"):
                named.append(key)
            elif key.startswith("_") and named:
                named.append(re.sub(r"_[a-z]+$", key, named[-1]))
        patterns.extend((_pattern(k), k, meaning) for k in named)

    def meaning_of(key: str) -> str:
        for pattern, _, meaning in patterns:
            if pattern.match(key):
                return _cell(meaning)
        return "—"

    grouped: dict[str, list[str]] = {title: [] for title, _ in _GROUPS}
    grouped["Other"] = []
    for key in keys:
        title = next((t for t, rx in _GROUPS if re.match(rx, key)), "Other")
        grouped[title].append(key)
    out = [
        "*Generated at build time: the keys a tiny `Trainer` fit, validate and test logged through a `CSVLogger` with "
        "`EnergyMonitor` and `FlopMonitor` on CPU; meanings from the callbacks' docstrings. A GPU run adds "
        "`greenai/device_energy_kwh/gpu_0` (and more devices), and `greenai/mfu` where the peak is known; a predict "
        "adds `greenai/predict/...`; `tokens_key` adds the `..._per_token` keys.*\n"
    ]
    for title, members in grouped.items():
        if not members:
            continue
        out.append(f"#### {title}\n\n| key | meaning |\n|---|---|")
        stages: dict[str, list[str]] = {}  # greenai/<stage>/x: one row, with the stages this run logged it for
        for key in members:
            found = re.match(r"^greenai/(validate|test|predict)/(.+)$", key)
            if found is None:
                out.append(f"| `{key}` | {meaning_of(key)} |")
            else:
                stages.setdefault(found.group(2), []).append(found.group(1))
        for name, seen in stages.items():
            logged = f" *(this run: {', '.join(seen)})*"
            out.append(f"| `greenai/<stage>/{name}` | {meaning_of(f'greenai/{seen[0]}/{name}')}{logged} |")
        out.append("")
    if fields:
        out.append(
            "#### Run fields (logged once as hyperparameters)\n\n"
            "Each stage's price tag goes into the run's fields once per stage (`fit`, `validate`, `test`, `predict`): "
            "the same names in each.\n\n| field | what it holds |\n|---|---|"
        )
        stage_fields = sorted({re.sub(r"^greenai/price_tag/[^/]+/", "", f) for f in fields if "/price_tag/" in f})
        for field in fields:
            if "/price_tag/" not in field:
                out.append(f"| `{field}` | {meaning_of(field)} |")
        listed = ", ".join(f"`{f}`" for f in stage_fields)
        out.append(f"| `greenai/price_tag/<stage>/<field>` | {_stage_fields_comment()}: {listed} |")
        out.append("")
    return "\n".join(out)


def _stage_fields_comment() -> str:
    """The ``#:`` comment over ``_STAGE_FIELDS`` in the EnergyMonitor's module."""
    from lightning_greenai.callbacks import energy_monitor

    source = Path(energy_monitor.__file__).read_text()
    match = re.search(r"#: (.*)\n_STAGE_FIELDS = ", source)
    return _rst_inline(match.group(1).rstrip(".")) if match else "the stage's price-tag figures"


# -- messages, as the code words them -----------------------------------------------------------------------


def message_markdown(dotted: str) -> str:
    """A message constant of the package, as a text block (so the docs quote it, never paraphrase it)."""
    import importlib
    import textwrap

    module, name = dotted.rsplit(".", 1)
    text = getattr(importlib.import_module(module), name)
    if not isinstance(text, str):
        raise TypeError(f"{dotted} is not a message string")
    return "```text\n" + "\n".join(textwrap.wrap(text, 110)) + "\n```"


def database_errors_markdown() -> str:
    """The database errors a sweep's SQL storage says at once (retrying would not mend them), and what to do."""
    from lightning_greenai.trial import channel

    rows = [f"| `{match}` | {_cell(advice)} |" for match, advice in channel._PERMANENT]
    return "\n".join(["| the driver's message holds | what to do |", "|---|---|", *rows])


# -- API reference ---------------------------------------------------------------------------------------------


def api_markdown() -> str:
    """A mkdocstrings block per public name, at the module where it is defined (the package re-exports it)."""
    import lightning_greenai

    out: list[str] = []
    for name in lightning_greenai.__all__:
        if name.startswith("__"):
            continue
        obj = getattr(lightning_greenai, name)
        path = f"{obj.__module__}.{obj.__qualname__}"
        out.append(f"::: {path}\n    options:\n      heading: {name}\n      show_root_full_path: false\n")
    return "\n".join(out)
