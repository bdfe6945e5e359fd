// A small, tolerant parser for the Python literals slime prints (dict reprs of metrics). It never evaluates anything.
//
// Accepted: dicts, lists, tuples, sets, strings ('...', "...", with escapes and b/r/u prefixes), ints, floats,
// `nan`, `inf`, `-inf`, `True`, `False`, `None`, and call-shaped reprs such as `np.float64(0.5)` or
// `tensor(0.25, device='cuda:0')`, which stand for their first argument (numpy 2 and torch print scalars that way);
// other calls are refused.

export type PyValue = null | boolean | number | string | PyValue[] | PyDict;
export interface PyDict {
  [key: string]: PyValue;
}

export class PythonLiteralError extends Error {
  constructor(
    message: string,
    readonly position: number,
  ) {
    super(`${message} at offset ${position}`);
    this.name = 'PythonLiteralError';
  }
}

/** Parse one Python literal; the whole text (apart from surrounding whitespace) must be the literal. */
export function parsePythonLiteral(text: string): PyValue {
  const parser = new LiteralParser(text);
  const value = parser.value();
  parser.end();
  return value;
}

/** Parse a dict literal, or return undefined when the text is not one (malformed logs must not throw). */
export function tryParsePythonDict(text: string): PyDict | undefined {
  try {
    const value = parsePythonLiteral(text);
    return isPyDict(value) ? value : undefined;
  } catch (error) {
    if (error instanceof PythonLiteralError) return undefined;
    throw error;
  }
}

