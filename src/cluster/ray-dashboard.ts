// Cluster state from the Ray dashboard (Ray 2.60, `ray[default]`): nodes from the state API (`/api/v0/nodes`),
// resource usage from the autoscaler report (`/api/cluster_status`).
import { z } from 'zod';
import { RayApiError, RayHttp, type RayHttpOptions } from './ray-http.js';

export interface RayNode {
  nodeId: string;
  nodeIp: string;
  alive: boolean;
  state: string;
  isHead: boolean;
  gpus: number;
  cpus: number;
  resources: Record<string, number>;
  stateMessage?: string;
}

export interface ResourceUsage {
  used: number;
  total: number;
}

const nodesResponse = z.object({
  result: z.boolean(),
  msg: z.string().optional(),
  data: z.object({
    result: z.object({
      total: z.number().optional(),
      result: z.array(
        z.object({
          node_id: z.string(),
          node_ip: z.string(),
          is_head_node: z.boolean().optional(),
          state: z.string(),
          state_message: z.string().nullish(),
          resources_total: z.record(z.string(), z.number()).nullish(),
        }),
      ),
    }),
  }),
});

const clusterStatusResponse = z.object({
  result: z.boolean(),
  msg: z.string().optional(),
  data: z.object({
    clusterStatus: z
      .object({
        loadMetricsReport: z
          .object({ usage: z.record(z.string(), z.tuple([z.number(), z.number()])).optional() })
          .nullish(),
      })
      .nullish(),
  }),
});

const versionResponse = z.object({ version: z.string(), ray_version: z.string(), session_name: z.string().optional() });

export class RayDashboardClient {
  private readonly http: RayHttp;

  constructor(options: RayHttpOptions) {
    this.http = new RayHttp(options);
  }

  get url(): string {
    return this.http.url;
  }

  /** Every node the GCS knows, alive and dead (a dead node stays listed with state DEAD). */
  async listNodes(signal?: AbortSignal): Promise<RayNode[]> {
    const body = nodesResponse.parse(await this.http.json('/api/v0/nodes?limit=10000&detail=false', { signal }));
    if (!body.result)
      throw new RayApiError(
        'GET',
        `${this.url}/api/v0/nodes`,
        200,
        body.msg ?? '',
        'the dashboard answered result: false',
      );
    return body.data.result.result.map((node) => {
      const resources = node.resources_total ?? {};
      const record: RayNode = {
        nodeId: node.node_id,
        nodeIp: node.node_ip,
        alive: node.state === 'ALIVE',
        state: node.state,
        isHead: node.is_head_node ?? false,
        gpus: resources.GPU ?? 0,
        cpus: resources.CPU ?? 0,
        resources,
      };
      if (node.state_message) record.stateMessage = node.state_message;
      return record;
    });
  }

  async aliveNodes(signal?: AbortSignal): Promise<RayNode[]> {
    return (await this.listNodes(signal)).filter((node) => node.alive);
  }

  /** GPUs registered by alive nodes. */
  async clusterGpuTotal(signal?: AbortSignal): Promise<number> {
    return (await this.aliveNodes(signal)).reduce((sum, node) => sum + node.gpus, 0);
  }

  /**
   * Logical resources used/total per resource (e.g. `GPU: { used: 8, total: 16 }`), from the autoscaler's report;
   * undefined until the monitor has written its first report (a few seconds after the head starts).
   */
  async resourceUsage(signal?: AbortSignal): Promise<Record<string, ResourceUsage> | undefined> {
    const body = clusterStatusResponse.parse(await this.http.json('/api/cluster_status', { signal }));
    const usage = body.data.clusterStatus?.loadMetricsReport?.usage;
    if (!usage) return undefined;
    return Object.fromEntries(Object.entries(usage).map(([name, [used, total]]) => [name, { used, total }]));
  }

  async version(signal?: AbortSignal): Promise<{ rayVersion: string; apiVersion: string; sessionName?: string }> {
    const body = versionResponse.parse(await this.http.json('/api/version', { signal }));
    const version: { rayVersion: string; apiVersion: string; sessionName?: string } = {
      rayVersion: body.ray_version,
      apiVersion: body.version,
    };
    if (body.session_name) version.sessionName = body.session_name;
    return version;
  }
}
