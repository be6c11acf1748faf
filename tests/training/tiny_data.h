// The tiny IDX data set of the training tests (tests/data/tiny-idx: 8x10 images, 4 classes),
// loaded once per test program.
#pragma once

#include "qathw/training/idx.h"

namespace qathw::test {

inline const training::Dataset& tiny_train() {
  static const training::Dataset d = training::load_split(QATHW_TINY_IDX_DIR, training::Split::Train);
  return d;
}

inline const training::Dataset& tiny_test() {
  static const training::Dataset d =
      training::load_split(QATHW_TINY_IDX_DIR, training::Split::Test, tiny_train().classes);
  return d;
}

}  // namespace qathw::test
