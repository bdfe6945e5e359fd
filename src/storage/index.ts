// Files on shared storage and the worker host: one writer, one reader, one deleter (docs/security.md).
export { readFileBounded, type ReadFileOptions } from './read-file.js';
export { removeTreeIn, type RemoveTreeOptions } from './remove-tree.js';
export { StorageError, writeFileSafely, type WriteFileOptions } from './write-file.js';
