// An environment variable set (or unset) for one scope, restored afterwards to what it was, for
// tests of code that reads a tunable from the environment on each call (the attention kernel
// override CPBENCH_ATTENTION_KERNEL). Not thread-safe against concurrent getenv: set it before
// starting the work that reads it.
#pragma once

#include <cstdlib>
#include <optional>
#include <string>
#include <utility>

namespace cpb::testing_support {

class ScopedEnv {
 public:
  // value nullptr: the variable is unset for the scope.
  ScopedEnv(std::string name, const char* value) : name_(std::move(name)) {
    if (const char* old = std::getenv(name_.c_str()); old != nullptr) old_ = old;
    if (value != nullptr)
      ::setenv(name_.c_str(), value, 1);
    else
      ::unsetenv(name_.c_str());
  }
  ~ScopedEnv() {
    if (old_)
      ::setenv(name_.c_str(), old_->c_str(), 1);
    else
      ::unsetenv(name_.c_str());
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

}  // namespace cpb::testing_support
