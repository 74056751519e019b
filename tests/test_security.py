"""Security rules of the package sources (issue 16, docs/serving.md "Security"): no pickle, no unsafe YAML, no
shell, no eval / exec; servers bind 127.0.0.1 by default; file names derived from image ids are safe
(``zoo.data.sample.safe_name``). The source rules are read from the syntax tree (comments and strings that merely
mention a word do not count)."""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = [p for p in ("zoo", "histozoo", "serving", "pipelines", "annotate") if (REPO / p).is_dir()]
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "cloudpickle", "dill", "shelve", "marshal", "jsonpickle"}
YAML_UNSAFE = {"unsafe_load", "unsafe_load_all", "full_load", "full_load_all"}
SAFE_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}


def _sources():
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            if "__pycache__" not in path.parts:
                yield path


def _dotted(node) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _loader_is_safe(path: pathlib.Path, loader: ast.expr) -> bool:
    """``Loader=`` of a yaml.load call: a safe loader by name, or a module-level function of the same module that
    returns a subclass of yaml.SafeLoader (checked by calling it)."""
    import yaml

    name = _dotted(loader.func if isinstance(loader, ast.Call) else loader)
    if name.split(".")[-1] in SAFE_LOADERS:
        return True
    if isinstance(loader, ast.Call) and "." not in name and not loader.args and not loader.keywords:
        obj = getattr(importlib.import_module(_module_name(path)), name, None)
        made = obj() if callable(obj) else None
        return isinstance(made, type) and issubclass(made, yaml.SafeLoader)
    return False


def _violations(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
    out = []
    for node in ast.walk(tree):
        where = f"{rel}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            out += [f"{where}: imports {a.name}" for a in node.names if a.name.split(".")[0] in PICKLE_MODULES]
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] in PICKLE_MODULES:
                out.append(f"{where}: imports from {node.module}")
        elif isinstance(node, ast.Attribute) and "pickle" in node.attr.lower():
            out.append(f"{where}: uses .{node.attr} (pickle)")
        elif isinstance(node, ast.Call):
            fn = _dotted(node.func)
            kw = {k.arg: k.value for k in node.keywords if k.arg}
            if fn in ("eval", "exec"):
                out.append(f"{where}: calls {fn}()")
            if fn in ("os.system", "os.popen") or fn.startswith("os.spawn"):
                out.append(f"{where}: calls {fn}() (a shell)")
            if isinstance(kw.get("shell"), ast.Constant) and kw["shell"].value is True:
                out.append(f"{where}: shell=True")
            if isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is True:
                out.append(f"{where}: allow_pickle=True")
            if isinstance(kw.get("safe_mode"), ast.Constant) and kw["safe_mode"].value is False:
                out.append(f"{where}: safe_mode=False (Keras deserialises arbitrary code)")
            if fn.startswith("yaml.") and fn.split(".")[-1] in YAML_UNSAFE:
                out.append(f"{where}: {fn}() (unsafe YAML)")
            if fn in ("yaml.load", "yaml.load_all"):
                loader = kw.get("Loader", node.args[1] if len(node.args) > 1 else None)
                if loader is None or not _loader_is_safe(path, loader):
                    out.append(f"{where}: {fn}() without a SafeLoader")
    return out


def test_package_sources_have_no_pickle_unsafe_yaml_shell_or_eval():
    files = list(_sources())
    assert len(files) > 20 and "zoo" in PACKAGES and "serving" in PACKAGES
    found = [v for f in files for v in _violations(f)]
    assert found == [], "\n".join(found)


def test_the_checker_catches_each_rule(tmp_path):
    """The rules above really fire (a checker that finds nothing proves nothing)."""
    bad = tmp_path / "probe.py"
    src = ("import pickle\nimport subprocess, yaml\nfrom cloudpickle import dumps\n"
           "subprocess.run('ls', shell=True)\nyaml.load(open('x'))\nyaml.load(open('x'), Loader=yaml.Loader)\n"
           "yaml.unsafe_load('a')\neval('1')\nexec('x=1')\nimport numpy as np\nnp.load('x', allow_pickle=True)\n"
           "import pandas as pd\npd.read_pickle('x')\nimport os\nos.system('ls')\n"
           "yaml.safe_load('a')\nyaml.load('a', Loader=yaml.SafeLoader)\nm.eval()\nnp.load('x', allow_pickle=False)\n")
    bad.write_text(src)
    found = _violations(bad)
    kinds = " ".join(found)
    for text in ("imports pickle", "imports from cloudpickle", "shell=True", "yaml.load() without a SafeLoader",
                 "yaml.unsafe_load()", "calls eval()", "calls exec()", "allow_pickle=True", ".read_pickle",
                 "calls os.system()"):
        assert text in kinds, text
    assert len(found) == 11, found  # and nothing for the safe lines at the end


def test_servers_bind_loopback_by_default():
    from serving.local_server import LocalModelServer

    assert inspect.signature(LocalModelServer).parameters["host"].default == "127.0.0.1"


@pytest.mark.parametrize("image_id,want", [
    ("../evil", "evil"),
    ("a/b/c.png", "a__b__c.png"),
    ("images/train/p09_t0.png", "images__train__p09_t0.png"),
    ("..\\..\\windows\\evil", "windows__evil"),
    ("/etc/passwd", "etc__passwd"),
    (".hidden", "hidden"),
    ("a/../../b", "a__b"),
    ("..", "_"),
    ("", "_"),
    ("p09_t0", "p09_t0"),
])
def test_safe_name(image_id, want, tmp_path):
    from zoo.data.sample import safe_name

    got = safe_name(image_id)
    assert got == want and safe_name(image_id) == got  # stable
    assert "/" not in got and "\\" not in got and ".." not in got and not got.startswith(".")
    target = (tmp_path / f"{got}_overlay.png").resolve()
    assert target.parent == tmp_path.resolve()  # joined onto a folder, it stays in the folder


def test_safe_name_keeps_long_ids_distinct_and_short():
    from zoo.data.sample import safe_name

    a, b = safe_name("x" * 300 + "a"), safe_name("x" * 300 + "b")
    assert a != b and len(a.encode()) <= 200 and len(b.encode()) <= 200
    assert len(safe_name("é" * 300).encode()) <= 200
    assert os.sep not in safe_name("a" + os.sep + "b")
