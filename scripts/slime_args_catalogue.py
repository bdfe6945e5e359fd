"""The argument catalogue of a slime checkout, read statically (Python `ast`, nothing imported or run).

    python3 slime_args_catalogue.py --slime DIR [--megatron DIR] [--sglang DIR] [--sglang-router DIR] [--out FILE]

Reads the `add_argument(...)` calls of slime's parsers (slime/utils/arguments.py and the other files listed in
SLIME_FILES), Megatron's (megatron/training/arguments.py, with the flags Megatron builds from config dataclasses
through ArgumentGroupFactory) and, when SGLang is given, SGLang's server arguments as slime exposes them: the fields
of the ServerArgs dataclass (each `A[type, Arg(...)]` field is a flag) and the `add_argument` calls of
ServerArgs.add_cli_args, prefixed `--sglang-`, minus the ones slime sets itself (its `skipped_args`); and the SGLang
router's arguments (sglang_router's RouterArgs.add_cli_args, prefixed `--router-`). How slime wires SGLang (what it
skips, how it calls the router, whether its SGLang parser accepts abbreviations) is read from slime's
slime/backends/sglang_utils/arguments.py. A checkout without those files (the tiny-local stand-in) is read through
its train.py. Prints one JSON object: where each source came from (git commit when the directory is a git checkout,
package version, sha256 of every file read) and one entry per option string: dest, type, choices, nargs, action,
default (as source text), and `parser: sglang` for the options of slime's separate SGLang parser.

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
import tempfile
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
SGLANG_VERSION_FILES = ['sglang/_version.py', 'python/sglang/_version.py', 'sglang/version.py', 'python/sglang/version.py']
ROUTER_FILES = ['sglang_router/router_args.py', 'py_src/sglang_router/router_args.py']
ROUTER_VERSION_FILES = ['sglang_router/version.py', 'py_src/sglang_router/version.py']
SLIME_SGLANG_FILE = 'slime/backends/sglang_utils/arguments.py'
# the functions of SLIME_SGLANG_FILE that fill slime's SGLang parser (parsed apart, with parse_known_args)
SLIME_SGLANG_PARSER_FUNCS = {'add_sglang_router_arguments', 'add_sglang_arguments'}
# argparse actions that take no value
ZERO_ARITY_ACTIONS = {'store_true', 'store_false', 'store_const', 'count', 'help', 'version', 'BooleanOptionalAction'}
# Used when the slime checkout has no SLIME_SGLANG_FILE (the stand-in): slime 624b824a's skipped_args
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


Omit = object()  # a field left out of an entry


def zero_arity(action: Any) -> bool:
    name = action if isinstance(action, str) else None
    return name is not None and (
        name in ZERO_ARITY_ACTIONS or name == 'DeprecatedAction' or name.endswith(('StoreTrueAction', 'StoreConstAction'))
    )


class Catalogue:
    def __init__(self) -> None:
        self.options: Dict[str, Dict[str, Any]] = {}
        self.unresolved: List[str] = []

    def add(self, flags: List[str], src: str, **fields: Any) -> None:
        dest = fields.get('dest') or flags[0].lstrip('-').replace('-', '_')
        entry = {'src': src, 'dest': dest, **{k: v for k, v in fields.items() if k != 'dest' and v is not Omit}}
        for flag in flags:
            self.options[flag] = entry


def add_argument_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == 'add_argument':
            yield node


def read_add_argument(
    call: ast.Call,
    cat: Catalogue,
    src: str,
    where: str,
    prefix: str = '',
    skip_first=False,
    parser: Any = Omit,
    consts: Optional[Dict[str, Any]] = None,
) -> None:
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
    if zero_arity(action):
        nargs = 0
    if action == 'BooleanOptionalAction':  # --x and --no-x
        flags = flags + ['--no-' + f[2:] for f in flags if f.startswith('--')]
    choices = resolve_choices(kw.get('choices'), consts or {})
    if prefix:
        flags = [f'--{prefix}{f.lstrip("-")}' for f in flags]
    cat.add(
        flags,
        src,
        dest=literal(kw.get('dest')),
        type=type_name(kw.get('type')) if 'type' in kw else ('str' if nargs != 0 else None),
        choices=list(choices) if isinstance(choices, (list, tuple)) else choices,
        nargs=nargs,
        action=action or 'store',
        default=source_text(kw.get('default')),
        parser=parser,
    )


def resolve_choices(node: Optional[ast.AST], consts: Dict[str, Any]) -> Any:
    """choices=[...] or a module-level list; 'dynamic' when computed; None when absent."""
    if node is None:
        return None
    value = literal(node)
    if value is None and isinstance(node, ast.Name):
        value = consts.get(node.id)
    if isinstance(value, (list, tuple)):
        return list(value)
    return 'dynamic'


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


def slime_skip_name(call: ast.Call) -> Optional[str]:
    """The name slime's SGLang wrapper checks against skipped_args: dest, else the first long flag's stem."""
    dest = next((literal(k.value) for k in call.keywords if k.arg == 'dest'), None)
    if isinstance(dest, str):
        return dest
    for a in call.args:
        if isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value.startswith('--'):
            return a.value[2:].replace('-', '_')
    return None


def read_file(
    path: Path,
    root: Path,
    src: str,
    cat: Catalogue,
    classes=None,
    prefix: str = '',
    skip=None,
    known=None,
    parser_funcs=None,
    only_func: Optional[str] = None,
    consts: Optional[Dict[str, Any]] = None,
):
    """The add_argument calls of one file. parser_funcs: the functions whose options go to slime's SGLang parser
    (all of them when src is SGLang's); only_func: read that function's calls only."""
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
        func = parents.get(node)
        if only_func is not None and (func is None or func.name != only_func):
            continue
        parser = 'sglang' if prefix == 'sglang-' or (func is not None and func.name in (parser_funcs or ())) else Omit
        name = type_name(node.func)
        if name == 'add_argument' and isinstance(node.func, ast.Attribute):
            if any(isinstance(a, ast.Starred) for a in node.args) and helpers:
                continue  # the body of a flag helper, read at its call sites
            if skip and slime_skip_name(node) in skip:
                continue
            read_add_argument(node, cat, src, where, prefix, parser=parser, consts=consts)
        elif name == 'reset_arg' and isinstance(node.func, ast.Name) and len(node.args) >= 2:
            # slime's reset_arg(parser, '--flag', **kwargs): a new default, or add_argument when Megatron lacks it
            flag = node.args[1].value if isinstance(node.args[1], ast.Constant) else None
            if flag not in cat.options:
                read_add_argument(node, cat, src, where, prefix, skip_first=True)
        elif name == 'ArgumentGroupFactory' and classes is not None:
            read_factory(node, parents.get(node), classes, cat, where)


# --- SGLang as slime sees it ------------------------------------------------------------------------------------


def module_constants(tree: ast.Module) -> Dict[str, Any]:
    """Module-level NAME = [literal list]; names the module also extends or appends to at run time are left out."""
    consts: Dict[str, Any] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            value = literal(stmt.value)
            if isinstance(value, (list, tuple)):
                consts[stmt.targets[0].id] = list(value)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
            if node.func.attr in ('append', 'extend', 'insert'):
                consts.pop(node.func.value.id, None)
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            consts.pop(node.target.id, None)
    return consts


def slime_sglang_wiring(slime: Path) -> Dict[str, Any]:
    """How slime adds SGLang's arguments, read from its sglang_utils/arguments.py (constants for the stand-in)."""
    wiring: Dict[str, Any] = {
        'from': 'default',
        'skipped': sorted(SGLANG_SKIPPED),
        'router': {'prefix': 'router-', 'excludeHostPort': True},
        'allowAbbrev': True,
    }
    path = slime / SLIME_SGLANG_FILE
    if not path.is_file():
        return wiring
    tree = ast.parse(path.read_text(encoding='utf-8'))
    wiring['from'] = SLIME_SGLANG_FILE
    wiring['router'] = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == 'skipped_args' for t in node.targets):
            value = literal(node.value)
            if isinstance(value, (list, tuple)):
                wiring['skipped'] = sorted(value)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == 'add_cli_args':
            if type_name(node.func.value) == 'RouterArgs':
                kw = {k.arg: literal(k.value) for k in node.keywords if k.arg}
                wiring['router'] = {
                    'prefix': 'router-' if kw.get('use_router_prefix') else '',
                    'excludeHostPort': bool(kw.get('exclude_host_port')),
                }
    for func in ast.walk(tree):
        if isinstance(func, ast.FunctionDef) and func.name == 'sglang_parse_args':
            for node in ast.walk(func):  # the first parser made there is the one add_sglang_arguments fills
                if isinstance(node, ast.Call) and type_name(node.func) == 'ArgumentParser':
                    kw = {k.arg: literal(k.value) for k in node.keywords if k.arg}
                    wiring['allowAbbrev'] = kw.get('allow_abbrev', True) is not False
                    break
    return wiring


