#include "qathw/util/cpus.h"

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

namespace qathw::util {
namespace {

std::string first_line(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::string line;
  std::getline(in, line);
  return line;
}

// quota and period in microseconds; "max" (or a negative v1 quota) is no limit.
std::optional<double> quota_of(const std::string& quota, const std::string& period) {
  if (quota.empty() || quota == "max" || period.empty()) return std::nullopt;
  char* end = nullptr;
  const double q = std::strtod(quota.c_str(), &end);
  const double p = std::strtod(period.c_str(), nullptr);
  if (end == quota.c_str() || !(q > 0) || !(p > 0)) return std::nullopt;
  return q / p;
}

}  // namespace

std::optional<int> positive_count(const char* text) {
  if (!text || !*text) return std::nullopt;
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (*end != '\0' || v < 1 || v > 1 << 20) return std::nullopt;
  return static_cast<int>(v);
}

std::optional<double> cgroup_cpu_quota(const std::filesystem::path& root, const std::string& proc_self_cgroup) {
  std::istringstream lines(proc_self_cgroup);
  std::string line;
  std::optional<double> least;
  auto consider = [&](std::optional<double> q) {
    if (q && (!least || *q < *least)) least = q;
  };
  while (std::getline(lines, line)) {
    // "hierarchy-id:controllers:path"; v2 is "0::/path".
    const auto a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    const std::filesystem::path path = std::filesystem::path(line.substr(b + 1)).relative_path();
    if (controllers.empty()) {
      // v2: the limit of every cgroup from this one up to the root applies.
      for (std::filesystem::path p = path;; p = p.parent_path()) {
        std::istringstream max(first_line(root / p / "cpu.max"));
        std::string quota, period;
        max >> quota >> period;
        consider(quota_of(quota, period));
        if (p.empty()) break;
      }
    } else if (("," + controllers + ",").find(",cpu,") != std::string::npos) {
      for (const auto& mount : {root / "cpu", root / "cpu,cpuacct", root / "cpuacct,cpu"})
        consider(quota_of(first_line(mount / path / "cpu.cfs_quota_us"), first_line(mount / path / "cpu.cfs_period_us")));
    }
  }
  return least;
}

int usable_cpus() {
  int cpus = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = std::max(1, CPU_COUNT(&set));
  std::ifstream self("/proc/self/cgroup");
  std::stringstream text;
  text << self.rdbuf();
  if (const auto quota = cgroup_cpu_quota("/sys/fs/cgroup", text.str()))
    cpus = std::min(cpus, std::max(1, static_cast<int>(std::ceil(*quota))));
  if (const auto slurm = positive_count(std::getenv("SLURM_CPUS_PER_TASK"))) cpus = std::min(cpus, *slurm);
  return cpus;
}

CpuSample sample_cpu() {
  CpuSample s;
  s.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  rusage self{};
  if (getrusage(RUSAGE_SELF, &self) == 0)
    s.own_cpu_s = static_cast<double>(self.ru_utime.tv_sec + self.ru_stime.tv_sec) +
                  1e-6 * static_cast<double>(self.ru_utime.tv_usec + self.ru_stime.tv_usec);
  // "cpu  user nice system idle iowait ...", in clock ticks.
  std::ifstream stat("/proc/stat");
  std::string label;
  double user = 0, nice = 0, system = 0, idle = 0, iowait = 0;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  if (stat >> label >> user >> nice >> system >> idle >> iowait && label == "cpu" && ticks > 0) {
    s.machine_idle_s = (idle + iowait) / ticks;
    s.valid = true;
  }
  return s;
}

int ThreadFit::update(const CpuSample& before, const CpuSample& after) {
  const double wall = after.wall_s - before.wall_s;
  if (!before.valid || !after.valid || wall <= 0) return threads_;
  const double idle_cpus = (after.machine_idle_s - before.machine_idle_s) / wall;
  const double own_cpus = (after.own_cpu_s - before.own_cpu_s) / wall;
  if (threads_ > 1 && idle_cpus < 0.5 && own_cpus < 0.75 * threads_)
    threads_ = std::clamp(static_cast<int>(own_cpus + 0.25), 1, threads_ - 1);
  else if (threads_ < most_ && idle_cpus >= 0.75)
    ++threads_;
  return threads_;
}

}  // namespace qathw::util
