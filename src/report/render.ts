// Render a report to SVG (Vega in Node, no browser), PNG (the SVG rasterised by resvg) or a self-contained HTML page
// (the SVG inline, with the Vega-Lite spec and its data beside it).
import { extname } from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import { compile } from 'vega-lite';
import { reportSpec, type ReportData } from './chart.js';

export type ReportFormat = 'svg' | 'png' | 'html';

export const reportFormats: ReportFormat[] = ['svg', 'png', 'html'];

/** The format named by an output file's extension (.svg, .png, .html/.htm), or undefined. */
export function reportFormatOf(path: string): ReportFormat | undefined {
  const ext = extname(path).toLowerCase().slice(1);
  if (ext === 'htm') return 'html';
  return (reportFormats as string[]).includes(ext) ? (ext as ReportFormat) : undefined;
}

export async function renderSvg(data: ReportData): Promise<string> {
  const view = new vega.View(vega.parse(compile(reportSpec(data)).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

export async function renderReport(data: ReportData, format: ReportFormat): Promise<string | Uint8Array> {
  const svg = await renderSvg(data);
  if (format === 'svg') return svg;
  if (format === 'png') {
    const png = new Resvg(svg, {
      background: 'white',
      fitTo: { mode: 'zoom', value: 2 },
      font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' },
    });
    return png.render().asPng();
  }
  // Inline JSON in a script element: only `<` needs escaping to keep `</script>` out of it.
  const json = JSON.stringify({ data, spec: reportSpec(data) }).replaceAll('<', '\\u003c');
  const title = `keel run ${data.workflowId}`.replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);
  return [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    `<title>${title}</title>`,
    '<style>body{font-family:sans-serif;margin:24px}</style>',
    '</head><body>',
    svg,
    `<script type="application/json" id="keel-report">${json}</script>`,
    '</body></html>',
    '',
  ].join('\n');
}
