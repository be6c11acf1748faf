// Deliberately outside the HLS subset: the subset check must reject this file, naming each
// violation (dynamic allocation, a standard container, I/O, recursion).
#include <cstdio>
#include <vector>

int depth(int n) { return n <= 0 ? 0 : 1 + depth(n - 1); }

int top(int n) {
  std::vector<int> v(static_cast<unsigned>(n), 1);
  int* scratch = new int[4];
  scratch[0] = depth(n) + v.back();
  std::printf("%d\n", scratch[0]);
  const int r = scratch[0];
  delete[] scratch;
  return r;
}
