"""Which class implements which regularizer spec, found by each implementation's ``spec_class``.

Every module of ``regcore/regularizers/`` is imported (pkgutil) and each ``Regularizer`` subclass
that declares its own ``spec_class`` there is registered for it: adding a regularizer touches its
spec class, its implementation file and its test, no table. Discovery rather than a hand list of
46 imports, because the list could only repeat what each implementation already says; the
registry test checks both ways that every spec class has exactly one implementation.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Sequence

import regcore.regularizers as package
from regcore import regularizer_specs as s
from regcore.regularizers.base import Regularizer, TaskInfo


def _implementations() -> list[type[Regularizer]]:
    """Every Regularizer subclass that declares its own spec_class, module by module."""
    found: list[type[Regularizer]] = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Regularizer)
                and value.__module__ == module.__name__
                and "spec_class" in vars(value)
            ):
                found.append(value)
    return found


def _registry() -> dict[type[s.RegularizerSpec], type[Regularizer]]:
    table: dict[type[s.RegularizerSpec], type[Regularizer]] = {}
    for impl in _implementations():
        other = table.setdefault(impl.spec_class, impl)
        if other is not impl:
            raise RuntimeError(
                f"{impl.spec_class.__name__} is implemented twice: {other.__qualname__} and "
                f"{impl.__qualname__}"
            )
    return dict(sorted(table.items(), key=lambda kv: s.ALL.index(kv[0])))


#: spec class → implementation, in catalog order
REGISTRY: dict[type[s.RegularizerSpec], type[Regularizer]] = _registry()


def build_regularizers(specs: Sequence[s.RegularizerSpec], task: TaskInfo) -> list[Regularizer]:
    missing = [type(sp).__name__ for sp in specs if type(sp) not in REGISTRY]
    if missing:
        raise NotImplementedError(f"no implementation registered for {', '.join(missing)}")
    return [REGISTRY[type(sp)](sp, task) for sp in specs]
