"""The code, scripts, tests and notebooks pass the linter (ruff, configured in pyproject.toml)."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_passes_on_code_and_notebooks():
  proc = subprocess.run([sys.executable, '-m', 'ruff', 'check', 'jaxae', 'scripts', 'tests', 'notebooks'], cwd=ROOT,
                        capture_output=True, text=True)
  assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_library_type_checks_and_every_family_module_is_a_family(tmp_path):
  """mypy over jaxae/ (pyproject.toml says how strict, and why), with a file that assigns every family module
  (`models.names()`, so a new family is checked without an edit) to a `jaxae.models.Family`."""
  from jaxae import models

  names = models.names()
  check = tmp_path / 'families.py'
  check.write_text(f"from jaxae.models import Family, {', '.join(names)}\n\n"
                   + ''.join(f'_{name}: Family = {name}\n' for name in names))
  proc = subprocess.run([sys.executable, '-m', 'mypy', '--no-incremental', 'jaxae', str(check)], cwd=ROOT,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]


def _jaxae_imports(path: Path, package: str) -> set[str]:
  """The jaxae modules `path` imports anywhere in it (also inside functions): `from jaxae.x import y` counts
  as `jaxae.x.y` when that is a module, else as `jaxae.x`."""
  out = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      out |= {a.name for a in node.names if a.name.startswith('jaxae')}
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('jaxae'):
      for a in node.names:
        full = f'{node.module}.{a.name}'
        out.add(full if (ROOT / (full.replace('.', '/') + '.py')).exists() or
                (ROOT / full.replace('.', '/')).is_dir() else node.module)
  return out - {package}


MAX_LINES = 45  # a library function's code, its docstring aside: what a reader takes in at once (a screen)


def code_lines(fn: ast.FunctionDef) -> int:
  """The lines of a function from its first statement after the docstring to its end."""
  body = fn.body
  documented = len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and \
      isinstance(body[0].value.value, str)
  return fn.end_lineno - body[1 if documented else 0].lineno + 1


def test_library_functions_are_short_and_modules_import_without_cycles():
  """No library function past `MAX_LINES` lines of code (ruff checks complexity, branches and statements: see
  pyproject.toml), and the module import graph (every import, also those inside functions) has no cycle: a
  reader can follow the layers one way. Files are split by meaning, with no limit of their own."""
  graph, long = {}, []
  for path in sorted((ROOT / 'jaxae').rglob('*.py')):
    tree = ast.parse(path.read_text())
    long += [f'{path.relative_to(ROOT)}:{n.name} ({code_lines(n)} lines)' for n in ast.walk(tree)
             if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and code_lines(n) > MAX_LINES]
    name = '.'.join(path.relative_to(ROOT).with_suffix('').parts).removesuffix('.__init__')
    graph[name] = _jaxae_imports(path, name.rsplit('.', 1)[0] if path.name == '__init__.py' else '')
  assert long == []
  graph = {m: {d for d in deps if d in graph and d != m and not m.startswith(d + '.')} for m, deps in graph.items()}
  done, path = set(), []

  def visit(m):
    assert m not in path, f"import cycle: {' -> '.join(path[path.index(m):] + [m])}"
    if m in done:
      return
    path.append(m)
    for d in sorted(graph[m]):
      visit(d)
    path.pop()
    done.add(m)

  for m in graph:
    visit(m)