def annotated_parts(ann: ast.AST):
    """(inner type, Arg keywords) of `A[T, Arg(...)]` / `A[T, "help"]`; None when the field has no CLI metadata."""
    if not (isinstance(ann, ast.Subscript) and type_name(ann.value) in ('A', 'Annotated')):
        return None
    inner = ann.slice.value if isinstance(ann.slice, ast.Index) else ann.slice  # type: ignore[attr-defined]
    elts = inner.elts if isinstance(inner, ast.Tuple) else [inner]
    for meta in elts[1:]:
        if isinstance(meta, ast.Call) and type_name(meta.func) == 'Arg':
            return elts[0], {k.arg: k.value for k in meta.keywords if k.arg}
        if isinstance(meta, ast.Constant) and isinstance(meta.value, str):
            return elts[0], {}
    return None


def strip_optional(node: ast.AST) -> ast.AST:
    if isinstance(node, ast.Subscript) and type_name(node.value) == 'Optional':
        return node.slice.value if isinstance(node.slice, ast.Index) else node.slice  # type: ignore[attr-defined]
    parts: List[ast.AST] = []
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        parts = [node.left, node.right]
    elif isinstance(node, ast.Subscript) and type_name(node.value) == 'Union':
        inner = node.slice.value if isinstance(node.slice, ast.Index) else node.slice  # type: ignore[attr-defined]
        parts = list(getattr(inner, 'elts', []))
    rest = [p for p in parts if not (isinstance(p, ast.Constant) and p.value is None) and type_name(p) != 'None']
    return rest[0] if parts and len(rest) == 1 else node


