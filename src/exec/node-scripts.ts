// POSIX sh programs that run on a node (locally or over ssh) to manage process records.
//
// Every script is constant text: dynamic values (paths, ids, argv, env) only ever arrive as positional arguments
// (`sh -c SCRIPT keel ARG...`), so nothing from a spec is pasted into shell code. Layout of one record directory
// `<stateDir>/procs/<id>/`: `pid` ("<pid> <starttime>"), `record.json`, `exit_code`, `output.log` (or a symlink to the
// spec's log file), `lock`, and briefly `secret.env` (0600, deleted by the wrapper before the program starts).

/** Shared shell functions. The start time is field 22 of /proc/<pid>/stat (field 20 after "pid (comm) "). */
const prelude = `
keel_put() { printf '%s\\n' "$2" > "$1.tmp.$$" && mv -f -- "$1.tmp.$$" "$1"; }
keel_alive() {
  _f=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1,20)
  [ -n "$_f" ] && [ "\${_f%% *}" != Z ] && [ "\${_f#* }" = "$2" ]
}
keel_group_alive() {
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v pg="$1" '{ sub(/.*\\) /, ""); if ($3 == pg && $1 != "Z") found = 1 } END { exit !found }'
}
`;

/**
 * The wrapper: own session (started by setsid), stdin /dev/null, output to the log. Writes `pid` and `record.json`
 * atomically, loads secrets from the 0600 file and deletes it, runs the program as a child (signals sent to the group
 * reach the program; the wrapper only notes them) and writes `exit_code` atomically when the program ends.
 * Args: dir cwd umask recordPrefix nEnv NAME=VALUE... argv...
 */
export const wrapperScript = `${prelude}
dir=$1; cwd=$2; mask=$3; prefix=$4; n=$5; shift 5
while [ "$n" -gt 0 ]; do export "$1"; shift; n=$((n - 1)); done
st=$(sed 's/.*) //' "/proc/$$/stat" | cut -d' ' -f20)
keel_put "$dir/pid" "$$ $st" || exit 1
if [ -f "$dir/secret.env" ]; then . "$dir/secret.env"; rm -f -- "$dir/secret.env"; fi
keel_put "$dir/record.json" "$prefix,\\"pid\\":$$,\\"pgid\\":$$,\\"startTime\\":\\"$st\\"}" || exit 1
umask "$mask"
trap ':' TERM INT HUP
if [ -n "$cwd" ] && ! cd -- "$cwd"; then code=126; else "$@"; code=$?; fi
keel_put "$dir/exit_code" "$code"
`;

/**
 * Launch or re-attach, under a per-id lock. Prints `reattached` or `launched`, then the record JSON.
 * Args: dir logFile cwd recordPrefix hasSecrets(0|1) wrapperScript nEnv NAME=VALUE... argv...  (stdin: secret.env)
 */
export const launchScript = `${prelude}
dir=$1; log=$2; cwd=$3; prefix=$4; secrets=$5; wrapper=$6; shift 6
mask=$(umask); umask 077
mkdir -p -- "$dir" || exit 1
exec 9>"$dir/lock" || exit 1
flock -w 60 9 || { echo "timed out waiting for the launch lock of $dir" >&2; exit 1; }
if [ ! -f "$dir/exit_code" ] && [ -f "$dir/record.json" ] && read -r pid st < "$dir/pid" && keel_alive "$pid" "$st"; then
  echo reattached; cat -- "$dir/record.json"; exit 0
fi
rm -f -- "$dir/exit_code" "$dir/pid" "$dir/record.json" "$dir/secret.env"
mkdir -p -- "$(dirname -- "$log")" || exit 1
if [ -e "$log" ] || [ -L "$log" ]; then mv -f -- "$log" "$log.1"; fi
if [ "$log" != "$dir/output.log" ]; then ln -sfn -- "$log" "$dir/output.log" || exit 1; fi
if [ "$secrets" = 1 ]; then cat > "$dir/secret.env" || exit 1; fi
setsid sh -c "$wrapper" keel-wrapper "$dir" "$cwd" "$mask" "$prefix" "$@" </dev/null >"$log" 2>&1 9>&- &
i=0
while [ ! -f "$dir/record.json" ]; do
  i=$((i + 1))
  if [ "$i" -gt 400 ]; then rm -f -- "$dir/secret.env"; echo "the wrapper in $dir wrote no record" >&2; exit 1; fi
  sleep 0.05
done
echo launched; cat -- "$dir/record.json"
`;

/** Prints the record JSON, then `exit <code>`, `running` or `lost`. Exit 3 = no record. Args: dir */
export const statusScript = `${prelude}
dir=$1
[ -f "$dir/record.json" ] || exit 3
cat -- "$dir/record.json"
if [ ! -f "$dir/exit_code" ] && read -r pid st < "$dir/pid" && keel_alive "$pid" "$st"; then echo running
elif [ -f "$dir/exit_code" ]; then printf 'exit %s\\n' "$(cat -- "$dir/exit_code")"
else echo lost; fi
`;

