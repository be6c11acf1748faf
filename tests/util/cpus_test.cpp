// The CPU count thread pools and sweep jobs are sized by: affinity, cgroup quotas (v1 and v2, on
// a fake cgroup file system), SLURM_CPUS_PER_TASK.
#include "qathw/util/cpus.h"

#include <sched.h>

#include <gtest/gtest.h>

#include "../training/temp_dir.h"
#include "qathw/util/atomic_file.h"

namespace qathw::util {
namespace {

using qathw::test::TempDir;

// Writes `text` to `file`, creating its folders: a fake cgroup file.
void put(const std::filesystem::path& file, const std::string& text) {
  std::filesystem::create_directories(file.parent_path());
  write_file_atomic(file, text);
}

TEST(CgroupCpuQuota, V2ReadsTheLeastLimitOnThePathToTheRoot) {
  TempDir root;
  put(root / "cpu.max", "max 100000\n");
  put(root / "slice" / "cpu.max", "300000 100000\n");
  put(root / "slice" / "job" / "cpu.max", "max 100000\n");
  EXPECT_EQ(cgroup_cpu_quota(root.path(), "0::/slice/job\n"), 3.0);
  put(root / "slice" / "job" / "cpu.max", "150000 100000\n");
  EXPECT_EQ(cgroup_cpu_quota(root.path(), "0::/slice/job\n"), 1.5);
  EXPECT_EQ(cgroup_cpu_quota(root.path(), "0::/\n"), std::nullopt);  // the root: "max"
  EXPECT_EQ(cgroup_cpu_quota(root.path(), "0::/nonesuch\n"), std::nullopt);
}

TEST(CgroupCpuQuota, V1ReadsTheCpuControllersQuotaOverPeriod) {
  TempDir root;
  put(root / "cpu,cpuacct" / "job" / "cpu.cfs_quota_us", "200000\n");
  put(root / "cpu,cpuacct" / "job" / "cpu.cfs_period_us", "100000\n");
  EXPECT_EQ(cgroup_cpu_quota(root.path(), "4:memory:/job\n3:cpu,cpuacct:/job\n0::/\n"), 2.0);
  put(root / "cpu,cpuacct" / "job" / "cpu.cfs_quota_us", "-1\n");  // no limit
  EXPECT_EQ(cgroup_cpu_quota(root.path(), "3:cpu,cpuacct:/job\n"), std::nullopt);
}

TEST(PositiveCount, AcceptsPositiveIntegersOnly) {
  EXPECT_EQ(positive_count("4"), 4);
  EXPECT_EQ(positive_count(nullptr), std::nullopt);
  for (const char* bad : {"", "0", "-2", "2x", "1.5", "99999999999"}) EXPECT_EQ(positive_count(bad), std::nullopt) << bad;
}

TEST(UsableCpus, AtMostTheAffinityMaskAndSlurmsShare) {
  cpu_set_t set;
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  const int cpus = usable_cpus();
  EXPECT_GE(cpus, 1);
  EXPECT_LE(cpus, CPU_COUNT(&set));
  ASSERT_EQ(setenv("SLURM_CPUS_PER_TASK", "1", 1), 0);
  EXPECT_EQ(usable_cpus(), 1);
  unsetenv("SLURM_CPUS_PER_TASK");
}

// A sample `seconds` after `t`: the machine idle for `idle` CPUs and this process using `own`.
CpuSample after(const CpuSample& t, double seconds, double idle, double own) {
  CpuSample s = t;
  s.wall_s += seconds;
  s.machine_idle_s += idle * seconds;
  s.own_cpu_s += own * seconds;
  return s;
}

TEST(ThreadFit, DropsToTheCpusItGetsOnABusyMachineAndClimbsBackWhenCpusIdle) {
  ThreadFit fit(2);
  CpuSample t{100, 0, 0, true};
  EXPECT_EQ(fit.threads(), 2);
  // Alone: both CPUs busy with its own two threads.
  CpuSample next = after(t, 1, 0.0, 1.9);
  EXPECT_EQ(fit.update(t, next), 2);
  // Another CPU-bound process: no idle CPU, and this process gets 1.3 CPUs of its 2 threads.
  t = next, next = after(t, 1, 0.0, 1.3);
  EXPECT_EQ(fit.update(t, next), 1);
  // Still busy: one thread gets its CPU; stays.
  t = next, next = after(t, 1, 0.0, 1.0);
  EXPECT_EQ(fit.update(t, next), 1);
  // The other process ended: a CPU idles; one more thread.
  t = next, next = after(t, 1, 1.0, 1.0);
  EXPECT_EQ(fit.update(t, next), 2);
  // Never above its bound.
  t = next, next = after(t, 1, 1.0, 1.0);
  EXPECT_EQ(fit.update(t, next), 2);
}

TEST(ThreadFit, KeepsItsThreadsWhenItsOwnSerialWorkLeavesCpusIdle) {
  ThreadFit fit(4);
  const CpuSample t{0, 0, 0, true};
  EXPECT_EQ(fit.update(t, after(t, 1, 1.5, 2.5)), 4);  // CPUs idle: not contention
}

TEST(ThreadFit, OnSixteenCpusWithFourTakenFitsTwelve) {
  ThreadFit fit(16);
  const CpuSample t{0, 0, 0, true};
  EXPECT_EQ(fit.update(t, after(t, 1, 0.1, 11.9)), 12);
}

TEST(ThreadFit, WithoutProcStatItKeepsTheCount) {
  ThreadFit fit(2);
  const CpuSample t{0, 0, 0, false};
  EXPECT_EQ(fit.update(t, after(t, 1, 0, 0.5)), 2);
}

TEST(SampleCpu, ReadsThisMachine) {
  const CpuSample s = sample_cpu();
  EXPECT_TRUE(s.valid);
  EXPECT_GT(s.machine_idle_s, 0);
}

}  // namespace
}  // namespace qathw::util
