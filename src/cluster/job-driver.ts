// A Ray job's driver, stopped on its node without Ray: for when the dashboard does not stop the job.
//
// Ray's job supervisor starts the entrypoint with `start_new_session=True` and its stdout and stderr appended to
// `<temp dir>/session_latest/logs/job-driver-<submission id>.log` (ray/dashboard/modules/job/job_supervisor.py, Ray
// 2.60). So the job's driver is every process whose stdout is that file, and its process group holds what it started.
// The script below finds those processes through /proc, TERMs their process groups, KILLs what is left after the
// grace, and prints how many groups it stopped. Values arrive as arguments only (`sh -c SCRIPT keel ID STEPS`).

import { stopGroupsFunctions } from '../exec/node-scripts.js';

/** Args: submissionId graceSteps (x 100 ms). Prints the number of process groups it stopped. */
export const stopJobDriverScript = `${stopGroupsFunctions}
id=$1; steps=$2
suffix="/job-driver-$id.log"
groups=""
for fd in /proc/[0-9]*/fd/1; do
  target=$(readlink "$fd" 2>/dev/null) || continue
  case "$target" in *"$suffix") ;; *) continue ;; esac
  pid=\${fd#/proc/}; pid=\${pid%%/*}
  pg=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f3) || continue
  [ -n "$pg" ] && [ "$pg" -gt 1 ] || continue
  case " $groups " in *" $pg "*) ;; *) groups="$groups $pg" ;; esac
done
[ -n "$groups" ] || { echo 0; exit 0; }
keel_stop_groups "$groups" "$steps" || exit 1
set -- $groups
echo $#
`;
