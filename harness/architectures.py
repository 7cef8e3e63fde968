"""From an ``architecture:`` string to a factory that builds the module.

Four forms:

* ``torchvision:NAME`` — a torchvision classification model, never with downloaded weights;
* ``timm:NAME`` — a timm model (optional extra), ``pretrained=False``;
* ``package.module:factory`` — anything importable;
* ``path/to/file.py:factory`` — a file relative to the registry.

A file is loaded as a module of its own synthetic package, one package per folder,
named after the folder's resolved path. Two kits that both ship ``model.py`` therefore
coexist in one session, relative imports (``from .layers import Block``) find the file's
siblings, and plain sibling imports (``import layers``) work while the file is being
loaded: the folder is on ``sys.path`` only during that time, and the sibling modules it
brings in are moved into the package's namespace afterwards, so another kit's
``layers.py`` is found for that kit.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import ModelError

FORMS = "'torchvision:NAME', 'timm:NAME', 'package.module:factory' or 'path/to/file.py:factory'"


def split(spec: str) -> tuple[str, str]:
    """``"module:attr"`` -> ``("module", "attr")``; the last colon separates (Windows drive letters)."""
    module, sep, attr = spec.rpartition(":")
    if not sep or not module or not attr:
        raise ModelError(f"architecture {spec!r} must look like {FORMS}")
    return module, attr


def is_file_spec(module: str) -> bool:
    return module.endswith(".py")


def _package_for(folder: Path) -> str:
    """The synthetic package of a folder (created on first use)."""
    digest = hashlib.sha1(str(folder).encode("utf-8")).hexdigest()[:16]
    name = f"_xai_harness_files_{digest}"
    if name not in sys.modules:
        package = types.ModuleType(name, f"model files of {folder}")
        package.__path__ = [str(folder)]
        package.__file__ = None
        sys.modules[name] = package
    return name


def load_file_module(path: Path) -> types.ModuleType:
    """Import a Python file under a name unique to its resolved path (cached)."""
    path = path.resolve()
    if not path.is_file():
        raise ModelError(f"architecture file not found: {path}")
    package = _package_for(path.parent)
    stem = re.sub(r"\W", "_", path.stem)
    name = f"{package}.{stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    before = set(sys.modules)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # user code: report whatever it raises, with its type
        del sys.modules[name]
        raise ModelError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(str(path.parent))
        _adopt_siblings(before, path.parent, package)
    return module


def _adopt_siblings(before: set[str], folder: Path, package: str) -> None:
    """Move modules that a file imported from its own folder under its package.

    Only top-level modules first imported during the load and living in the folder
    itself (``folder/NAME.py`` or ``folder/NAME/``) move, with their submodules: an
    installed package that happens to live below the folder (a virtual environment)
    and a package imported before stay where they are.
    """
    added = set(sys.modules) - before
    tops = {name.partition(".")[0] for name in added} - before
    for top in tops:
        origin = getattr(sys.modules.get(top), "__file__", None)
        if not origin:
            continue
        path = Path(origin).resolve()
        if path != folder / f"{top}.py" and path != folder / top / "__init__.py":
            continue
        for name in sorted(n for n in added if n == top or n.startswith(f"{top}.")):
            sys.modules[f"{package}.{name}"] = sys.modules.pop(name)


def _import(module_name: str, spec: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(f"cannot import {module_name!r} for architecture {spec!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a user module that fails while importing
        raise ModelError(
            f"importing {module_name!r} for architecture {spec!r} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _timm_factory(name: str, spec: str) -> Callable[..., Any]:
    try:
        import timm
    except ImportError:
        raise ModelError(
            f"architecture {spec!r} needs the optional package timm, which is not installed: "
            "pip install 'xai-harness[timm]'"
        ) from None
    if not timm.is_model(name):
        raise ModelError(f"timm has no model {name!r} (architecture {spec!r}); see timm.list_models()")
    return functools.partial(timm.create_model, name, pretrained=False)


def _torchvision_factory(name: str, spec: str) -> Callable[..., Any]:
    models = _import("torchvision.models", spec)
    factory = getattr(models, name, None)
    if not callable(factory):
        try:
            factory = models.get_model_builder(name)
        except ValueError:
            raise ModelError(
                f"torchvision has no model {name!r} (architecture {spec!r}); see torchvision.models.list_models()"
            ) from None
    return factory


def resolve_factory(spec: str, base_dir: Path) -> Callable[..., Any]:
    """The callable that builds the architecture (imports it; builds nothing)."""
    module_name, attr = split(spec)
    if module_name == "timm":
        return _timm_factory(attr, spec)
    if module_name == "torchvision":
        return _torchvision_factory(attr, spec)
    if is_file_spec(module_name):
        module: Any = load_file_module(base_dir / module_name)
    else:
        module = _import(module_name, spec)
    factory = getattr(module, attr, None)
    if factory is None:
        raise ModelError(f"{module_name!r} has no {attr!r} (architecture {spec!r})")
    if not callable(factory):
        raise ModelError(f"{module_name}:{attr} is a {type(factory).__name__}, not a callable (architecture {spec!r})")
    return factory


def default_args(spec: str, args: dict[str, Any], class_count: int) -> dict[str, Any]:
    """The factory's keyword arguments: torchvision and timm get ``num_classes`` from the
    class list unless ``args`` says otherwise, and torchvision never downloads weights."""
    module_name, _ = split(spec)
    out = dict(args)
    if module_name in ("torchvision", "timm"):
        out.setdefault("num_classes", class_count)
    if module_name == "torchvision":
        out.setdefault("weights", None)
    return out
