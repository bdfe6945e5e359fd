// nvidia-smi output -> typed GPU records and a health verdict per GPU. Pure parsers; the probe script runs the commands.

/**
 * The query keel runs. The output keeps its header (columns are found by name, whatever the driver prints) and
 * units (parsed away), so it is exactly what `nvidia-smi --query-gpu=<these> --format=csv` prints.
 */
export const gpuQueryFields = [
  'index',
  'uuid',
  'name',
  'pci.bus_id',
  'memory.total',
  'memory.used',
  'memory.free',
  'utilization.gpu',
  'temperature.gpu',
  'power.draw',
  'ecc.errors.uncorrected.volatile.total',
  'clocks.sm',
  'driver_version',
] as const;

export const computeAppFields = ['pid', 'process_name', 'gpu_uuid', 'used_memory'] as const;

export function gpuQueryArgs(fields: readonly string[] = gpuQueryFields): string[] {
  return ['nvidia-smi', `--query-gpu=${fields.join(',')}`, '--format=csv'];
}

export function computeAppsQueryArgs(fields: readonly string[] = computeAppFields): string[] {
  return ['nvidia-smi', `--query-compute-apps=${fields.join(',')}`, '--format=csv'];
}

export interface GpuRecord {
  index: number;
  uuid: string;
  name?: string;
  pciBusId?: string;
  memoryTotalMiB?: number;
  memoryUsedMiB?: number;
  memoryFreeMiB?: number;
  utilizationPercent?: number;
  temperatureC?: number;
  powerDrawW?: number;
  /** Uncorrected ECC errors since the driver loaded; undefined when the GPU does not report ECC. */
  eccUncorrectedVolatile?: number;
  smClockMHz?: number;
  driverVersion?: string;
}

export interface ComputeApp {
  pid: number;
  gpuUuid: string;
  processName?: string;
  usedMemoryMiB?: number;
}

export interface GpuListEntry {
  index: number;
  name: string;
  uuid: string;
}

// Header names nvidia-smi prints that differ from the query names (`clocks.sm` is printed as `clocks.current.sm`).
const fieldAliases: Record<string, string> = {
  'clocks.current.sm': 'clocks.sm',
  used_gpu_memory: 'used_memory',
};

type NumericGpuField = Exclude<keyof GpuRecord, 'index' | 'uuid' | 'name' | 'pciBusId' | 'driverVersion'>;
const numericGpuFields: Record<string, NumericGpuField> = {
  'memory.total': 'memoryTotalMiB',
  'memory.used': 'memoryUsedMiB',
  'memory.free': 'memoryFreeMiB',
  'utilization.gpu': 'utilizationPercent',
  'temperature.gpu': 'temperatureC',
  'power.draw': 'powerDrawW',
  'ecc.errors.uncorrected.volatile.total': 'eccUncorrectedVolatile',
  'clocks.sm': 'smClockMHz',
};

/**
 * Parse `nvidia-smi --query-gpu=... --format=csv[,noheader][,nounits]`. With a header the columns are named by it;
 * without one, pass the fields of the query in their order.
 */
export function parseGpuQueryCsv(text: string, fields: readonly string[] = gpuQueryFields): GpuRecord[] {
  const { columns, rows } = csvTable(text, fields);
  const gpus: GpuRecord[] = [];
  for (const row of rows) {
    const cell = (field: string) => {
      const at = columns.indexOf(field);
      return at < 0 ? undefined : row[at];
    };
    const index = numberValue(cell('index'));
    const uuid = textValue(cell('uuid'));
    if (index === undefined || uuid === undefined) continue;
    const gpu: GpuRecord = { index, uuid };
    const name = textValue(cell('name'));
    if (name !== undefined) gpu.name = name;
    const pciBusId = textValue(cell('pci.bus_id'));
    if (pciBusId !== undefined) gpu.pciBusId = pciBusId;
    const driverVersion = textValue(cell('driver_version'));
    if (driverVersion !== undefined) gpu.driverVersion = driverVersion;
    for (const [field, key] of Object.entries(numericGpuFields)) {
      const value = numberValue(cell(field));
      if (value !== undefined) gpu[key] = value;
    }
    gpus.push(gpu);
  }
  return gpus;
}

