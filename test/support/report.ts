// Reading a `keel report` chart back: the marks it drew, by their exact descriptions (aria-label of each mark).
export interface DrawnMark {
  role: string;
  label: string;
}

const unescape = (s: string) =>
  s.replace(/&(quot|amp|lt|gt|#39);/g, (_, e: string) => ({ quot: '"', amp: '&', lt: '<', gt: '>', '#39': "'" })[e]!);

/** The data marks of an SVG rendered by Vega: points, rules and bars (axes, legends and line paths left out). */
export function drawnMarks(svg: string): DrawnMark[] {
  const marks: DrawnMark[] = [];
  for (const tag of svg.match(/<[a-z]+\s[^>]*>/g) ?? []) {
    const role = /\saria-roledescription="([^"]*)"/.exec(tag)?.[1];
    const label = /\saria-label="([^"]*)"/.exec(tag)?.[1];
    if (role && label && ['point', 'rule mark', 'bar'].includes(role)) marks.push({ role, label: unescape(label) });
  }
  return marks;
}

/** The labels of the drawn marks whose label starts with `what ` (eval, reward, checkpoint, restart, step). */
export function drawn(svg: string, what: string): string[] {
  return drawnMarks(svg)
    .filter((m) => m.label.startsWith(`${what} `))
    .map((m) => m.label);
}