/** Raw bytes of the log from a byte offset. Exit 3 = no record. Args: dir offset maxBytes */
export const tailScript = `
[ -f "$1/record.json" ] || exit 3
[ -e "$1/output.log" ] || exit 0
tail -c "+$(($2 + 1))" -- "$1/output.log" | head -c "$3"
`;

/** The file's size in bytes on one line, then up to $3 of its bytes from byte $2 (tail seeks). Exit 3 = no such file. */
export const readRangeScript = `
[ -f "$1" ] || exit 3
stat -c %s -- "$1" || exit 1
tail -c "+$(($2 + 1))" -- "$1" | head -c "$3"
`;

/**
 * TERM the process group, KILL it after graceSteps x 100 ms, wait until no member is left (zombies do not count),
 * and write exit code 137 when the wrapper was killed before it could write one. Exit 3 = no record.
 * Args: dir graceSteps
 */
export const stopScript = `${prelude}
dir=$1; steps=$2
[ -f "$dir/record.json" ] || exit 3
[ -f "$dir/exit_code" ] && exit 0
read -r pid st < "$dir/pid" || exit 0
keel_alive "$pid" "$st" || exit 0
kill -s TERM -- "-$pid" 2>/dev/null
i=0
while keel_group_alive "$pid"; do
  i=$((i + 1))
  if [ "$i" -gt "$steps" ]; then kill -s KILL -- "-$pid" 2>/dev/null; break; fi
  sleep 0.1
done
i=0
while keel_group_alive "$pid"; do
  i=$((i + 1))
  if [ "$i" -gt 100 ]; then echo "process group $pid survived SIGKILL" >&2; exit 1; fi
  sleep 0.1
done
[ -f "$dir/exit_code" ] || keel_put "$dir/exit_code" 137
`;

/** Exit 3 = no such file. Args: path */
export const readFileScript = `
[ -e "$1" ] || exit 3
exec cat -- "$1"
`;

/** Atomic write of stdin to a file, creating parent directories. Args: path */
export const writeFileScript = `
mkdir -p -- "$(dirname -- "$1")" || exit 1
cat > "$1.tmp.$$" && mv -f -- "$1.tmp.$$" "$1"
`;

/** Runs argv in cwd with extra env, under coreutils `timeout` when given. Args: cwd timeoutSec nEnv NAME=VALUE... argv */
export const runScript = `
cwd=$1; t=$2; n=$3; shift 3
if [ -n "$cwd" ]; then cd -- "$cwd" || exit 126; fi
while [ "$n" -gt 0 ]; do export "$1"; shift; n=$((n - 1)); done
if [ -n "$t" ] && command -v timeout >/dev/null 2>&1; then exec timeout -k 5 "$t" "$@"; fi
exec "$@"
`;

/**
 * Shell functions: `keel_stop_groups "PGID..." STEPS` TERMs the process groups, KILLs what is left of them after
 * STEPS x 100 ms, then waits until none is left (returns 1, naming them, if one survives SIGKILL).
 */
export const stopGroupsFunctions = `
keel_groups_alive() {
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v pgs=" $1 " '{ sub(/.*\\) /, ""); if (index(pgs, " " $3 " ") && $1 != "Z") found = 1 } END { exit !found }'
}
keel_stop_groups() {
  for _pg in $1; do kill -s TERM -- "-$_pg" 2>/dev/null; done
  _i=0
  while keel_groups_alive "$1"; do
    _i=$((_i + 1))
    if [ "$_i" -gt "$2" ]; then
      for _pg in $1; do kill -s KILL -- "-$_pg" 2>/dev/null; done
      break
    fi
    sleep 0.1
  done
  _i=0
  while keel_groups_alive "$1"; do
    _i=$((_i + 1))
    if [ "$_i" -gt 100 ]; then echo "process groups survived SIGKILL: $1" >&2; return 1; fi
    sleep 0.1
  done
}
`;

/**
 * Every live launch under one record directory (a run's launches: `<stateDir>/procs/<run>/`) at once: TERM every
 * process group, KILL what is left after graceSteps x 100 ms, wait until no member is left, and write exit code 137
 * for each launch whose wrapper was killed before it could write one. One command per node however many launches.
 * Prints the number of launches it stopped. Args: root graceSteps
 */
export const stopUnderScript = `${prelude}${stopGroupsFunctions}
root=$1; steps=$2
[ -d "$root" ] || { echo 0; exit 0; }
live=$(find "$root" -name pid -type f 2>/dev/null | while IFS= read -r p; do
  d=\${p%/pid}
  [ -f "$d/exit_code" ] && continue
  read -r pid st < "$p" || continue
  keel_alive "$pid" "$st" && printf '%s %s\\n' "$pid" "$d"
done)
[ -n "$live" ] || { echo 0; exit 0; }
pids=$(printf '%s\\n' "$live" | cut -d' ' -f1 | tr '\\n' ' ')
keel_stop_groups "$pids" "$steps" || exit 1
printf '%s\\n' "$live" | while read -r pid d; do [ -f "$d/exit_code" ] || keel_put "$d/exit_code" 137; done
printf '%s\\n' "$live" | grep -c .
`;

/** Exit code of the node-side scripts meaning "no such record / file". */
export const notFoundExitCode = 3;
