# Helpers of the benchmarks that run engines under a memory budget (sourced, not run):
# memory cgroups (v1 memory controller or v2; none without root), page-cache eviction, sizes.
cgroup_dir=""
if [ "$(id -u)" -eq 0 ] && [ -d /sys/fs/cgroup/memory ]; then
  cgroup_dir=/sys/fs/cgroup/memory/flexinfer-bench
  limit_file=memory.limit_in_bytes peak_file=memory.max_usage_in_bytes
elif [ "$(id -u)" -eq 0 ] && [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  cgroup_dir=/sys/fs/cgroup/flexinfer-bench
  limit_file=memory.max peak_file=memory.peak
fi
bytes_of() { python3 -c "import sys; u={'K':1<<10,'M':1<<20,'G':1<<30}; s=sys.argv[1]; print(int(float(s[:-1])*u[s[-1]]))" "$1"; }
evict() { python3 -c "import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)" "$1"; }
# confined BUDGET PEAK_FILE COMMAND...: runs COMMAND in a fresh cgroup of BUDGET bytes, writes its peak usage.
confined() {
  local budget=$1 peak=$2; shift 2
  if [ -z "$cgroup_dir" ]; then echo 0 >"$peak"; "$@"; return; fi
  [ -d "$cgroup_dir" ] && rmdir "$cgroup_dir"
  mkdir "$cgroup_dir"
  echo "$budget" >"$cgroup_dir/$limit_file"
  local status=0
  (echo $BASHPID >"$cgroup_dir/cgroup.procs"; exec "$@") || status=$?
  cat "$cgroup_dir/$peak_file" >"$peak"
  rmdir "$cgroup_dir"
  return $status
}
