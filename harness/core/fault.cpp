// CPBENCH_FAULT parsing (see fault.hpp).
#include "harness/core/fault.hpp"

#include <cstdlib>
#include <sstream>
#include <vector>

namespace cpb {

Expected<FaultSpec> parse_fault(const std::string& text) {
  FaultSpec f;
  if (text.empty()) return f;
  std::vector<std::string> parts;
  std::stringstream in(text);
  for (std::string p; std::getline(in, p, ':');) parts.push_back(p);
  auto number = [](const std::string& s, int* out) {
    if (s.empty() || s.size() > 6 || s.find_first_not_of("0123456789") != std::string::npos)
      return false;
    *out = std::stoi(s);
    return true;
  };
  CPB_REQUIRE((parts.size() == 2 || parts.size() == 3) &&
                  (parts[0] == "throw" || parts[0] == "hang" || parts[0] == "nan") &&
                  number(parts[1], &f.rank) &&
                  (parts.size() == 2 || number(parts[2], &f.point)),
              "CPBENCH_FAULT='{}': expected KIND:RANK[:POINT] with KIND throw, hang or nan, RANK "
              "and POINT whole numbers (e.g. hang:1:0)",
              text);
  f.kind = parts[0] == "throw"  ? FaultSpec::Kind::throw_exception
           : parts[0] == "hang" ? FaultSpec::Kind::hang
                                : FaultSpec::Kind::nan_output;
  return f;
}

Expected<FaultSpec> fault_from_env() {
  const char* v = std::getenv("CPBENCH_FAULT");
  return parse_fault(v == nullptr ? "" : v);
}

}  // namespace cpb
