// Text that came from outside keel (a Ray job's message, a trainer's log line, a failure reason) printed on an
// operator's terminal: control characters and escape sequences are shown escaped, never interpreted, so a log line
// cannot move the cursor, rewrite earlier lines, set the window title or hide text.

// eslint-disable-next-line no-control-regex -- matching control characters is the point
const controls = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** `text` with every control character (C0 but tab and newline, DEL, C1, bidi overrides) shown as `\u{..}`. */
export function printable(text: string): string {
  return text.replace(controls, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
}
