"""The one registry mechanism behind reducers, tasks and backbone families (vidtldr/registry.py)."""

import sys

import pytest

from vidtldr.registry import import_plugins, registrar


def make_class(module: str, qualname: str) -> type:
    cls = type(qualname, (), {})
    cls.__module__, cls.__qualname__ = module, qualname
    return cls


def test_a_checked_class_is_stored_under_its_name():
    registry, checked = {}, []
    cls = make_class("pkg.a", "A")
    assert registrar(registry, "widget", "a", checked.append)(cls) is cls
    assert registry == {"a": cls} and cls.name == "a" and checked == [cls]


def test_a_failing_check_registers_nothing():
    registry = {}

    def refuse(cls):
        raise TypeError(f"{cls.__qualname__} is not a widget")

    with pytest.raises(TypeError, match="^A is not a widget$"):
        registrar(registry, "widget", "a", refuse)(make_class("pkg.a", "A"))
    assert registry == {}


def test_a_taken_name_is_refused_naming_both_classes_but_the_same_class_may_register_again():
    registry = {}
    registrar(registry, "widget", "a", lambda cls: None)(make_class("pkg.a", "A"))
    # the same module imported a second time (python -m) defines an equal class: accepted
    again = make_class("pkg.a", "A")
    registrar(registry, "widget", "a", lambda cls: None)(again)
    assert registry["a"] is again
    with pytest.raises(TypeError) as err:
        registrar(registry, "widget", "a", lambda cls: None)(make_class("pkg.b", "B"))
    assert str(err.value) == "widget name 'a' is taken by pkg.a.A; pkg.b.B needs another name"
    assert registry["a"] is again


def test_import_plugins_imports_modules_and_with_recursive_subpackages(tmp_path, monkeypatch):
    root = tmp_path / "plugpkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "one.py").write_text("LOADED = True\n")
    (root / "sub" / "__init__.py").write_text("")
    (root / "sub" / "two.py").write_text("LOADED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("plugpkg")]:
        monkeypatch.delitem(sys.modules, name)
    import_plugins("plugpkg")
    assert "plugpkg.one" in sys.modules and "plugpkg.sub.two" not in sys.modules
    import_plugins("plugpkg", recursive=True)
    assert "plugpkg.sub.two" in sys.modules
    (root / "broken.py").write_text("import no_such_module_anywhere\n")
    with pytest.raises(ModuleNotFoundError):
        import_plugins("plugpkg")
    for name in [m for m in sys.modules if m.startswith("plugpkg")]:
        monkeypatch.delitem(sys.modules, name)
