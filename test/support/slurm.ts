// The local Slurm cluster inside the tests' private network namespace (scripts/loopback-only.sh). Slurm resolves
// its listening addresses with getaddrinfo(AI_ADDRCONFIG) for IPv4, which fails while only loopback addresses exist:
// one more address on the namespace's own loopback interface makes IPv4 "configured". Only ever in a namespace of
// our own (never the machine's).
import { execa } from 'execa';

/** True in the private namespace of scripts/loopback-only.sh (it says so) while its only interface is loopback. */
async function inPrivateLoopbackNamespace(): Promise<boolean> {
  if (process.env.KEEL_PRIVATE_NETNS !== '1') return false;
  try {
    const { stdout } = await execa('ip', ['-o', 'link', 'show']);
    return stdout
      .split('\n')
      .filter(Boolean)
      .every((line) => / lo: /.test(line));
  } catch {
    return false;
  }
}

export async function prepareNamespaceForSlurm(): Promise<void> {
  if (!(await inPrivateLoopbackNamespace())) return;
  const { stdout } = await execa('ip', ['-o', '-4', 'addr', 'show', 'dev', 'lo']);
  if (!stdout.includes('10.254.0.1/32')) await execa('ip', ['addr', 'add', '10.254.0.1/32', 'dev', 'lo']);
}
