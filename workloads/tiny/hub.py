"""A small Hugging Face Hub-compatible endpoint on loopback, for the tiny-local preset (not the Hub's code).

    python hub.py --root DIR [--host 127.0.0.1] [--port 0]

Serves model repos stored as DIR/<org>/<name>/ and dataset repos as DIR/datasets/<org>/<name>/ (files and folders
whose name starts with '.' are hidden) so that the real `hf download [--repo-type dataset] <org>/<name> --local-dir X`
with HF_ENDPOINT=http://HOST:PORT fetches them. The endpoints are the ones huggingface_hub 2.4 calls for a download
(for datasets: /api/datasets/... and /datasets/<repo>/resolve/...):
  GET  /api/models/<repo>[/revision/<rev>]       model info: sha, siblings (size, blobId, lfs {size, sha256})
  GET  /api/models/<repo>/tree/<rev>[/<path>]     tree listing (?recursive=, ?expand=), one page
  HEAD|GET /<repo>/resolve/<rev>/<path>           the file: ETag (sha256 for LFS files, git blob id otherwise),
                                                  X-Repo-Commit, X-Linked-Etag, X-Linked-Size, Accept-Ranges;
                                                  GET honours "Range: bytes=A-[B]" with 206 + Content-Range
Test hooks:
  GET  /_stats                                    every request seen: method, path, range, status, body bytes
  POST /_faults  {"path": "<repo>/<file>", "after_bytes": N}
                                                  the next full GET of that file sends N bytes, then drops the
                                                  connection (huggingface_hub then resumes with a Range request)
No Xet headers are ever sent, so clients download over plain HTTP. The revision is "main" or the repo's sha,
derived from the file list and contents. Errors carry X-Error-Code like the Hub (RepoNotFound, RevisionNotFound,
EntryNotFound). Prints "hub listening on http://HOST:PORT" once ready.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import re
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = ('.safetensors', '.bin', '.pt', '.pth', '.gguf', '.h5', '.msgpack')
CHUNK = 1 << 16
RANGE_RE = re.compile(r'^bytes=(\d+)-(\d*)$')


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the repo, '/'-separated
    size: int
    blob_id: str  # git blob sha1 of the content (or of the LFS pointer)
    sha256: str | None  # LFS files only
    pointer_size: int | None

    @property
    def etag(self) -> str:
        return self.sha256 or self.blob_id


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b'blob %d\0' % len(data) + data).hexdigest()


def describe_file(root: Path, rel: str) -> FileEntry:
    path = root / rel
    data = path.read_bytes()
    if rel.endswith(LFS_SUFFIXES):
        sha256 = hashlib.sha256(data).hexdigest()
        pointer = f'version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {len(data)}\n'.encode()
        return FileEntry(rel, len(data), git_blob_id(pointer), sha256, len(pointer))
    return FileEntry(rel, len(data), git_blob_id(data), None, None)


class RepoStore:
    """Repos under a root folder; file hashes cached by (size, mtime)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[Path, tuple[tuple[int, int], FileEntry]] = {}
        self._lock = threading.Lock()

    def repo_dir(self, repo_id: str) -> Path | None:
        parts = repo_id.split('/')
        if len(parts) != 2 or any(not p or p.startswith('.') for p in parts):
            return None
        path = self.root / parts[0] / parts[1]
        return path if path.is_dir() else None

    def files(self, repo_dir: Path) -> list[FileEntry]:
        entries: list[FileEntry] = []
        for path in sorted(repo_dir.rglob('*')):
            rel = path.relative_to(repo_dir)
            if not path.is_file() or any(part.startswith('.') for part in rel.parts):
                continue
            stat = path.stat()
            key = (stat.st_size, stat.st_mtime_ns)
            with self._lock:
                cached = self._cache.get(path)
            if cached is None or cached[0] != key:
                cached = (key, describe_file(repo_dir, rel.as_posix()))
                with self._lock:
                    self._cache[path] = cached
            entries.append(cached[1])
        return entries

    @staticmethod
    def commit_sha(entries: list[FileEntry]) -> str:
        digest = hashlib.sha1()
        for e in entries:
            digest.update(f'{e.path}\0{e.blob_id}\n'.encode())
        return digest.hexdigest()


