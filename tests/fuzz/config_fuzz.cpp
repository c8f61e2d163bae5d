// libFuzzer target: the YAML experiment parser on arbitrary bytes. Any input must end in an
// experiment or an error, never a crash, a hang, a sanitizer report or an exception (the
// `fuzz` preset builds it with ASan and UBSan; ctest label `fuzz` runs it for 60 s from the
// config corpus of tests/data/configs).
#include <cstddef>
#include <cstdint>
#include <string>

#include "harness/config/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  cpb::ParseOptions opts;
  opts.strategies = {"allgather", "ring_pass_kv", "ring_pass_q", "ulysses", "usp", "auto"};
  auto e = cpb::parse_experiment(text, "<fuzz>", opts);
  if (!e.ok() && e.error().message.empty()) __builtin_trap();  // an error must say something
  return 0;
}
