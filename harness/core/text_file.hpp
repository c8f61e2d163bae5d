// Reading a small text input (an experiment, a hardware profile) with errors a user can act on:
// a missing file (and, for a relative path, the folder it was looked for in), a folder, a file
// larger than such inputs ever are, a read error. `what` names the input in messages.
#pragma once

#include <cstddef>
#include <string>

#include "harness/core/status.hpp"

namespace cpb {

Expected<std::string> read_text_file(const std::string& path, const std::string& what,
                                     size_t max_bytes);

}  // namespace cpb