def scalar_type(node: Optional[ast.AST]) -> str:
    """argparse's type= as SGLang infers it from an annotation: str, int, float; anything else parses as str."""
    name = type_name(node) if node is not None else None
    return name if name in ('str', 'int', 'float') else 'str'


def read_server_args(path: Path, root: Path, cat: Catalogue, skipped: set, consts: Dict[str, Any]) -> None:
    """ServerArgs' dataclass fields as add_cli_args_from_dataclass turns them into flags, prefixed as slime does."""
    tree = ast.parse(path.read_text(encoding='utf-8'))
    where = str(path.relative_to(root))
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == 'ServerArgs'), None)
    if cls is None:
        cat.unresolved.append(f'{where}: no ServerArgs class')
        return
    for stmt in cls.body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        parts = annotated_parts(stmt.annotation)
        if parts is None:
            continue
        raw, meta = parts
        name = stmt.target.id
        if literal(meta.get('no_cli')) is True or name in skipped:
            continue
        cli = literal(meta.get('cli_name')) or '--' + name.replace('_', '-')
        aliases = literal(meta.get('aliases')) or []
        flags = ['--sglang-' + f.lstrip('-') for f in [cli, *aliases] if isinstance(f, str)]
        fields: Dict[str, Any] = {
            'dest': 'sglang_' + name,
            'type': None,
            'choices': None,
            'nargs': None,
            'action': 'store',
            'default': source_text(stmt.value),
            'parser': 'sglang',
        }
        type_parser = meta.get('type_parser')
        inner = strip_optional(raw)
        origin = type_name(inner.value) if isinstance(inner, ast.Subscript) else None
        element = inner.slice.value if isinstance(getattr(inner, 'slice', None), ast.Index) else getattr(inner, 'slice', None)  # type: ignore[attr-defined]
        if 'action' in meta:
            action = literal(meta['action']) or type_name(meta['action'])
            extra = literal(meta.get('action_kwargs')) or {}
            fields.update(action=action, nargs=extra.get('nargs'), choices=extra.get('choices'))
            if zero_arity(action):
                fields['nargs'] = 0
            if action == 'BooleanOptionalAction':
                flags = flags + ['--no-' + f[2:] for f in flags]
        elif origin == 'Literal':
            values = literal(element)
            values = list(values) if isinstance(values, tuple) else [values]
            choices = resolve_choices(meta['choices'], consts) if 'choices' in meta else values
            fields.update(
                type=type_name(type_parser) if type_parser is not None else scalar_type(ast.Name(type(values[0]).__name__)),
                choices=choices,
            )
        elif origin in ('list', 'List') and type_parser is None:
            fields.update(
                type=scalar_type(element),
                nargs=literal(meta.get('nargs')) or '+',
                choices=resolve_choices(meta.get('choices'), consts),
            )
        elif type_name(inner) == 'bool':
            fields.update(action='store_true', nargs=0)
        else:
            fields.update(
                type=type_name(type_parser) if type_parser is not None else scalar_type(inner),
                choices=resolve_choices(meta.get('choices'), consts),
                nargs=literal(meta.get('nargs')),
            )
        cat.add(flags, 'sglang', **fields)


