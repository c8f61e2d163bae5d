// Runs the cpbench binary of this build (CPBENCH_BINARY) through the shell and captures its exit
// code and its stdout and stderr together, for end-to-end tests of the command line.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace cpb::testing_support {

struct CmdResult {
  int code = -1;  // exit status; -1 when it did not exit normally
  std::string out;
};

// `env` is prepended to the command line, e.g. "CPBENCH_PYTHON=/bin/echo".
inline CmdResult cpbench(const std::string& args, const std::string& env = "") {
  const std::string cmd = env + " " + std::string(CPBENCH_BINARY) + " " + args + " 2>&1";
  CmdResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

}  // namespace cpb::testing_support
