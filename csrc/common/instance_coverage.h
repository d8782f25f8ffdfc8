// Word/bit math of the instance coverage patterns, shared by csrc/cpu/instance_coverage.cpp and
// csrc/cuda/instance_coverage.cu. The Triton kernel (kernels/instance_coverage.py) mirrors it.
//
// Given masks (M, H, W) and order (K,) (instance indices, ranks 0..K-1), the coverage pattern of
// pixel (h, w) is a K-bit set held in NW = ceil(K / 64) int64 words: bit r % 64 of word r / 64 is
// set iff masks[order[r], h, w] != 0. out is a contiguous (H, W, NW) int64 tensor (the words are
// the bits' two's complement reading: rank 63 of a word sets its sign bit).
#pragma once

#include <cstdint>

#include "macros.h"

namespace pydense {
namespace instance_coverage {

constexpr int64_t kBitsPerWord = 64;

// Words per pixel for K ranks.
PYDENSE_HD int64_t num_words(int64_t K) { return (K + kBitsPerWord - 1) / kBitsPerWord; }

// The ranks [rank_begin(j), rank_end(j, K)) that word j holds.
PYDENSE_HD int64_t rank_begin(int64_t j) { return j * kBitsPerWord; }
PYDENSE_HD int64_t rank_end(int64_t j, int64_t K) {
  return (j + 1) * kBitsPerWord < K ? (j + 1) * kBitsPerWord : K;
}

// Rank r's bit inside its word (as an unsigned word, cast to int64 when stored).
PYDENSE_HD uint64_t bit_of(int64_t r) { return uint64_t(1) << (r % kBitsPerWord); }

// Whether a mask value counts as inside (nonzero; bool masks are read as uint8).
PYDENSE_HD bool inside(uint8_t v) { return v != 0; }

}  // namespace instance_coverage
}  // namespace pydense
