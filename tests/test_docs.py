"""The docs site (mkdocs.yml, docs/): it builds with --strict, and every ``python`` block of every page runs."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").rglob("*.md") if "hooks" not in p.parts)]

mkdocs = pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
mktestdocs = pytest.importorskip("mktestdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_site_builds_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "NO_MKDOCS_2_WARNING": "1",  # Material's notice about its successor, printed at every build
    }
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-10000:]
    index = (site / "index.html").read_text()
    assert "lightning-greenai" in index
    assert not (site / "hooks").exists(), "the build hook is not a page of the site"
    callbacks = (site / "callbacks" / "index.html").read_text()
    sweeper = (site / "sweeper" / "index.html").read_text()
    api = (site / "api" / "index.html").read_text()
    for page in site.rglob("*.html"):
        assert "<!-- greenai:" not in page.read_text(), f"a generation marker was left in {page}"
    # generated from a real run, not copied: keys only a run of both callbacks logs
    for key in ("greenai/energy_kwh", "greenai/flops_per_step", "greenai/&lt;stage&gt;/j_per_sample"):
        assert key in callbacks
    # generated from the config dataclass: nested options and their defaults
    for option in ("hydra.sweeper.stop_when.*", "next_trials", "hydra.sweeper.grid.*", "embodied_host_basis"):
        assert option in sweeper, option
    # every public name has its section, generated from its docstring
    import lightning_greenai

    for name in lightning_greenai.__all__:
        if not name.startswith("__"):
            obj = getattr(lightning_greenai, name)
            assert f'id="{obj.__module__}.{obj.__qualname__}"' in api, name


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("greenai_docs", ROOT / "docs" / "hooks" / "greenai_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_options_table_has_every_option_of_the_dataclass_and_the_yaml() -> None:
    pytest.importorskip("hydra")
    from hydra_plugins.greenai_sweeper.config import GreenAISweeperConf

    def fields(cls: type, prefix: str = "") -> set[str]:
        found: set[str] = set()
        for field in dataclasses.fields(cls):
            if not field.name.startswith("_"):
                found.add(prefix + field.name)
                if dataclasses.is_dataclass(field.type):
                    found |= fields(field.type, f"{prefix}{field.name}.")
        return found

    hook = _hook()
    options = fields(GreenAISweeperConf)
    documented = {k for k in hook.yaml_comments() if not k.startswith("_") and k != "defaults"}
    assert documented == options, "greenai.yaml and GreenAISweeperConf differ"
    table = hook.sweeper_options_markdown()
    for option in options:
        section, _, name = option.rpartition(".")
        assert f"| `{name}` |" in table and (not section or f"hydra.sweeper.{section}.*" in table), option


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_python_block_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # whatever a block writes (logs, price tags) goes into the test's folder
    mktestdocs.check_md_file(page, memory=True)
