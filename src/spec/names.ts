// One check per kind of name that comes from outside keel: file names from a hub listing, a checkpoint index or a
// saved manifest; host names from a spec or an MPI hostfile; keys of maps a person typed. Pure; each returns the
// problem as a sentence (or undefined when the name is fine), so callers can name the file or field around it.

/** C0 control characters and DEL: a newline ends a shell line, NUL ends a C string. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
export const controlCharacter = /[\u0000-\u001f\u007f]/;

/** Keys that mean something to every JS object: never accepted as keys of user-keyed maps. */
const prototypeKeys = new Set(['__proto__', ...Object.getOwnPropertyNames(Object.prototype)]);

export function isPrototypeKey(key: string): boolean {
  return prototypeKeys.has(key);
}

/** A printable description of a name for an error message (control characters escaped, long names cut). */
export function describeName(name: string): string {
  const shown = JSON.stringify(name.length > 200 ? `${name.slice(0, 200)}...` : name);
  return shown;
}

/**
 * A path relative to a directory that stays inside it: no absolute path, no `..` or `.` segment, no empty segment,
 * no backslash, no control character. `singleSegment`: a plain file name (a shard of a checkpoint).
 */
export function relativePathProblem(name: string, options: { singleSegment?: boolean } = {}): string | undefined {
  if (typeof name !== 'string' || name.length === 0) return 'is empty';
  if (name.length > 1024) return 'is longer than 1024 characters';
  if (controlCharacter.test(name)) return 'contains a control character';
  if (name.includes('\\')) return 'contains a backslash';
  if (name.startsWith('/')) return 'is an absolute path';
  const segments = name.split('/');
  if (options.singleSegment && segments.length > 1) return 'is not a plain file name (it contains /)';
  if (segments.some((s) => s === '' || s === '.' || s === '..')) return "has an empty, '.' or '..' segment";
  return undefined;
}

const hostName = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$/;
const ipv6 = /^[0-9A-Fa-f:.]{2,45}$/;

/** A host name, an IPv4 address or an IPv6 address (as ssh, Ray and torchrun take them). */
export function hostProblem(host: string): string | undefined {
  if (hostName.test(host) || (host.includes(':') && ipv6.test(host))) return undefined;
  return 'must be a host name or an IP address (letters, digits, dots and dashes)';
}

/**
 * Addresses no node of a training cluster has, that keel must never send a request to: link-local (169.254.0.0/16,
 * where clouds serve instance metadata and credentials; fe80::/10), the unspecified and multicast ranges, and the
 * metadata service's host names. The problem as a sentence, or undefined.
 */
export function forbiddenAddressProblem(
  host: string,
  options: { allowUnspecified?: boolean } = {},
): string | undefined {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  if (/^169\.254\./.test(h) || /^fe[89ab][0-9a-f]?:/.test(h))
    return 'is a link-local address (where clouds serve instance metadata and credentials): not a cluster node';
  if (h === 'metadata' || h === 'metadata.google.internal' || h.endsWith('.metadata.google.internal'))
    return 'is a cloud metadata service: not a cluster node';
  if (!options.allowUnspecified && (/^0+(\.0+){0,3}$/.test(h) || h === '::'))
    return 'is the unspecified address: name the node itself';
  const first = Number(/^(\d+)\./.exec(h)?.[1]);
  if (first >= 224 && first <= 255) return 'is a multicast or reserved address: not a cluster node';
  if (/^ff[0-9a-f]{2}:/.test(h)) return 'is a multicast address: not a cluster node';
  return undefined;
}
