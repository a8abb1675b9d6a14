"""Sphinx configuration of the cse-bridge documentation site."""

from __future__ import annotations

import ast
import builtins
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.nodes import make_refnode

import cse_bridge

_HERE = Path(__file__).parent
# The benchmarks page's plot extension lives beside this file.
sys.path.insert(0, str(_HERE / "_ext"))

project = "cse-bridge"
author = "cse-bridge developers"
copyright = "cse-bridge developers"
release = cse_bridge.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
if (_HERE / "_ext" / "bench_plots.py").exists():
    extensions.append("bench_plots")

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
# _generated/ holds pieces other pages include (benchmark tables), not pages.
exclude_patterns = ["_build", "_generated/**", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"cse-bridge {release}"
html_static_path: list[str] = []

# Classes first, then functions, then constants: what a reader looks for first.
autodoc_member_order = "groupwise"
autodoc_typehints = "description"
autodoc_default_options = {
    "show-inheritance": True,
}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

nitpicky = True
# No intersphinx (the build must not fetch inventories), so names of the standard
# library and of the optional third-party packages cannot be linked: they are
# listed here, module by module, and render as plain text.
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(collections\.abc|typing|types|logging|threading|asyncio|_asyncio)\..+",
    ),
    (r"py:.*", r"(os|pathlib|datetime|sqlite3|socket|ssl|enum)\..+"),
    (
        r"py:.*",
        r"(opentelemetry|redis|aiohttp|structlog|requests|jwt|prometheus_client)(\..+)?",
    ),
    # The same names, written unqualified in annotations under TYPE_CHECKING.
    (r"py:class", r"Path|ReadableSpan|SpanExporter|LogRecordExporter|AnyValue"),
    (r"py:class", r"CollectorRegistry|Metric"),
]


def _import_object(dotted: str) -> object | None:
    """Return the object *dotted* names (module path, then attributes), or None."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attribute in parts[split:]:
                found = getattr(found, attribute)
        except AttributeError:
            return None
        return found
    return None


def _public_reference(
    app: Sphinx, env: BuildEnvironment, node: Any, contnode: nodes.Element
) -> nodes.Element | None:
    """
    Link a reference to a private module's path to where the object is documented.

    Annotations name objects where they are defined (``cse_bridge.engine._engine.
    BatchEngine``); the reference documents them where they are exported
    (``cse_bridge.engine.BatchEngine``). Objects that are private everywhere (a
    private base class or protocol) render as plain text: they are not documented.
    """
    target: str = node.get("reftarget", "")
    if node.get("refdomain") != "py":
        return None
    if _is_builtin_class(target):
        return None  # a builtin (bytes, type): Sphinx renders it as plain text
    name = target.rsplit(".", 1)[-1]
    if "." in target and not target.startswith("cse_bridge."):
        return None
    domain: Any = env.get_domain("py")
    candidates = [
        (full, entry)
        for full, entry in domain.objects.items()
        if full.startswith("cse_bridge.")
        and full.rsplit(".", 1)[-1] == name
        and not entry.aliased
    ]
    wanted = _import_object(target) if "." in target else None
    for full, entry in candidates:
        if wanted is None and len(candidates) != 1:
            break
        if wanted is None or _import_object(full) is wanted:
            return make_refnode(
                app.builder, node["refdoc"], entry.docname, entry.node_id, contnode
            )
    if "._" in target or name.startswith("_"):
        return contnode
    if "." not in target:  # written unqualified: a private protocol or alias?
        for module_name, module in list(sys.modules.items()):
            if not (module_name.startswith("cse_bridge.") and "._" in module_name):
                continue
            defined = getattr(module, name, None)
            if getattr(defined, "__module__", None) == module_name:
                return contnode
    return None


def _is_builtin_class(target: str) -> bool:
    """True if *target* names a builtin class (``bytes``, ``type``), unqualified."""
    return "." not in target and isinstance(getattr(builtins, target, None), type)


def _builtins_exactly(app: Sphinx, doctree: nodes.document) -> None:
    """
    Resolve a builtin class's name (``type`` in ``type[BaseException]``) exactly.

    An annotation's names are looked up loosely: any documented object whose name
    ends in ``.type`` (``EventItem.type``, ``StoredEvent.type``) would match the
    builtin, linking it to an attribute or failing the build as ambiguous. Looked up
    exactly, it is not found, and ``_public_reference`` leaves it to Sphinx, which
    renders it as plain text, as ``int`` and ``str``.
    """
    for node in doctree.findall(addnodes.pending_xref):
        target = node.get("reftarget", "")
        if node.get("refdomain") == "py" and _is_builtin_class(target):
            node.attributes.pop("refspecific", None)  # present at all, it searches


def _drop_private_bases(
    app: Sphinx, name: str, obj: object, options: object, bases: list[type]
) -> None:
    """Leave private base classes out of "Bases:"; their members are shown inherited."""

    def is_private(base: type) -> bool:
        module = base.__module__
        if base.__name__.startswith("_"):
            return True
        if not (module.startswith("cse_bridge.") and "._" in module):
            return False
        package = module.split("._")[0]
        return _import_object(f"{package}.{base.__name__}") is not base

    bases[:] = [base for base in bases if not is_private(base)] or [object]


_PUBLIC_PACKAGES = (
    "cse_bridge.engine",
    "cse_bridge.subscriber",
    "cse_bridge.subscriber.protocol",
    "cse_bridge.client.protocol",
    "cse_bridge.aio",
    "cse_bridge.forwarder",
    "cse_bridge.gateway",
    "cse_bridge.gateway.stores",
    "cse_bridge.schema",
    "cse_bridge.schema.logs",
)


def _reexported_docstrings(package: str) -> dict[str, list[str]]:
    """
    Return the attribute docstrings of the constants and aliases *package* re-exports.

    Autodoc reads an attribute's docstring from the module it documents, but a
    package's ``__init__`` only imports ``DEFAULT_CONNECTIONS`` from ``_options``:
    the docstring is found where the name is defined.
    """
    module = importlib.import_module(package)
    found: dict[str, list[str]] = {}
    for statement in ast.parse(inspect.getsource(module)).body:
        if not (isinstance(statement, ast.ImportFrom) and statement.level):
            continue
        source = importlib.util.resolve_name(
            "." * statement.level + (statement.module or ""), module.__package__
        )
        attribute_docs = ModuleAnalyzer.for_module(source).find_attr_docs()
        for alias in statement.names:
            lines = attribute_docs.get(("", alias.name))
            if lines:
                found[alias.asname or alias.name] = list(lines)
    return found


_original_analyze = ModuleAnalyzer.analyze


def _analyze_with_reexports(self: ModuleAnalyzer) -> None:
    """Analyze a module; for a public package, add its re-exports' docstrings."""
    already = self._analyzed
    _original_analyze(self)
    if not already and self.modname in _PUBLIC_PACKAGES:
        for name, lines in _reexported_docstrings(self.modname).items():
            self.attr_docs.setdefault(("", name), lines)


# Autodoc documents a module's data only when the module's source has a docstring
# for it; a package re-exporting constants needs the docstrings of their home.
ModuleAnalyzer.analyze = _analyze_with_reexports  # type: ignore[method-assign]


def setup(app: Sphinx) -> None:
    """Register the reference fixes of this project's documentation."""
    app.connect("missing-reference", _public_reference)
    app.connect("doctree-read", _builtins_exactly)
    app.connect("autodoc-process-bases", _drop_private_bases)