def f_string(node: ast.AST, names: Dict[str, str]) -> Optional[str]:
    """A string constant, or an f-string whose only fields are the given names."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if not isinstance(node, ast.JoinedStr):
        return None
    out = ''
    for part in node.values:
        if isinstance(part, ast.Constant):
            out += str(part.value)
        elif isinstance(part, ast.FormattedValue) and isinstance(part.value, ast.Name) and part.value.id in names:
            out += names[part.value.id]
        else:
            return None
    return out


def read_router_args(path: Path, root: Path, cat: Catalogue, prefix: str, exclude_host_port: bool) -> None:
    """RouterArgs.add_cli_args(parser, use_router_prefix=..., exclude_host_port=...) as slime calls it."""
    tree = ast.parse(path.read_text(encoding='utf-8'))
    where = str(path.relative_to(root))
    func = next((n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == 'add_cli_args'), None)
    if func is None:
        cat.unresolved.append(f'{where}: no add_cli_args')
        return
    names = {'prefix': prefix}

    def visit(stmts: List[ast.stmt]) -> None:
        for stmt in stmts:
            if isinstance(stmt, ast.If):
                test = stmt.test
                if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not) and type_name(test.operand) == 'exclude_host_port':
                    visit(stmt.orelse if exclude_host_port else stmt.body)
                elif type_name(test) == 'exclude_host_port':
                    visit(stmt.body if exclude_host_port else stmt.orelse)
                else:
                    visit(stmt.body)
                    visit(stmt.orelse)
                continue
            for node in ast.walk(stmt):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == 'add_argument':
                    flags = [f_string(a, names) for a in node.args]
                    if any(f is None for f in flags):
                        cat.unresolved.append(f'{where}:{node.lineno}')
                        continue
                    call = ast.Call(func=node.func, args=[ast.Constant(f) for f in flags], keywords=node.keywords)
                    ast.copy_location(call, node)
                    read_add_argument(call, cat, 'sglang-router', where, parser='sglang')

    visit(func.body)


def package_version(root: Path, files: List[str]) -> Optional[str]:
    for f in files:
        path = root / f
        if path.is_file():
            for node in ast.parse(path.read_text(encoding='utf-8')).body:
                if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == '__version__' for t in node.targets):
                    value = literal(node.value)
                    return value if isinstance(value, str) else None
    return None


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(slime: Path, megatron: Optional[Path], sglang: Optional[Path], router: Optional[Path] = None) -> Dict[str, Any]:
    cat = Catalogue()
    cat.add(['-h', '--help'], 'argparse', dest='help', type=None, choices=None, nargs=0, action='help', default=None)
    sources: Dict[str, Any] = {}

    def source(name: str, root: Path, files: List[Path], version: Optional[str] = None) -> None:
        sources[name] = {
            'commit': git_commit(root),
            **({'version': version} if version else {}),
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
        funcs = SLIME_SGLANG_PARSER_FUNCS if str(f.relative_to(slime)) == SLIME_SGLANG_FILE else None
        read_file(f, slime, 'slime', cat, known=known, parser_funcs=funcs)
    source(kind, slime, slime_files)
    wiring = slime_sglang_wiring(slime)
    if sglang is not None:
        files = [sglang / f for f in SGLANG_FILES if (sglang / f).is_file()]
        skipped = set(wiring['skipped'])
        for f in files:
            consts = module_constants(ast.parse(f.read_text(encoding='utf-8')))
            read_server_args(f, sglang, cat, skipped, consts)
            read_file(f, sglang, 'sglang', cat, prefix='sglang-', skip=skipped, only_func='add_cli_args', consts=consts)
        if files:
            source('sglang', sglang, files, package_version(sglang, SGLANG_VERSION_FILES))
    if router is not None and wiring['router'] is not None:
        files = [router / f for f in ROUTER_FILES if (router / f).is_file()]
        for f in files:
            read_router_args(f, router, cat, wiring['router']['prefix'], wiring['router']['excludeHostPort'])
        if files:
            source('sglang-router', router, files, package_version(router, ROUTER_VERSION_FILES))
    return {
        'format': 'keel-slime-args/1',
        'sources': sources,
        'sglangIncluded': 'sglang' in sources,
        'sglang': wiring,
        'unresolved': cat.unresolved,
        'options': dict(sorted(cat.options.items())),
    }


def installed(package: str) -> Optional[Path]:
    """The directory holding `package` as this interpreter would import it (found, never imported or run)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent.parent


