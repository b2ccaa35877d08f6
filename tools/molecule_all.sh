#!/usr/bin/env bash
# Runs every molecule scenario, MOLECULE_JOBS at a time (their hosts have distinct names), each
# into its own log; prints the tail of the log of any scenario that failed.
set -u
cd "$(dirname "$0")/.."
jobs="${MOLECULE_JOBS:-3}"
logs=.cache/molecule-logs
rm -rf "$logs" && mkdir -p "$logs"
EDGESITE_BASE_IMAGE=$(python3 tools/testhosts.py image 2>/dev/null)
export EDGESITE_BASE_IMAGE

run_one() {
  local name=$1 start rc
  start=$(date +%s)
  molecule test -s "$name" > "$logs/$name.log" 2>&1
  rc=$?
  echo "$rc" > "$logs/$name.rc"
  echo "molecule $name: exit $rc in $(( $(date +%s) - start )) s"
}
export -f run_one
export logs

ls molecule/*/molecule.yml | xargs -n1 dirname | xargs -n1 basename \
  | xargs -P "$jobs" -I{} bash -c 'run_one {}'

failed=0
for rc_file in "$logs"/*.rc; do
  name=$(basename "$rc_file" .rc)
  if [ "$(cat "$rc_file")" != "0" ]; then
    echo "==== molecule $name failed; last lines of $logs/$name.log ===="
    tail -n 120 "$logs/$name.log"
    failed=1
  fi
done
exit $failed
