// Fault injection for tests of what a kill leaves on disk: runs some work in a child process and
// kills it with SIGKILL at its Nth rename system call, before that rename happens (as
// `strace -e inject=rename:signal=SIGKILL:when=N` does), through a seccomp user-notification
// filter on rename, renameat and renameat2 and a supervising process that counts the calls.
#pragma once

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <functional>

namespace qathw::test {

struct RenameKill {
  bool supported = true;  // false: this kernel (or a sandbox) refuses the seccomp listener
  bool killed = false;    // the work was killed at rename `allowed` + 1
  bool work_failed = false;  // the work threw or exited nonzero without being killed
};

// Runs `work` in a child process; lets its first `allowed` renames through and kills it at the
// next one. When it makes `allowed` renames or fewer it runs to the end (killed is false).
inline RenameKill run_killed_at_rename(int allowed, const std::function<void()>& work) {
  int report[2];
  if (::pipe(report) != 0) return {false, false, false};
  const pid_t supervisor = ::fork();
  if (supervisor == 0) {
    // The supervisor installs the filter on itself (renaming nothing afterwards) and forks the
    // worker, which inherits it.
    ::close(report[0]);
    RenameKill r;
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
#ifdef __NR_rename
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_rename, 3, 0),
#else
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_renameat2, 3, 0),
#endif
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_renameat, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_renameat2, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
    };
    sock_fprog prog{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
    const int listener = ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
                             ? static_cast<int>(::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                                                          SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog))
                             : -1;
    if (listener < 0) {
      r.supported = false;
      (void)!::write(report[1], &r, sizeof r);
      ::_exit(0);
    }
    const pid_t worker = ::fork();
    if (worker == 0) {
      try {
        work();
      } catch (...) {
        ::_exit(3);
      }
      ::_exit(0);
    }
    int renames = 0;
    int status = 0;
    for (;;) {
      if (::waitpid(worker, &status, WNOHANG) == worker) break;
      pollfd p{listener, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0 || !(p.revents & POLLIN)) continue;
      seccomp_notif req{};
      if (::ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) != 0) continue;
      if (++renames > allowed) {
        ::kill(worker, SIGKILL);  // the rename waits for our answer: it never happens
        continue;
      }
      seccomp_notif_resp resp{};
      resp.id = req.id;
      resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
      ::ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
    }
    r.killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    r.work_failed = !r.killed && !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    (void)!::write(report[1], &r, sizeof r);
    ::_exit(0);
  }
  ::close(report[1]);
  RenameKill r{false, false, false};
  if (supervisor < 0 || ::read(report[0], &r, sizeof r) != static_cast<ssize_t>(sizeof r)) r = {true, false, true};
  ::close(report[0]);
  int status = 0;
  if (supervisor > 0) ::waitpid(supervisor, &status, 0);
  return r;
}

}  // namespace qathw::test