/** Parse `nvidia-smi --query-compute-apps=... --format=csv[,noheader][,nounits]`; empty output means no process. */
export function parseComputeAppsCsv(text: string, fields: readonly string[] = computeAppFields): ComputeApp[] {
  const { columns, rows } = csvTable(text, fields);
  const apps: ComputeApp[] = [];
  for (const row of rows) {
    const cell = (field: string) => {
      const at = columns.indexOf(field);
      return at < 0 ? undefined : row[at];
    };
    const pid = numberValue(cell('pid'));
    const gpuUuid = textValue(cell('gpu_uuid'));
    if (pid === undefined || gpuUuid === undefined) continue;
    const app: ComputeApp = { pid, gpuUuid };
    const processName = textValue(cell('process_name'));
    if (processName !== undefined) app.processName = processName;
    const usedMemoryMiB = numberValue(cell('used_memory'));
    if (usedMemoryMiB !== undefined) app.usedMemoryMiB = usedMemoryMiB;
    apps.push(app);
  }
  return apps;
}

/** Parse `nvidia-smi -L` (`GPU 0: NVIDIA H200 (UUID: GPU-...)`); MIG lines are skipped. */
export function parseGpuList(text: string): GpuListEntry[] {
  const entries: GpuListEntry[] = [];
  for (const line of text.split(/\r?\n/)) {
    const match = /^GPU (\d+): (.+?) \(UUID: (GPU-[^)]+)\)\s*$/.exec(line);
    if (match) entries.push({ index: Number(match[1]), name: match[2]!, uuid: match[3]! });
  }
  return entries;
}

export type GpuStatus = 'healthy' | 'busy' | 'unhealthy';

export interface GpuHealth {
  index: number;
  uuid: string;
  status: GpuStatus;
  reasons: string[];
  /** Processes holding memory on this GPU. */
  pids: number[];
}

export interface GpuHealthOptions {
  /** Memory in use without a visible process (another container) above this counts as busy. Default 1024 MiB. */
  idleMemoryMiB?: number;
}

/** Uncorrected ECC errors -> unhealthy; memory held by a process -> busy (with its pids); else healthy. */
export function assessGpus(gpus: GpuRecord[], apps: ComputeApp[], options: GpuHealthOptions = {}): GpuHealth[] {
  const idleMemoryMiB = options.idleMemoryMiB ?? 1024;
  return gpus.map((gpu) => {
    const holders = apps.filter((app) => app.gpuUuid === gpu.uuid);
    const pids = [...new Set(holders.map((app) => app.pid))].sort((a, b) => a - b);
    const reasons: string[] = [];
    let status: GpuStatus = 'healthy';
    if ((gpu.eccUncorrectedVolatile ?? 0) > 0) {
      status = 'unhealthy';
      reasons.push(`${gpu.eccUncorrectedVolatile} uncorrected ECC errors`);
    }
    if (pids.length > 0) {
      if (status === 'healthy') status = 'busy';
      const held = holders.reduce((sum, app) => sum + (app.usedMemoryMiB ?? 0), 0);
      reasons.push(`${held} MiB held by pid ${pids.join(', ')}`);
    } else if ((gpu.memoryUsedMiB ?? 0) > idleMemoryMiB) {
      if (status === 'healthy') status = 'busy';
      reasons.push(`${gpu.memoryUsedMiB} MiB in use by a process not visible here`);
    }
    return { index: gpu.index, uuid: gpu.uuid, status, reasons, pids };
  });
}

function csvTable(text: string, fields: readonly string[]): { columns: string[]; rows: string[][] } {
  const lines = text.split(/\r?\n/).filter((line) => line.trim() !== '');
  const first = lines[0];
  if (first === undefined) return { columns: [...fields], rows: [] };
  const firstCells = splitCsvLine(first);
  const hasHeader = firstCells.some((cell) => /\[.*\]$/.test(cell)) || firstCells.includes(fields[0] ?? 'index');
  if (!hasHeader) return { columns: [...fields], rows: lines.map(splitCsvLine) };
  const columns = firstCells.map((cell) => {
    const name = cell.replace(/\s*\[[^\]]*\]$/, '').trim();
    return fieldAliases[name] ?? name;
  });
  return { columns, rows: lines.slice(1).map(splitCsvLine) };
}

function splitCsvLine(line: string): string[] {
  return line.split(',').map((cell) => cell.trim());
}

/** `[N/A]`, `[Not Supported]`, `N/A` and empty cells are missing values. */
function textValue(cell: string | undefined): string | undefined {
  if (cell === undefined || cell === '' || /^\[.*\]$/.test(cell) || cell === 'N/A') return undefined;
  return cell;
}

function numberValue(cell: string | undefined): number | undefined {
  const text = textValue(cell);
  if (text === undefined) return undefined;
  const match = /^(-?\d+(?:\.\d+)?)(?:\s*(?:MiB|%|W|MHz|C))?$/.exec(text);
  return match ? Number(match[1]) : undefined;
}
