// Ray's dashboard serves the Jobs API with no authentication: whoever reaches its port can submit a job, i.e. run
// any code on the cluster. keel binds it to the head node's own address; binding it wider is worth a warning. Pure.
import type { Spec } from '../spec/schema.js';
import type { Finding } from './findings.js';

const everyInterface = new Set(['0.0.0.0', '::', '[::]']);

export function checkDashboardExposure(spec: Spec, findings: Finding[]): void {
  const host = spec.rayHead.dashboardHost;
  if (host === undefined) return;
  const head = spec.cluster.nodes[0];
  const headAddress = head ? (head.ip ?? head.host) : undefined;
  if (host === headAddress || host === 'localhost' || host.startsWith('127.')) return;
  findings.push({
    severity: 'warning',
    path: 'rayHead.dashboardHost',
    message:
      `the Ray dashboard binds ${everyInterface.has(host) ? 'every interface' : host} (port ${spec.rayHead.dashboardPort}): ` +
      'its Jobs API has no authentication, so anyone who reaches that port can submit a job and run any code on the cluster',
    fix: "drop rayHead.dashboardHost (default: the head node's own address), or keep the port behind a firewall",
  });
}