class HubState:
    def __init__(self, root: Path) -> None:
        self.store = RepoStore(root)
        self.datasets = RepoStore(root / 'datasets')
        self.requests: list[dict[str, Any]] = []
        self.faults: dict[str, int] = {}  # "<repo>/<file>" -> bytes to send before dropping
        self.lock = threading.Lock()


class HubHandler(BaseHTTPRequestHandler):
    server_version = 'keel-tiny-hub/1'
    protocol_version = 'HTTP/1.1'
    kind = 'models'  # or 'datasets': which store the current request reads
    state: HubState  # set on the subclass made by make_server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (name from the base class)
        pass

    # --- plumbing -------------------------------------------------------------------------------------------

    def _record(self, status: int, body_bytes: int) -> None:
        entry = {
            'method': self.command,
            'path': unquote(urlsplit(self.path).path),
            'range': self.headers.get('Range'),
            'status': status,
            'bytes': body_bytes,
        }
        with self.state.lock:
            self.state.requests.append(entry)

    def _send_json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json; charset=utf-8')
        self.send_header('Content-Length', str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)
        self._record(status, len(body) if self.command != 'HEAD' else 0)

    def _error(self, status: int, code: str, message: str) -> None:
        self._send_json(status, {'error': message}, {'X-Error-Code': code, 'X-Error-Message': message})

    # --- routing ----------------------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        length = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(length) if length else b''
        if path != '/_faults':
            self._error(404, 'NotFound', 'not found')
            return
        try:
            fault = json.loads(body or b'{}')
            target, after = str(fault['path']).strip('/'), int(fault['after_bytes'])
        except (ValueError, KeyError, TypeError):
            self._error(400, 'BadRequest', 'expected {"path": "<repo>/<file>", "after_bytes": N}')
            return
        with self.state.lock:
            self.state.faults[target] = after
        self._send_json(200, {'armed': target, 'after_bytes': after})

    def _route(self) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = parse_qs(url.query)
        if path == '/_stats' and self.command == 'GET':
            with self.state.lock:
                requests = list(self.state.requests)
            self._send_json(200, {'requests': requests})
            return
        m = re.fullmatch(r'/api/(models|datasets)/([^/]+/[^/]+)(?:/revision/([^/]+))?/?', path)
        if m:
            self.kind = m.group(1)
            self._model_info(m.group(2), m.group(3) or 'main')
            return
        m = re.fullmatch(r'/api/(models|datasets)/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?', path)
        if m:
            self.kind = m.group(1)
            recursive = query.get('recursive', ['false'])[0].lower() in ('1', 'true')
            self._tree(m.group(2), m.group(3), (m.group(4) or '').strip('/'), recursive)
            return
        m = re.fullmatch(r'/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)', path)
        if m:
            self.kind = 'datasets' if m.group(1) else 'models'
            self._resolve(m.group(2), m.group(3), m.group(4))
            return
        self._error(404, 'NotFound', f'no route for {path}')

    # --- Hub API ----------------------------------------------------------------------------------------------

    def _repo(self, repo_id: str, revision: str) -> tuple[Path, list[FileEntry], str] | None:
        store = self.state.datasets if self.kind == 'datasets' else self.state.store
        repo_dir = store.repo_dir(repo_id)
        if self.kind == 'models' and repo_id.split('/')[0] == 'datasets':
            repo_dir = None  # ROOT/datasets/ holds the dataset repos
        if repo_dir is None:
            self._error(404, 'RepoNotFound', f'Repository not found: {repo_id}')
            return None
        entries = store.files(repo_dir)
        sha = RepoStore.commit_sha(entries)
        if revision not in ('main', sha):
            self._error(404, 'RevisionNotFound', f'Invalid rev id: {revision}')
            return None
        return repo_dir, entries, sha

    def _model_info(self, repo_id: str, revision: str) -> None:
        found = self._repo(repo_id, revision)
        if found is None:
            return
        _, entries, sha = found
        siblings = []
        for e in entries:
            sibling: dict[str, Any] = {'rfilename': e.path, 'size': e.size, 'blobId': e.blob_id}
            if e.sha256 is not None:
                sibling['lfs'] = {'size': e.size, 'sha256': e.sha256, 'pointerSize': e.pointer_size}
            siblings.append(sibling)
        org = repo_id.split('/')[0]
        info = {
            '_id': sha[:24],
            'id': repo_id,
            'modelId': repo_id,
            'author': org,
            'sha': sha,
            'private': False,
            'gated': False,
            'disabled': False,
            'tags': [],
            'siblings': siblings,
            'usedStorage': sum(e.size for e in entries),
        }
        self._send_json(200, info)

    def _tree(self, repo_id: str, revision: str, folder: str, recursive: bool) -> None:
        found = self._repo(repo_id, revision)
        if found is None:
            return
        _, entries, _ = found
        prefix = f'{folder}/' if folder else ''
        inside = [e for e in entries if e.path.startswith(prefix)]
        if folder and not inside:
            self._error(404, 'EntryNotFound', f'{folder} does not exist on "{revision}"')
            return
        items: list[dict[str, Any]] = []
        folders: set[str] = set()
        for e in inside:
            rest = e.path[len(prefix) :]
            parts = rest.split('/')
            for depth in range(1, len(parts)):
                if recursive or depth == 1:
                    folders.add(prefix + '/'.join(parts[:depth]))
            if not recursive and len(parts) > 1:
                continue
            item: dict[str, Any] = {'type': 'file', 'oid': e.blob_id, 'size': e.size, 'path': e.path}
            if e.sha256 is not None:
                item['lfs'] = {'oid': e.sha256, 'size': e.size, 'pointerSize': e.pointer_size}
            items.append(item)
        for name in sorted(folders):
            items.append({'type': 'directory', 'oid': hashlib.sha1(name.encode()).hexdigest(), 'size': 0, 'path': name})
        self._send_json(200, items)

    def _resolve(self, repo_id: str, revision: str, rel: str) -> None:
        found = self._repo(repo_id, revision)
        if found is None:
            return
        repo_dir, entries, sha = found
        entry = next((e for e in entries if e.path == rel), None)
        if entry is None:
            self._error(404, 'EntryNotFound', f'{rel} does not exist on "{revision}"')
            return
        start, end = 0, entry.size - 1
        status = 200
        range_header = self.headers.get('Range')
        if range_header and self.command == 'GET':
            m = RANGE_RE.match(range_header.strip())
            if m is None or int(m.group(1)) >= max(entry.size, 1):
                self.send_response(416)
                self.send_header('Content-Range', f'bytes */{entry.size}')
                self.send_header('Content-Length', '0')
                self.end_headers()
                self._record(416, 0)
                return
            start = int(m.group(1))
            end = min(int(m.group(2)), entry.size - 1) if m.group(2) else entry.size - 1
            status = 206
        length = max(end - start + 1, 0)
        self.send_response(status)
        self.send_header('Content-Type', 'application/octet-stream')
        self.send_header('Content-Length', str(length))
        self.send_header('Accept-Ranges', 'bytes')
        self.send_header('ETag', f'"{entry.etag}"')
        self.send_header('X-Repo-Commit', sha)
        self.send_header('X-Linked-Etag', f'"{entry.etag}"')
        self.send_header('X-Linked-Size', str(entry.size))
        if status == 206:
            self.send_header('Content-Range', f'bytes {start}-{end}/{entry.size}')
        self.end_headers()
        if self.command == 'HEAD':
            self._record(status, 0)
            return
        limit = length
        if status == 200:
            with self.state.lock:
                drop_after = self.state.faults.pop(f'{repo_id}/{rel}', None)
            if drop_after is not None:
                limit = min(limit, drop_after)
        sent = 0
        with (repo_dir / rel).open('rb') as f:
            f.seek(start)
            while sent < limit:
                chunk = f.read(min(CHUNK, limit - sent))
                if not chunk:
                    break
                self.wfile.write(chunk)
                sent += len(chunk)
        self._record(status, sent)
        if sent < length:
            # Fault injected: end the connection in the middle of the body.
            self.wfile.flush()
            self.close_connection = True


def is_loopback(host: str) -> bool:
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(root: Path, host: str, port: int) -> ThreadingHTTPServer:
    if not is_loopback(host):
        raise ValueError(f'refusing to bind {host}: the tiny hub serves loopback addresses only')
    handler = type('BoundHubHandler', (HubHandler,), {'state': HubState(root)})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description='Hugging Face Hub-compatible endpoint on loopback')
    parser.add_argument('--root', required=True, type=Path, help='repos are stored as ROOT/<org>/<name>/')
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=0, help='0 picks a free port')
    args = parser.parse_args(argv)
    try:
        server = make_server(args.root.resolve(), args.host, args.port)
    except ValueError as err:
        print(str(err), file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    print(f'hub listening on http://{host}:{port}', flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