export function isPyDict(value: PyValue | undefined): value is PyDict {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const namedConstants: Record<string, PyValue> = {
  True: true,
  False: false,
  None: null,
  nan: NaN,
  inf: Infinity,
  NaN: NaN,
  Infinity: Infinity,
};

// numpy (`np.float64(0.5)`, `array([1, 2])`) and torch (`tensor(0.5)`) reprs.
const scalarWrapperPattern = /^(?:(?:np|numpy|torch)\.\w+|tensor|array)$/;

const simpleEscapes: Record<string, string> = {
  n: '\n',
  t: '\t',
  r: '\r',
  '0': '\0',
  a: '\x07',
  b: '\b',
  f: '\f',
  v: '\v',
  '\\': '\\',
  "'": "'",
  '"': '"',
};

class LiteralParser {
  private pos = 0;

  constructor(private readonly text: string) {}

  end(): void {
    this.skipSpace();
    if (this.pos < this.text.length) this.fail('unexpected trailing text');
  }

  value(): PyValue {
    this.skipSpace();
    const ch = this.text[this.pos];
    if (ch === undefined) this.fail('unexpected end of input');
    if (ch === '{') return this.braced();
    if (ch === '[') return this.sequence('[', ']');
    if (ch === '(') return this.sequence('(', ')');
    if (ch === "'" || ch === '"') return this.string();
    if (ch === '-' || ch === '+' || ch === '.' || isDigit(ch)) return this.number();
    if (isIdentifierStart(ch)) return this.identifier();
    this.fail(`unexpected character ${JSON.stringify(ch)}`);
  }

  private braced(): PyValue {
    this.expect('{');
    this.skipSpace();
    if (this.peek() === '}') {
      this.pos += 1;
      return {};
    }
    const first = this.value();
    this.skipSpace();
    if (this.peek() !== ':') return this.setRest(first);
    const dict: PyDict = {};
    let key = first;
    for (;;) {
      this.expect(':');
      // Keys come from a log line: defined as own properties, so `__proto__` is a key, never the prototype.
      Object.defineProperty(dict, dictKey(key, this.pos), {
        value: this.value(),
        enumerable: true,
        writable: true,
        configurable: true,
      });
      this.skipSpace();
      if (this.peek() === ',') {
        this.pos += 1;
        this.skipSpace();
        if (this.peek() === '}') break;
        key = this.value();
        this.skipSpace();
        continue;
      }
      break;
    }
    this.expect('}');
    return dict;
  }

  private setRest(first: PyValue): PyValue[] {
    const items = [first];
    while (this.peek() === ',') {
      this.pos += 1;
      this.skipSpace();
      if (this.peek() === '}') break;
      items.push(this.value());
      this.skipSpace();
    }
    this.expect('}');
    return items;
  }

  private sequence(open: string, close: string): PyValue[] {
    this.expect(open);
    const items: PyValue[] = [];
    this.skipSpace();
    while (this.peek() !== close) {
      items.push(this.value());
      this.skipSpace();
      if (this.peek() !== ',') break;
      this.pos += 1;
      this.skipSpace();
    }
    this.expect(close);
    return items;
  }

  private string(): string {
    const quote = this.text[this.pos];
    const triple = this.text.startsWith(quote!.repeat(3), this.pos);
    const delimiter = triple ? quote!.repeat(3) : quote!;
    this.pos += delimiter.length;
    let out = '';
    for (;;) {
      if (this.pos >= this.text.length) this.fail('unterminated string');
      if (this.text.startsWith(delimiter, this.pos)) {
        this.pos += delimiter.length;
        return out;
      }
      const ch = this.text[this.pos]!;
      if (ch === '\\') {
        out += this.escape();
        continue;
      }
      out += ch;
      this.pos += 1;
    }
  }

  private rawString(): string {
    const quote = this.text[this.pos]!;
    const start = ++this.pos;
    while (this.pos < this.text.length && this.text[this.pos] !== quote) {
      this.pos += this.text[this.pos] === '\\' ? 2 : 1;
    }
    if (this.pos >= this.text.length) this.fail('unterminated string');
    return this.text.slice(start, this.pos++);
  }

  private escape(): string {
    const next = this.text[this.pos + 1];
    if (next === undefined) this.fail('unterminated escape');
    const simple = simpleEscapes[next];
    if (simple !== undefined) {
      this.pos += 2;
      return simple;
    }
    const hexLength = next === 'x' ? 2 : next === 'u' ? 4 : next === 'U' ? 8 : 0;
    if (hexLength > 0) {
      const hex = this.text.slice(this.pos + 2, this.pos + 2 + hexLength);
      if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== hexLength) this.fail('bad hex escape');
      this.pos += 2 + hexLength;
      return String.fromCodePoint(parseInt(hex, 16));
    }
    // Unknown escapes are kept verbatim, as Python does.
    this.pos += 2;
    return `\\${next}`;
  }

  private number(): number {
    const match = /^[-+]?(?:inf(?:inity)?|nan|(?:\d[\d_]*)?\.?\d*(?:[eE][-+]?\d+)?)/i.exec(this.text.slice(this.pos));
    const literal = match?.[0] ?? '';
    if (literal === '' || literal === '-' || literal === '+' || literal === '.') this.fail('bad number');
    this.pos += literal.length;
    const sign = literal.startsWith('-') ? -1 : 1;
    const body = literal.replace(/^[-+]/, '').replace(/_/g, '').toLowerCase();
    if (body.startsWith('inf')) return sign * Infinity;
    if (body === 'nan') return NaN;
    const value = Number(body);
    if (Number.isNaN(value)) this.fail(`bad number ${JSON.stringify(literal)}`);
    return sign * value;
  }

  private identifier(): PyValue {
    const match = /^[A-Za-z_][\w.]*/.exec(this.text.slice(this.pos))!;
    const name = match[0];
    const quoteAfter = this.text[this.pos + name.length];
    if (/^[bBrRuUfF]{1,2}$/.test(name) && (quoteAfter === "'" || quoteAfter === '"')) {
      this.pos += name.length;
      return /r/i.test(name) ? this.rawString() : this.string();
    }
    this.pos += name.length;
    this.skipSpace();
    if (this.peek() === '(' && scalarWrapperPattern.test(name)) return this.call(name);
    if (name in namedConstants) return namedConstants[name]!;
    this.fail(`unknown name ${name}`);
  }

  /** `np.float64(0.5)`, `tensor(1.5, device='cuda:0')`: the value is the first positional argument. */
  private call(name: string): PyValue {
    this.expect('(');
    this.skipSpace();
    if (this.peek() === ')') this.fail(`empty call ${name}()`);
    const first = this.value();
    this.skipSpace();
    while (this.peek() === ',') {
      this.pos += 1;
      this.skipSpace();
      if (this.peek() === ')') break;
      const keyword = /^[A-Za-z_]\w*\s*=(?!=)/.exec(this.text.slice(this.pos));
      if (keyword) this.pos += keyword[0].length;
      this.value();
      this.skipSpace();
    }
    this.expect(')');
    return first;
  }

  private peek(): string | undefined {
    return this.text[this.pos];
  }

  private expect(ch: string): void {
    this.skipSpace();
    if (this.text[this.pos] !== ch) this.fail(`expected ${JSON.stringify(ch)}`);
    this.pos += 1;
  }

  private skipSpace(): void {
    while (this.pos < this.text.length && /\s/.test(this.text[this.pos]!)) this.pos += 1;
  }

  private fail(message: string): never {
    throw new PythonLiteralError(message, this.pos);
  }
}

function dictKey(key: PyValue, position: number): string {
  if (typeof key === 'string') return key;
  if (typeof key === 'number' || typeof key === 'boolean' || key === null) return String(key);
  throw new PythonLiteralError('unsupported dict key', position);
}

function isDigit(ch: string): boolean {
  return ch >= '0' && ch <= '9';
}

function isIdentifierStart(ch: string): boolean {
  return /[A-Za-z_]/.test(ch);
}
