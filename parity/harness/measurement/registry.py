"""Finds suites: every module in `parity.suites` that defines `SUITE` is one, and so is every
entry point of another installed package in the group `parity.suites`; entry points in the group
`parity.impls` add implementations to the ops of suites that exist.

The harness never imports a kernel directly; it imports suites, and only after `device.detect()`
has chosen the backend (the Triton interpreter must be on before a kernel module is imported).
Listing suite names reads entry point metadata only and imports nothing of a plugin.

A plugin, in its own pyproject.toml:

    [project.entry-points."parity.suites"]
    mysuite = "my_package.suite"            # a module defining SUITE (a parity Suite named "mysuite")
    [project.entry-points."parity.impls"]
    my_gemm = "my_package.impls:IMPLS"      # {"gemm": [Impl(...), ...]}: extra Impls, by suite name

Entry points are found on sys.path, so every process parity starts (ranks, --all-gpus and
--cpu-workers workers) sees the same plugins as the one that started it. A plugin that fails to
load is one line naming it (`problems()`), and the rest runs without it.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import pkgutil
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from parity.harness.core.model import Impl, Suite, SuiteMeta, UsageError

SUITES_GROUP = "parity.suites"
IMPLS_GROUP = "parity.impls"
BUILT_IN = "parity (built in)"

# Registries (the only module state): what loading each plugin entry point gave, and its problems.
_LOADED: dict[tuple[str, str, str], tuple[Any, str | None]] = {}
_PROBLEMS: dict[str, str] = {}
_IMPL_ORIGINS: dict[tuple[str, str], "Plugin"] = {}  # (suite, impl) -> the plugin that added it


def triton_problem() -> str | None:
    """None if the `triton` module imports; otherwise one line saying why and what to do."""
    try:
        import triton  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any failure to import is reported the same way
        return (f"the triton module does not import ({type(exc).__name__}: {exc}); on a CPU-only "
                "machine install parity[cpu]; on a GPU the vendor's torch image provides it "
                "(triton on CUDA, pytorch-triton-rocm on ROCm)")
    return None


@dataclass(frozen=True)
class Plugin:
    """One entry point of another package, and where it came from."""

    group: str
    name: str
    value: str
    dist: str | None
    version: str | None

    def origin(self) -> str:
        where = f"{self.dist} {self.version}" if self.dist else "an unnamed distribution"
        return f"{where} (entry point {self.group}: {self.name} = {self.value})"

    def label(self) -> str:
        return f"plugin {self.name!r} of {self.dist or 'an unnamed distribution'} ({self.group}: {self.value})"


def plugins(group: str) -> list[Plugin]:
    """The entry points of a group, in name order; each (name, value) once even where a folder is
    on sys.path twice."""
    seen, out = set(), []
    for ep in metadata.entry_points(group=group):
        dist = getattr(ep, "dist", None)
        key = (ep.name, ep.value)
        if key in seen:
            continue
        seen.add(key)
        out.append(Plugin(group, ep.name, ep.value, dist.metadata["Name"] if dist else None,
                          dist.version if dist else None))
    return sorted(out, key=lambda p: (p.name, p.value))


def problems() -> list[str]:
    """One line per plugin that could not be used, so far in this process."""
    return list(_PROBLEMS.values())


def _problem(plugin: Plugin, text: str) -> str:
    line = f"{plugin.label()} {text}"
    _PROBLEMS.setdefault(f"{plugin.group}:{plugin.name}:{plugin.value}", line)
    return line


def _load_entry(plugin: Plugin) -> tuple[Any, str | None]:
    """(object, None), or (None, one line naming the plugin and what went wrong); loaded once."""
    key = (plugin.group, plugin.name, plugin.value)
    if key not in _LOADED:
        try:
            obj, error = metadata.EntryPoint(plugin.name, plugin.value, plugin.group).load(), None
        except BaseException as exc:  # noqa: BLE001 - a plugin's import may even call sys.exit
            if isinstance(exc, KeyboardInterrupt):
                raise
            text = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]
            obj, error = None, _problem(plugin, f"failed to import ({text})")
        _LOADED[key] = (obj, error)
    return _LOADED[key]


def builtin_names() -> list[str]:
    import parity.suites

    return sorted(m.name for m in pkgutil.iter_modules(parity.suites.__path__) if not m.name.startswith("_"))


def plugin_suites() -> dict[str, Plugin]:
    """Suite name -> its plugin; a name taken by a built-in suite or an earlier plugin is a problem."""
    builtin, out = set(builtin_names()), {}
    for plugin in plugins(SUITES_GROUP):
        if plugin.name in builtin:
            _problem(plugin, f"is ignored: the built-in suite {plugin.name!r} has that name")
        elif plugin.name in out:
            _problem(plugin, f"is ignored: {out[plugin.name].label()} already provides suite {plugin.name!r}")
        else:
            out[plugin.name] = plugin
    return out


def suite_names() -> list[str]:
    """Every suite name, built in and from plugins, without importing a plugin."""
    return sorted({*builtin_names(), *plugin_suites()})


def origin(suite: str, impl: str | None = None) -> str:
    """Where a suite (or one implementation of it) came from."""
    if impl is not None and (suite, impl) in _IMPL_ORIGINS:
        return _IMPL_ORIGINS[(suite, impl)].origin()
    plugin = plugin_suites().get(suite)
    return plugin.origin() if plugin else BUILT_IN


def _plugin_suite(name: str, plugin: Plugin) -> Suite:
    obj, error = _load_entry(plugin)
    if error:
        raise UsageError(f"suite {name!r} cannot be used: {error}")
    suite = getattr(obj, "SUITE", obj)
    if not isinstance(suite, Suite):
        raise UsageError(f"suite {name!r} cannot be used: "
                         + _problem(plugin, f"gives a {type(suite).__name__}, not a module defining SUITE (a parity Suite)"))
    if suite.name != name:
        raise UsageError(f"suite {name!r} cannot be used: "
                         + _problem(plugin, f"defines a suite named {suite.name!r}: the entry point's name must be the suite's"))
    return suite


def _impl_plugins() -> list[tuple[Plugin, str, tuple[Impl, ...]]]:
    """(plugin, suite name, its Impls) for every usable `parity.impls` entry point."""
    out = []
    for plugin in plugins(IMPLS_GROUP):
        obj, error = _load_entry(plugin)
        if error:
            continue
        if not isinstance(obj, dict):
            _problem(plugin, f"gives a {type(obj).__name__}: expected a dict of suite name -> Impl or list of Impls")
            continue
        for suite_name, impls in obj.items():
            impls = (impls,) if isinstance(impls, Impl) else tuple(impls) if isinstance(impls, (list, tuple)) else None
            if impls is None or not all(isinstance(i, Impl) for i in impls):
                _problem(plugin, f"gives something other than Impls for suite {suite_name!r}")
                continue
            out.append((plugin, str(suite_name), impls))
    return out


def _with_plugin_impls(suite: Suite) -> Suite:
    """The suite with the implementations plugins add to its ops; a clash or an unknown op is a
    problem line, and that implementation is left out."""
    ops = {op.name for op in suite.ops}
    added = []
    for plugin, suite_name, impls in _impl_plugins():
        if suite_name != suite.name:
            continue
        for impl in impls:
            taken = {(i.op, i.name) for i in (*suite.impls, *added)}
            if impl.op not in ops:
                _problem(plugin, f"adds {impl.name!r} to op {impl.op!r}, which suite {suite.name!r} lacks "
                                 f"(ops: {', '.join(sorted(ops))})")
            elif (impl.op, impl.name) in taken:
                _problem(plugin, f"adds {impl.name!r} to {suite.name} {impl.op}, which already has one of that name")
            else:
                added.append(impl)
                _IMPL_ORIGINS[(suite.name, impl.name)] = plugin
    return dataclasses.replace(suite, impls=suite.impls + tuple(added)) if added else suite


def check_names(chosen) -> None:
    """Every name a suite's, refused without importing one (a suite imports torch)."""
    names = suite_names()
    for name in chosen:
        if name not in names:
            raise UsageError(f"unknown suite {name!r} (suites: {', '.join(names)})")


def light(name: str) -> SuiteMeta | None:
    """A built-in suite's light metadata (parity/suites/_meta/), read without importing torch or a
    kernel; None for a plugin suite (whose checks wait for its Suite), a built-in without any, or
    an unknown name."""
    module = f"parity.suites._meta.{name}"
    if name not in builtin_names() or importlib.util.find_spec(module) is None:
        return None
    meta = getattr(importlib.import_module(module), "META", None)
    return meta if isinstance(meta, SuiteMeta) and meta.name == name else None


def load(name: str) -> Suite:
    names = suite_names()
    check_names([name])
    if name in builtin_names():
        suite = importlib.import_module(f"parity.suites.{name}").SUITE
    else:
        suite = _plugin_suite(name, plugin_suites()[name])
    for plugin, target, _ in _impl_plugins():
        if target not in names:
            _problem(plugin, f"adds implementations to suite {target!r}, which is not installed")
    return _with_plugin_impls(suite)


def load_all() -> list[Suite]:
    """Every suite that loads; a plugin suite that does not is a problem line, left out."""
    out = []
    for name in suite_names():
        try:
            out.append(load(name))
        except UsageError:
            if name in builtin_names():
                raise
    return out
