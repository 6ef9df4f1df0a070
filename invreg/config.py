"""Objects that can describe how to rebuild themselves, so checkpoints load without a config.

A class that inherits :class:`RecordsInit` remembers the arguments its constructor was called
with. :func:`to_config` turns such an object (and, recursively, its arguments) into the plain
``{"class_path": ..., "init_args": {...}}`` form the Lightning CLI reads from YAML, made only
of strings, numbers, lists and dicts, so it can be stored in a checkpoint that
``torch.load(weights_only=True)`` accepts. invreg's backbones, groups and invariance losses
record their arguments; a checkpoint that holds their description is rebuilt by
``load_from_checkpoint`` through the same code path as a CLI-written one.

>>> from invreg.models import MLP
>>> to_config(MLP([1, 8, 8], 10, hidden_widths=[32]))["class_path"]
'invreg.models.mlp.MLP'
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any

_PRIMITIVES = (str, int, float, bool, type(None))


class NotRepresentable(TypeError):
    """Raised by :func:`to_config` for a value that has no plain description."""


class RecordsInit:
    """Mixin: instances keep the arguments of the outermost constructor call in ``init_args``.

    Works through ``super().__init__`` chains: only the call that created the object (the most
    derived class's ``__init__``) is recorded, with defaults filled in. A class without an
    ``__init__`` of its own records the arguments of the constructor it inherits, so
    ``class Mine(RecordsInit, TheirNet): pass`` makes ``TheirNet`` reloadable as it is::

        >>> from torch import nn
        >>> class Mine(RecordsInit, nn.Linear):
        ...     pass
        >>> Mine(3, 2).init_args
        {'in_features': 3, 'out_features': 2, 'bias': True, 'device': None, 'dtype': None}
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # the constructor this class is built with: its own, or the one it inherits; an
        # inherited constructor that already records (a RecordsInit parent's) needs no wrapper,
        # one that does not (``class Mine(RecordsInit, TheirNet): pass``) is wrapped here
        original = cls.__dict__.get("__init__", cls.__init__)
        if "__init__" not in cls.__dict__ and getattr(original, "_records_init", False):
            return
        if original is object.__init__:
            return
        signature = inspect.signature(original)

        @functools.wraps(original)
        def __init__(self, *args: Any, **kw: Any) -> None:
            if type(self).__init__ is __init__ and "_init_args" not in self.__dict__:
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                arguments = dict(bound.arguments)
                arguments.pop(next(iter(signature.parameters)))  # self
                # object.__setattr__: nn.Module's __setattr__ needs its own __init__ first
                object.__setattr__(self, "_init_args", arguments)
            original(self, *args, **kw)

        __init__._records_init = True  # type: ignore[attr-defined]
        cls.__init__ = __init__  # type: ignore[method-assign]

    @property
    def init_args(self) -> dict[str, Any]:
        """The constructor arguments this object was built with (defaults included)."""
        return dict(self.__dict__.get("_init_args", {}))


def to_config(value: Any) -> Any:
    """A plain (YAML / ``weights_only``-safe) description of ``value``.

    Primitives pass through, sequences become lists, mappings dicts (with string keys), and a
    :class:`RecordsInit` object becomes ``{"class_path": "module.Class", "init_args": {...}}``.
    Anything else raises :class:`NotRepresentable` naming its type.
    """
    if isinstance(value, _PRIMITIVES):
        return value
    if isinstance(value, list | tuple):
        return [to_config(v) for v in value]
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise NotRepresentable(f"a mapping with non-string keys: {list(value)!r}")
        return {k: to_config(v) for k, v in value.items()}
    if isinstance(value, RecordsInit) and "_init_args" in value.__dict__:
        cls = type(value)
        init_args = {k: to_config(v) for k, v in value.init_args.items()}
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args}
    raise NotRepresentable(
        f"{type(value).__module__}.{type(value).__qualname__} records no constructor arguments"
    )


def try_config(value: Any) -> Any | None:
    """:func:`to_config`, or ``None`` when ``value`` has no plain description."""
    try:
        return to_config(value)
    except NotRepresentable:
        return None


def from_config(config: Mapping[str, Any], base: type, argument: str) -> Any:
    """Build the object a ``{"class_path": ..., "init_args": {...}}`` mapping describes.

    Nested descriptions in ``init_args`` are built first. A checkpoint must not be able to run
    arbitrary code, so only classes from invreg or from modules the process has already
    imported are resolved, and only subclasses of :class:`RecordsInit` (what :func:`to_config`
    describes) that are also subclasses of ``base`` are built; ``argument`` names the
    parameter in error messages.
    """
    if set(config) - {"class_path", "init_args"} or "class_path" not in config:
        raise ValueError(
            f"{argument}: expected a mapping with 'class_path' and optional 'init_args', got "
            f"keys {sorted(config)}"
        )
    cls = _import_class(str(config["class_path"]), argument)
    if not (isinstance(cls, type) and issubclass(cls, base) and issubclass(cls, RecordsInit)):
        raise TypeError(
            f"{argument}: {config['class_path']!r} is not a {base.__name__} that records its "
            f"constructor arguments (invreg.config.RecordsInit)"
        )
    init_args = {k: _build_nested(v, argument) for k, v in (config.get("init_args") or {}).items()}
    return cls(**init_args)


def build(value: Any, base: type, argument: str) -> Any:
    """``value`` itself, or the object its ``class_path``/``init_args`` description stands for
    (:func:`from_config`): constructors that take objects accept either."""
    if isinstance(value, Mapping):
        return from_config(value, base, argument)
    return value


def _build_nested(value: Any, argument: str) -> Any:
    if isinstance(value, Mapping) and "class_path" in value:
        return from_config(value, object, argument)
    if isinstance(value, list):
        return [_build_nested(v, argument) for v in value]
    return value


def _import_class(class_path: str, argument: str) -> type:
    import importlib
    import sys

    module_name, _, name = class_path.rpartition(".")
    if not module_name or not (module_name.split(".")[0] == "invreg" or module_name in sys.modules):
        raise ValueError(
            f"{argument}: refusing to import {class_path!r}: only invreg classes and classes "
            f"of already imported modules are rebuilt; import its module first"
        )
    module = importlib.import_module(module_name)
    try:
        return getattr(module, name)
    except AttributeError:
        raise ValueError(f"{argument}: {module_name} has no {name!r}") from None
