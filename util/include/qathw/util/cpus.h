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

// CPU time over an interval: how much of the machine was idle, and how much this process used.
struct CpuSample {
  double wall_s = 0;          // steady clock
  double machine_idle_s = 0;  // idle + iowait of all CPUs (/proc/stat)
  double own_cpu_s = 0;       // user + system of this process (getrusage)
  bool valid = false;         // false where /proc/stat cannot be read
};
CpuSample sample_cpu();

// Fits a thread count to the machine as it is now, between 1 and `most`. Given samples taken
// a fraction of a second apart: when the machine has no idle CPU and this process got less CPU than its
// threads could use (other processes hold the rest), it drops to the CPUs it actually got, since
// a thread the OS keeps waiting stalls every parallel region at its barrier; when CPUs stand
// idle, it takes one more, up to `most`.
class ThreadFit {
 public:
  explicit ThreadFit(int most) : most_(most < 1 ? 1 : most), threads_(most_) {}
  int threads() const { return threads_; }
  // The count for the next interval, from the interval between `before` and `after`.
  int update(const CpuSample& before, const CpuSample& after);

 private:
  int most_, threads_;
};

}  // namespace qathw::util
