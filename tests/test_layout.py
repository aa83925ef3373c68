"""The package reads by audience: the method at the bottom, tools at the top,
each layer importing only the layers below it, no tool importing another."""
import ast
import os

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "npy_tome_layer")
LAYERS = ["reduction", "io", "encoder", "st", "evaluation", "demo", "tools"]
SHARED = ("errors", "values")  # the bad-input error type and the rules of values: below every layer


def project_imports(path):
    """Dotted path (as a list, without the package name) of every module or
    name of this package that ``path`` imports."""
    package = os.path.relpath(path, PACKAGE).split(os.sep)[:-1]
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - (node.level - 1)]
            module = base + (node.module.split(".") if node.module else [])
            for alias in node.names:
                yield module if node.module else module + [alias.name]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("npy_tome_layer"):
            yield node.module.split(".")[1:]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("npy_tome_layer."):
                    yield alias.name.split(".")[1:]


def modules():
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                yield os.path.join(root, name)


def test_top_level_holds_only_the_entry_point_and_subpackages():
    entries = sorted(e for e in os.listdir(PACKAGE) if e != "__pycache__")
    assert entries == sorted(["__init__.py"] + [name + ".py" for name in SHARED] + LAYERS)


def test_each_layer_imports_only_layers_below_it_and_tools_not_each_other():
    wrong = []
    for path in modules():
        rel = os.path.relpath(path, PACKAGE).split(os.sep)
        if len(rel) == 1:
            continue  # the package's __init__ registers everything; the shared modules
            # import only each other
        layer = LAYERS.index(rel[0])
        for target in project_imports(path):
            if target[:1] and target[0] in SHARED:
                continue
            if not target or target[0] not in LAYERS or LAYERS.index(target[0]) > layer:
                wrong.append((path, target))
            elif rel[0] == target[0] == "tools" and target[1:2] != rel[1:2]:
                wrong.append((path, target))  # one tool importing another
    assert not wrong, wrong
