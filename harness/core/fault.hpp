// Fault injection for the reliability tests (and for anyone checking what a sweep does when a
// rank dies): CPBENCH_FAULT=KIND:RANK[:POINT] makes rank RANK fail in the middle of point POINT
// (its index in the sweep; every point when left out), at its first op of the point's second
// iteration (after NCCL's connections are made):
//   throw  the rank's thread throws a C++ exception (a bug in a strategy or a kernel wrapper);
//   hang   the rank stops issuing work and waits, as a rank stuck in a collective that never
//          completes: its peers time out (timeout_s) and abort the point (the cuda backend
//          through ncclCommAbort), which releases it;
//   nan    the point runs, then a NaN lands in the rank's output (a kernel that went wrong).
// A throw or a hang is recorded `error` within the timeout, a NaN `wrong` by the verification;
// either way the sweep goes on.
#pragma once

#include <string>

#include "harness/core/status.hpp"

namespace cpb {

struct FaultSpec {
  enum class Kind { none, throw_exception, hang, nan_output } kind = Kind::none;
  int rank = 0;
  int point = -1;  // -1: every point
  bool armed_for(int point_index) const {
    return kind != Kind::none && (point < 0 || point == point_index);
  }
};

// Parses a CPBENCH_FAULT value; an empty value is no fault. Errors say what a value looks like.
Expected<FaultSpec> parse_fault(const std::string& text);
// The fault CPBENCH_FAULT asks for (no fault when it is unset).
Expected<FaultSpec> fault_from_env();

}  // namespace cpb
