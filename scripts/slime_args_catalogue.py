"""The argument catalogue of a slime checkout, read statically (Python `ast`, nothing imported or run).

    python3 slime_args_catalogue.py --slime DIR [--megatron DIR] [--sglang DIR] [--out FILE]

Reads the `add_argument(...)` calls of slime's parsers (slime/utils/arguments.py and the other files listed in
SLIME_FILES), Megatron's (megatron/training/arguments.py, with the flags Megatron builds from config dataclasses
through ArgumentGroupFactory) and, when an SGLang source tree is given, SGLang's server arguments as slime exposes
them (prefixed `--sglang-`). A checkout without those files (the tiny-local stand-in) is read through its train.py.
Prints one JSON object: where each source came from (git commit when the directory is a git checkout, sha256 of
every file read) and one entry per option string: dest, type, choices, nargs, action, default (as source text).

keel runs it offline to make the catalogue it ships, and on a cluster's head node (the script's text is sent as
`python3 -c`) to ask the slime that will run. Standard library only; Python 3.8+.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

SLIME_FILES = [
    'slime/utils/arguments.py',
    'slime/backends/sglang_utils/arguments.py',
    'slime/backends/megatron_utils/arguments.py',
]
STANDIN_FILES = ['train.py', 'slime_contract.py']
MEGATRON_FILES = ['megatron/training/arguments.py']
SGLANG_FILES = ['sglang/srt/server_args.py', 'python/sglang/srt/server_args.py']
# slime adds SGLang's server arguments with this prefix, except the ones it sets itself
SGLANG_SKIPPED = {
    'model_path', 'config', 'trust_remote_code', 'random_seed', 'enable_memory_saver', 'tp_size', 'port', 'nnodes',
    'node_rank', 'dist_init_addr', 'gpu_id_step', 'base_gpu_id', 'nccl_port', 'skip_server_warmup',
    'enable_return_routed_experts',
}


def literal(node: Optional[ast.AST]) -> Any:
    if node is None:
        return None
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return None


def source_text(node: Optional[ast.AST]) -> Optional[str]:
    return None if node is None else ast.unparse(node) if hasattr(ast, 'unparse') else ast.dump(node)


def type_name(node: Optional[ast.AST]) -> Optional[str]:
    if node is None:
        return None
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return 'callable'


def git_commit(directory: Path) -> Optional[str]:
    try:
        out = subprocess.run(['git', '-C', str(directory), 'rev-parse', 'HEAD'], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


class Catalogue:
    def __init__(self) -> None:
        self.options: Dict[str, Dict[str, Any]] = {}
        self.unresolved: List[str] = []

    def add(self, flags: List[str], src: str, **fields: Any) -> None:
        dest = fields.get('dest') or flags[0].lstrip('-').replace('-', '_')
        entry = {'src': src, 'dest': dest, **{k: v for k, v in fields.items() if k != 'dest'}}
        for flag in flags:
            self.options[flag] = entry


def add_argument_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == 'add_argument':
            yield node


def read_add_argument(call: ast.Call, cat: Catalogue, src: str, where: str, prefix: str = '', skip_first=False) -> None:
    args = call.args[1:] if skip_first else call.args
    flags = [a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    if len(flags) != len(args) or not flags:
        cat.unresolved.append(f'{where}:{call.lineno}')
        return
    if not flags[0].startswith('-'):
        return  # a positional argument
    kw = {k.arg: k.value for k in call.keywords if k.arg}
    action = literal(kw.get('action'))
    if action is None and 'action' in kw:
        action = type_name(kw['action'])
    nargs = literal(kw.get('nargs'))
    if action in ('store_true', 'store_false', 'store_const', 'count', 'help', 'version', 'BooleanOptionalAction'):
        nargs = 0
    if action == 'BooleanOptionalAction':  # --x and --no-x
        flags = flags + ['--no-' + f[2:] for f in flags if f.startswith('--')]
    choices = literal(kw.get('choices'))
    if 'choices' in kw and choices is None:
        choices = 'dynamic'
    if prefix:
        flags = [f'--{prefix}{f[2:]}' for f in flags if f.startswith('--')]
    cat.add(
        flags,
        src,
        dest=literal(kw.get('dest')),
        type=type_name(kw.get('type')) if 'type' in kw else ('str' if nargs != 0 else None),
        choices=list(choices) if isinstance(choices, (list, tuple)) else choices,
        nargs=nargs,
        action=action or 'store',
        default=source_text(kw.get('default')),
    )


# --- Megatron's flags built from config dataclasses (ArgumentGroupFactory) ------------------------------------


def index_classes(root: Path) -> Dict[str, ast.ClassDef]:
    classes: Dict[str, ast.ClassDef] = {}
    for path in sorted((root / 'megatron').rglob('*.py')):
        try:
            tree = ast.parse(path.read_text(encoding='utf-8'))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                classes.setdefault(node.name, node)
    return classes


def annotation_kwargs(ann: ast.AST, classes: Dict[str, ast.ClassDef]) -> Optional[Dict[str, Any]]:
    if isinstance(ann, ast.Constant) and isinstance(ann.value, str):
        try:
            ann = ast.parse(ann.value, mode='eval').body
        except SyntaxError:
            return None
    if isinstance(ann, ast.Name):
        if ann.id in ('int', 'float', 'str', 'bool'):
            return {'type': ann.id}
        enum = classes.get(ann.id)
        if enum is not None and any(type_name(b) in ('Enum', 'IntEnum', 'StrEnum') for b in enum.bases):
            members = [t.id for s in enum.body if isinstance(s, ast.Assign) for t in s.targets if isinstance(t, ast.Name)]
            return {'type': ann.id, 'choices': members}
        return None
    if isinstance(ann, ast.BinOp) and isinstance(ann.op, ast.BitOr):  # X | None
        sides = [s for s in (ann.left, ann.right) if not (isinstance(s, ast.Constant) and s.value is None)]
        return annotation_kwargs(sides[0], classes) if len(sides) == 1 else None
    if isinstance(ann, ast.Subscript):
        origin = type_name(ann.value)
        inner = ann.slice.value if isinstance(ann.slice, ast.Index) else ann.slice  # type: ignore[attr-defined]
        if origin == 'Optional':
            return annotation_kwargs(inner, classes)
        if origin in ('list', 'List'):
            kwargs = annotation_kwargs(inner, classes)
            return None if kwargs is None else {**kwargs, 'nargs': '+'}
        if origin == 'Literal':
            values = literal(inner)
            values = list(values) if isinstance(values, tuple) else [values]
            return {'type': type(values[0]).__name__, 'choices': values}
        if origin == 'Union':
            parts = [p for p in getattr(inner, 'elts', []) if not (isinstance(p, ast.Constant) and p.value is None)]
            return annotation_kwargs(parts[0], classes) if len(parts) == 1 else None
    return None


def dataclass_fields(name: str, classes: Dict[str, ast.ClassDef], seen: Optional[set] = None) -> List[ast.AnnAssign]:
    cls = classes.get(name)
    seen = seen or set()
    if cls is None or name in seen:
        return []
    seen.add(name)
    fields: List[ast.AnnAssign] = []
    for base in cls.bases:  # dataclass fields: the bases' first, in order
        fields.extend(dataclass_fields(type_name(base) or '', classes, seen))
    own = [s for s in cls.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)]
    names = {s.target.id for s in own}  # type: ignore[union-attr]
    fields = [f for f in fields if f.target.id not in names]  # type: ignore[union-attr]
    return fields + [s for s in own if 'ClassVar' not in ast.dump(s.annotation)]


def field_call(value: Optional[ast.AST]) -> Optional[ast.Call]:
    if isinstance(value, ast.Call) and type_name(value.func) == 'field':
        return value
    return None


def read_factory(call: ast.Call, func: Optional[ast.FunctionDef], classes, cat: Catalogue, where: str) -> None:
    cls_name = type_name(call.args[0]) if call.args else None
    exclude: List[str] = []
    for k in call.keywords:
        if k.arg != 'exclude':
            continue
        exclude = literal(k.value) or []
        if isinstance(k.value, ast.Name) and func is not None:  # exclude = [...] earlier in the same function
            for stmt in ast.walk(func):
                if isinstance(stmt, ast.Assign) and any(getattr(t, 'id', None) == k.value.id for t in stmt.targets):
                    exclude = literal(stmt.value) or exclude
    if not cls_name or cls_name not in classes:
        cat.unresolved.append(f'{where}:{call.lineno} ({cls_name})')
        return
    for f in dataclass_fields(cls_name, classes):
        name = f.target.id  # type: ignore[union-attr]
        fc = field_call(f.value)
        kw = {k.arg: k.value for k in fc.keywords if k.arg} if fc else {}
        if name in exclude or literal(kw.get('init')) is False:
            continue
        default = kw.get('default') if fc else f.value
        meta = literal(kw.get('metadata')) if 'metadata' in kw else None
        argparse_meta = meta.get('argparse_meta') if isinstance(meta, dict) else None
        if 'metadata' in kw and meta is None and 'argparse_meta' in ast.dump(kw['metadata']):
            argparse_meta = {}  # metadata with names or types we cannot evaluate statically
            for node in ast.walk(kw['metadata']):
                if isinstance(node, ast.Dict):
                    for k2, v2 in zip(node.keys, node.values):
                        key = literal(k2)
                        if key in ('arg_names', 'nargs', 'choices', 'dest'):
                            argparse_meta[key] = literal(v2)
                        elif key == 'type':
                            argparse_meta['type'] = type_name(v2)
        inferred = annotation_kwargs(f.annotation, classes) or {'type': 'unknown'}
        flags = ['--' + name.replace('_', '-')]
        action = 'store'
        nargs = inferred.get('nargs')
        if inferred.get('type') == 'bool':
            store_true = isinstance(default, ast.Constant) and default.value is False
            action = 'store_true' if store_true else 'store_false'
            nargs = 0
            if not store_true:
                flags = ['--no-' + name.replace('_', '-'), '--disable-' + name.replace('_', '-')]
        fields = {
            'dest': name,
            'type': None if nargs == 0 else inferred.get('type'),
            'choices': inferred.get('choices'),
            'nargs': nargs,
            'action': action,
            'default': source_text(default),
        }
        if argparse_meta:
            flags = [n for n in (argparse_meta.get('arg_names') or flags) if isinstance(n, str)] or flags
            for key in ('type', 'nargs', 'choices', 'dest'):
                if key in argparse_meta and argparse_meta[key] is not None:
                    value = argparse_meta[key]
                    fields[key] = type_name(value) if isinstance(value, ast.AST) else value
            if isinstance(fields['choices'], tuple):
                fields['choices'] = list(fields['choices'])
        cat.add(flags, 'megatron', **fields)


def flag_helpers(tree: ast.AST, known: Optional[Dict[str, ast.Call]] = None) -> Dict[str, ast.Call]:
    """Functions like `def _flag(parser, *names): parser.add_argument(*names, action='store_true')`, and their aliases."""
    helpers: Dict[str, ast.Call] = dict(known or {})
    for func in ast.walk(tree):
        if isinstance(func, ast.FunctionDef) and func.args.vararg is not None:
            for call in add_argument_calls(func):
                if len(call.args) == 1 and isinstance(call.args[0], ast.Starred):
                    helpers[func.name] = call
    for node in ast.walk(tree):  # flag = sc._flag
        if isinstance(node, ast.Assign) and isinstance(node.value, (ast.Name, ast.Attribute)):
            target = type_name(node.value)
            if target in helpers:
                for t in node.targets:
                    if isinstance(t, ast.Name):
                        helpers[t.id] = helpers[target]
    return helpers


def helper_flag_calls(tree: ast.AST, helpers: Dict[str, ast.Call]):
    """(flags, add_argument call) for each helper call, loop variables over literal tuples resolved."""
    loops: Dict[ast.AST, Dict[str, List[str]]] = {}
    for loop in ast.walk(tree):
        if isinstance(loop, ast.For) and isinstance(loop.target, ast.Name):
            names = literal(loop.iter)
            if isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names):
                for node in ast.walk(loop):
                    loops.setdefault(node, {})[loop.target.id] = list(names)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in helpers:
            for arg in node.args[1:]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    yield [arg.value], helpers[node.func.id]
                elif isinstance(arg, ast.Name) and arg.id in loops.get(node, {}):
                    for name in loops[node][arg.id]:
                        yield [name], helpers[node.func.id]


def read_file(path: Path, root: Path, src: str, cat: Catalogue, classes=None, prefix: str = '', skip=None, known=None):
    tree = ast.parse(path.read_text(encoding='utf-8'))
    where = str(path.relative_to(root))
    helpers = flag_helpers(tree, known) if src != 'megatron' else {}
    for flags, template in helper_flag_calls(tree, helpers):
        call = ast.Call(func=template.func, args=[ast.Constant(f) for f in flags], keywords=template.keywords)
        ast.copy_location(call, template)
        read_add_argument(call, cat, src, where, prefix)
    parents: Dict[ast.AST, ast.FunctionDef] = {}
    for func in ast.walk(tree):
        if isinstance(func, ast.FunctionDef):
            for node in ast.walk(func):
                parents.setdefault(node, func)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = type_name(node.func)
        if name == 'add_argument' and isinstance(node.func, ast.Attribute):
            if any(isinstance(a, ast.Starred) for a in node.args) and helpers:
                continue  # the body of a flag helper, read at its call sites
            if skip:
                flags = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                if flags and flags[0].lstrip('-').replace('-', '_') in skip:
                    continue
            read_add_argument(node, cat, src, where, prefix)
        elif name == 'reset_arg' and isinstance(node.func, ast.Name) and len(node.args) >= 2:
            # slime's reset_arg(parser, '--flag', **kwargs): a new default, or add_argument when Megatron lacks it
            flag = node.args[1].value if isinstance(node.args[1], ast.Constant) else None
            if flag not in cat.options:
                read_add_argument(node, cat, src, where, prefix, skip_first=True)
        elif name == 'ArgumentGroupFactory' and classes is not None:
            read_factory(node, parents.get(node), classes, cat, where)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(slime: Path, megatron: Optional[Path], sglang: Optional[Path]) -> Dict[str, Any]:
    cat = Catalogue()
    cat.add(['-h', '--help'], 'argparse', dest='help', type=None, choices=None, nargs=0, action='help', default=None)
    sources: Dict[str, Any] = {}

    def source(name: str, root: Path, files: List[Path]) -> None:
        sources[name] = {
            'commit': git_commit(root),
            'files': {str(f.relative_to(root)): sha256(f) for f in files},
        }

    if megatron is not None:
        files = [megatron / f for f in MEGATRON_FILES if (megatron / f).is_file()]
        classes = index_classes(megatron) if files else None
        for f in files:
            read_file(f, megatron, 'megatron', cat, classes)
        if files:
            source('megatron', megatron, files)
    slime_files = [slime / f for f in SLIME_FILES if (slime / f).is_file()]
    kind = 'slime'
    if not slime_files:  # a stand-in: its train.py holds its parser
        slime_files = [slime / f for f in STANDIN_FILES if (slime / f).is_file()]
        kind = 'stand-in'
    known: Dict[str, ast.Call] = {}
    for f in slime_files:  # helpers defined in one file (slime_contract._flag) are called from another
        known.update(flag_helpers(ast.parse(f.read_text(encoding='utf-8'))))
    for f in slime_files:
        read_file(f, slime, 'slime', cat, known=known)
    source(kind, slime, slime_files)
    if sglang is not None:
        files = [sglang / f for f in SGLANG_FILES if (sglang / f).is_file()]
        for f in files:
            read_file(f, sglang, 'sglang', cat, prefix='sglang-', skip=SGLANG_SKIPPED)
        if files:
            source('sglang', sglang, files)
    return {
        'format': 'keel-slime-args/1',
        'sources': sources,
        'sglangIncluded': 'sglang' in sources,
        'unresolved': cat.unresolved,
        'options': dict(sorted(cat.options.items())),
    }


def installed_sglang() -> Optional[Path]:
    """The directory holding the `sglang` package this interpreter would import (its code is not run)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec('sglang')
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent.parent


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--slime', required=True, type=Path, help='slime checkout (or a stand-in with train.py)')
    parser.add_argument('--megatron', type=Path, help='Megatron-LM checkout')
    parser.add_argument('--sglang', type=Path, help='SGLang source tree (the directory holding sglang/ or python/)')
    parser.add_argument(
        '--sglang-auto', action='store_true', help="read the SGLang this interpreter would import (found, not imported)"
    )
    parser.add_argument('--out', type=Path, help='write here instead of stdout')
    args = parser.parse_args(argv)
    if args.sglang is None and args.sglang_auto:
        args.sglang = installed_sglang()
    if not args.slime.is_dir():
        print(f'slime checkout {args.slime} is not a directory', file=sys.stderr)
        return 2
    megatron = args.megatron if args.megatron and args.megatron.is_dir() else None
    text = json.dumps(build(args.slime, megatron, args.sglang), indent=1, sort_keys=False) + '\n'
    if args.out:
        args.out.write_text(text, encoding='utf-8')
    else:
        sys.stdout.write(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
