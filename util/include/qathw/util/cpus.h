// How many CPUs this process may use: what sizes thread pools and parallel jobs, so that a run
// on a shared machine (a Slurm task, a container, a `taskset` of two cores) does not start more
// busy threads than it has CPUs.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace qathw::util {

// The least of: the CPUs in this process's affinity mask; the cgroup CPU quota (cgroup v2
// `cpu.max`, or v1 `cpu.cfs_quota_us / cpu.cfs_period_us`), rounded up; and
// `SLURM_CPUS_PER_TASK` when set. At least 1.
int usable_cpus();

// The parts, for tests and messages: a cgroup quota in CPUs read from the cgroup file system at
// `root` for the cgroup named in `proc_self_cgroup` (the text of /proc/self/cgroup), and a
// positive integer from an environment variable's text. Nothing when there is no limit or the
// text is not a positive count.
std::optional<double> cgroup_cpu_quota(const std::filesystem::path& root, const std::string& proc_self_cgroup);
std::optional<int> positive_count(const char* text);

}  // namespace qathw::util
