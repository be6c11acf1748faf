#include "qathw/util/cpus.h"

#include <sched.h>

#include <algorithm>
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

}  // namespace qathw::util