def from_wheel(wheel: Path, into: Path, members: List[str]) -> Path:
    """The few files read here, taken out of a wheel (a zip): nothing is installed, no dependency is needed."""
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        for name in set(members) & set(z.namelist()):
            z.extract(name, into)
    return into


def apply_patch(patch: Path, root: Path, member: str) -> None:
    """Apply a patch's hunks for one file (paths a/python/<member>, as slime's SGLang patches name them)."""
    out = subprocess.run(
        ['patch', '--batch', '--forward', '-p2', '-d', str(root), '--quiet', '-i', '-'],
        input=one_file_diff(patch.read_text(encoding='utf-8'), member),
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f'{patch} does not apply to {member}: {out.stdout}{out.stderr}')


def one_file_diff(text: str, member: str) -> str:
    keep, out = False, []
    for line in text.splitlines(keepends=True):
        if line.startswith('diff --git '):
            keep = line.rstrip().endswith('/' + member)
        if keep:
            out.append(line)
    return ''.join(out)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--slime', required=True, type=Path, help='slime checkout (or a stand-in with train.py)')
    parser.add_argument('--megatron', type=Path, help='Megatron-LM checkout')
    parser.add_argument('--sglang', type=Path, help='SGLang source tree (the directory holding sglang/ or python/)')
    parser.add_argument('--sglang-router', type=Path, help='the directory holding the sglang_router package')
    parser.add_argument('--sglang-wheel', type=Path, help='read SGLang from this wheel (nothing installed)')
    parser.add_argument('--sglang-router-wheel', type=Path, help='read sglang_router from this wheel (nothing installed)')
    parser.add_argument('--sglang-patch', type=Path, action='append', default=[], help=(
        "apply this patch's hunks for sglang/srt/server_args.py to the wheel's copy first (slime's image patches "
        'SGLang; repeatable)'))
    parser.add_argument(
        '--sglang-auto',
        action='store_true',
        help='read the sglang and sglang_router this interpreter would import (found, not imported)',
    )
    parser.add_argument('--out', type=Path, help='write here instead of stdout')
    args = parser.parse_args(argv)
    unpacked = tempfile.TemporaryDirectory(prefix='keel-sglang-') if args.sglang_wheel or args.sglang_router_wheel else None
    if unpacked and args.sglang_wheel:
        args.sglang = from_wheel(args.sglang_wheel, Path(unpacked.name) / 'sglang', SGLANG_FILES + SGLANG_VERSION_FILES)
        for patch in args.sglang_patch:
            apply_patch(patch, args.sglang, SGLANG_FILES[0])
    if unpacked and args.sglang_router_wheel:
        args.sglang_router = from_wheel(
            args.sglang_router_wheel, Path(unpacked.name) / 'router', ROUTER_FILES + ROUTER_VERSION_FILES
        )
    if args.sglang_auto:
        args.sglang = args.sglang or installed('sglang')
        args.sglang_router = args.sglang_router or installed('sglang_router')
    if not args.slime.is_dir():
        print(f'slime checkout {args.slime} is not a directory', file=sys.stderr)
        return 2
    megatron = args.megatron if args.megatron and args.megatron.is_dir() else None
    text = json.dumps(build(args.slime, megatron, args.sglang, args.sglang_router), indent=1, sort_keys=False) + '\n'
    if args.out:
        args.out.write_text(text, encoding='utf-8')
    else:
        sys.stdout.write(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
