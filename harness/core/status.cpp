// Error formatting: the one-line user message and the detailed form with hops.
#include "harness/core/status.hpp"

#include <cstring>

namespace cpb {
namespace {
std::string short_file(const char* file) {
  // Keep the path from the project's top folder on ("harness/core/x.cpp:12").
  std::string f(file);
  for (const char* top : {"harness/", "strategies/", "kernels/", "tests/"}) {
    auto p = f.rfind(top);
    if (p != std::string::npos) return f.substr(p);
  }
  auto slash = f.find_last_of('/');
  return slash == std::string::npos ? f : f.substr(slash + 1);
}
}  // namespace

Error make_error(const char* file, int line, std::string message) {
  Error e;
  e.message = std::move(message);
  e.where = fmt::format("{}:{}", short_file(file), line);
  return e;
}

Error&& Error::hop(const char* file, int line) && {
  hops.push_back(fmt::format("{}:{}", short_file(file), line));
  return std::move(*this);
}

std::string Error::str() const {
  if (rank >= 0) return fmt::format("[rank {}] {}", rank, message);
  return message;
}

std::string Error::detail() const {
  std::string s = fmt::format("{} (at {}", str(), where);
  for (const auto& h : hops) s += " <- " + h;
  return s + ")";
}

}  // namespace cpb
