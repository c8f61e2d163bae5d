// libFuzzer target: the .npy reader on arbitrary bytes (written to a file, as `cpbench attend`
// reads them). Any input must end in an array whose element count matches its shape, or an
// error, never a crash or a sanitizer report (`fuzz` preset, ctest label `fuzz`, 60 s).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "harness/io/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/cpbench_npy_fuzz_" + std::to_string(::getpid()) + ".npy";
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  auto a = cpb::read_npy(path);
  if (a.ok()) {
    int64_t n = 1;
    for (int64_t d : a->shape) n *= d;
    if (n != static_cast<int64_t>(a->data.size())) __builtin_trap();
  } else if (a.error().message.empty()) {
    __builtin_trap();
  }
  return 0;
}
