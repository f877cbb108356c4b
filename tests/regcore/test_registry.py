"""The registry: every spec in the union has an implementation whose spec_class matches."""

from __future__ import annotations

import pytest

from regcore.regularizers.base import Regularizer, TaskInfo
from regcore.regularizers.registry import REGISTRY, build_regularizers
from regcore.spec import regularizer_spec_classes


def test_every_regularizer_spec_has_an_implementation():
    missing = [cls.__name__ for cls in regularizer_spec_classes() if cls not in REGISTRY]
    assert not missing, f"no implementation registered for {missing}"


@pytest.mark.parametrize("spec_class", regularizer_spec_classes(), ids=lambda c: c.__name__)
def test_each_implementation_declares_the_spec_it_is_registered_for(spec_class):
    impl = REGISTRY.get(spec_class)
    if impl is None:
        pytest.fail(f"{spec_class.__name__} has no implementation")
    assert issubclass(impl, Regularizer)
    assert impl.spec_class is spec_class


def test_the_registry_holds_nothing_outside_the_spec_union():
    assert set(REGISTRY) <= set(regularizer_spec_classes())


def test_building_an_unregistered_spec_fails_naming_it():
    from regcore.regularizer_specs import RegularizerSpec

    class Unknown(RegularizerSpec):
        name: str = "unknown"

    task = TaskInfo("classification", 10, 40, None, 1, 1, device=None)  # type: ignore[arg-type]
    with pytest.raises(NotImplementedError, match="Unknown"):
        build_regularizers([Unknown()], task)


def test_every_implementation_is_registered_once_and_lives_in_its_spec_name_s_module():
    impls = list(REGISTRY.values())
    assert len(set(impls)) == len(impls) == len(regularizer_spec_classes())
    for spec_class, impl in REGISTRY.items():
        name = spec_class.model_fields["name"].default
        assert impl.__module__ == f"regcore.regularizers.{name}", impl.__qualname__
    assert list(REGISTRY) == regularizer_spec_classes()  # catalog order
