// Caps this process's address space (RLIMIT_AS) so that a reader that reads without bound fails
// for want of memory. Not under AddressSanitizer: it maps terabytes of shadow memory and cannot
// run under such a cap, so there the tests check the error but not the bound.
#pragma once

#include <sys/resource.h>

#if defined(__SANITIZE_ADDRESS__)
#define QATHW_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define QATHW_TEST_ASAN 1
#endif
#endif

namespace qathw::test {

inline void limit_address_space(rlim_t bytes) {
#ifdef QATHW_TEST_ASAN
  (void)bytes;
#else
  const rlimit limit{bytes, bytes};
  ::setrlimit(RLIMIT_AS, &limit);
#endif
}

}  // namespace qathw::test
