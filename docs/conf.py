"""Sphinx configuration of the airflow-provider-revox documentation (``make docs``)."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from typing import Any

import pydantic
from sphinx import addnodes
from sphinx.ext.napoleon.docstring import GoogleDocstring
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.typing import stringify_annotation

import airflow_provider_revox

project = "airflow-provider-revox"
author = "airflow-provider-revox contributors"
release = airflow_provider_revox.__version__
version = release

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]

html_theme = "furo"
html_title = f"airflow-provider-revox {release}"

# Headings become link targets, so a guide can point at a section of another page by its slug
# and the nitpicky build checks that it exists.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "groupwise"
autodoc_typehints = "signature"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# An "Attributes:" section becomes a field list: a property of the same name keeps its own entry.
napoleon_use_ivar = True

#: The public modules, each with one reference page. They re-export names defined in private
#: modules; autodoc documents what their ``__all__`` lists.
PUBLIC_MODULES = [
    "airflow_provider_revox.hooks.revox",
    "airflow_provider_revox.sensors.revox",
    "airflow_provider_revox.triggers.revox",
    "airflow_provider_revox.operators.revox",
    "airflow_provider_revox.exceptions",
    "airflow_provider_revox.export",
    "airflow_provider_revox.testing",
]


def _materialize_lazy_names() -> None:
    # ``airflow_provider_revox.testing`` imports its names on first use (module __getattr__), so
    # they are not in the module's namespace, where autodoc looks for members. Load them now.
    testing = importlib.import_module("airflow_provider_revox.testing")
    for name in testing.__all__:
        setattr(testing, name, getattr(testing, name))


_materialize_lazy_names()


def _public_homes() -> dict[str, str]:
    homes: dict[str, str] = {}
    for module in PUBLIC_MODULES:
        for name in importlib.import_module(module).__all__:
            homes[name] = f"{module}.{name}"
    return homes


PUBLIC_HOMES = _public_homes()


def _inheritance_stops() -> str:
    # A public class documents the members it inherits from private bases (RevoxHook's endpoints
    # live in private mixins), but not those of another package's classes (BaseOperator,
    # pydantic's BaseModel) nor those of a public base, which has its own entry.
    stops = {"object"}
    for home in PUBLIC_HOMES.values():
        module, _, name = home.rpartition(".")
        obj = getattr(importlib.import_module(module), name)
        if not isinstance(obj, type):
            continue
        stops.add(name)
        stops.update(
            c.__name__ for c in obj.__mro__ if not c.__module__.startswith(project.replace("-", "_"))
        )
    return ",".join(sorted(stops))


def _borrow_data_docs() -> None:
    # A constant's documentation is its ``#:`` comment, which autodoc reads from the source of the
    # module it documents. A public module only imports its constants, so give its analyzer the
    # comments of the module each one is imported from.
    for module in PUBLIC_MODULES:
        public = importlib.import_module(module)
        analyzer = ModuleAnalyzer.for_module(module)
        analyzer.analyze()
        tree = ast.parse(inspect.getsource(public))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or node.module is None:
                continue
            for alias in node.names:
                name = alias.asname or alias.name
                if name not in public.__all__ or ("", name) in analyzer.attr_docs:
                    continue
                source = ModuleAnalyzer.for_module(node.module)
                source.analyze()
                if ("", alias.name) in source.attr_docs:
                    analyzer.attr_docs["", name] = source.attr_docs["", alias.name]


_borrow_data_docs()

autodoc_default_options = {"members": True, "inherited-members": _inheritance_stops()}


def _attribute_docstring(self: GoogleDocstring) -> list[str]:
    # Napoleon reads "words: more words" on an attribute's first line as "type: description".
    # Here attribute types are annotations, and a docstring's first line is prose that may hold a
    # colon, so the whole docstring is the description.
    lines = [self._lines.next(), *self._dedent(self._consume_to_end())]
    return self._format_field("", "", self.__class__(lines, self._config).lines())


GoogleDocstring._parse_attribute_docstring = _attribute_docstring  # type: ignore[method-assign]

# Types of other packages, named in signatures and docstrings. Their documentation is not
# reachable from this build (no network), so references to them are not checked. Nothing of
# this package is ignored: a private name is resolved to its public name below, or it fails.
nitpick_ignore_regex = [
    (
        "py:.*",
        r"(airflow|pydantic|pydantic_core|httpx|pendulum|tenacity|pyarrow|pytest|starlette|uvicorn)(\..*)?",
    ),
    ("py:.*", r"(datetime|collections|typing|typing_extensions|pathlib|types|asyncio|enum|concurrent)\..*"),
    ("py:.*", r"(random|socket|threading)\..*"),
]
# Airflow types that the provider imports only for type checking, so signatures name them bare.
nitpick_ignore = [
    ("py:class", name)
    for name in (
        "BaseOperator",
        "Context",
        "ObjectStoragePath",
        "OperatorLineage",
        "TaskInstanceKey",
        "PydanticUndefined",
    )
]


def _private_class_names() -> frozenset[str]:
    names: set[str] = set()
    for package in ("airflow_provider_revox._internal", "airflow_provider_revox._simulator"):
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
            module = importlib.import_module(info.name)
            names.update(
                name
                for name, value in vars(module).items()
                if isinstance(value, type) and value.__module__ == info.name and name not in PUBLIC_HOMES
            )
    return frozenset(names)


#: Classes of private modules that no public module exports.
PRIVATE_CLASSES = _private_class_names()


def _public_name(target: str) -> str | None:
    """The public name of the object at a private dotted path, if a public module exports it."""
    module, _, name = target.rpartition(".")
    public = PUBLIC_HOMES.get(name)
    if public is None:
        return None
    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None
    # The same object, not merely the same name (the simulator has a CallSearch of its own).
    public_module, _, _ = public.rpartition(".")
    return public if getattr(importlib.import_module(public_module), name) is obj else None


def _in_signature(node: Any) -> bool:
    parent = node.parent
    while parent is not None:
        if isinstance(parent, addnodes.desc_signature):
            return True
        parent = parent.parent
    return False


def _resolve_private(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve a reference to a private module's name to its public, documented name.

    Signatures name a type where it is defined (``airflow_provider_revox._internal...``); the
    reader knows it by the public module that re-exports it. A private type that no public module
    exports is shown by name, unlinked, in a signature. A docstring that points at a private name
    is not resolved: the build fails, and the docstring is to name a public one.
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    if target in PRIVATE_CLASSES and _in_signature(node):
        # A type imported only for type checking: the signature names it bare.
        return contnode
    if not re.match(r"airflow_provider_revox\.(_internal|_simulator)\.", target):
        return None
    public = _public_name(target)
    if public is not None:
        domain = env.domains["py"]
        return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], public, node, contnode)
    if _in_signature(node):
        return contnode
    return None


def _signature(
    app: Any,
    what: str,
    name: str,
    obj: Any,
    options: Any,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str | None, str | None] | None:
    if what == "class" and isinstance(obj, type) and issubclass(obj, pydantic.BaseModel):
        # The models are what the hook returns, read rather than built; their fields are listed
        # as attributes, and pydantic's generated signature (validators, factories) helps nobody.
        return "", return_annotation
    if signature and "<factory>" in signature:
        # A dataclass field with a default factory shows as ``<factory>``, which is not Python:
        # Sphinx would then fail to parse the whole signature.
        return signature.replace("<factory>", "..."), return_annotation
    return None


def _skip_pydantic_machinery(
    app: Any, what: str, name: str, obj: Any, skip: bool, options: Any
) -> bool | None:
    # pydantic's own methods and settings (model_config, model_post_init, ...) are not the
    # provider's API: pydantic documents them.
    if what == "class" and (name == "model_config" or name in vars(pydantic.BaseModel)):
        return True
    return None


def _model_fields(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    # The models' fields carry no docstrings, and the generated signature is dropped (above):
    # list them, with their types, after the class docstring.
    if what != "class" or not (isinstance(obj, type) and issubclass(obj, pydantic.BaseModel)):
        return
    if not obj.model_fields:
        return
    lines.extend(["", "Fields (any other field the API sends is kept too):", ""])
    for field_name, field in obj.model_fields.items():
        # Bare names: a private module's path means nothing to the reader.
        shown = re.sub(r"~?\b(?:\w+\.)+(\w+)", r"\1", stringify_annotation(field.annotation, "smart"))
        lines.append(f"* ``{field_name}``: ``{shown}``")
    lines.append("")


def setup(app: Any) -> None:
    app.connect("missing-reference", _resolve_private)
    app.connect("autodoc-process-signature", _signature)
    app.connect("autodoc-skip-member", _skip_pydantic_machinery)
    app.connect("autodoc-process-docstring", _model_fields)
